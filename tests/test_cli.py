"""The command line through click's CliRunner: a tiny run, then eval, plot and predict on it."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cnnfruit.cli import main
from helpers import TINY, write_images


TWO_EPOCHS = [*TINY, "--epochs", "2", "--lr", "1e-5"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_image_folder):
    """One tiny training run on a two-class folder, shared by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    data = str(make_image_folder(root / "photos", classes=("apple", "kiwi"), train=6, test=6, size=40))
    out = root / "run"
    result = CliRunner().invoke(main, ["train", "--data", data, "--out", str(out), *TWO_EPOCHS])
    assert result.exit_code == 0, result.output
    return {"data": data, "out": out, "output": result.output}


def test_train_log_and_files(run):
    lines = run["output"].splitlines()
    epochs = [line for line in lines if line.startswith("Epoch: ")]
    assert len(epochs) == 2
    assert epochs[0].startswith("Epoch: 1 | Training Loss: ") and "| Validation Loss: " in epochs[0]
    assert any(line.startswith("Test Accuracy: ") for line in lines)
    assert any(line.startswith("Total Time: ") for line in lines)
    history = json.loads((run["out"] / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert history["hyperparameters"]["hidden"] == [6] and history["hyperparameters"]["lr"] == 1e-5
    assert history["class_names"] == ["apple", "kiwi"] and 0 <= history["test_accuracy"] <= 1
    assert (run["out"] / "model.npz").is_file()
    assert not [name for name in os.listdir(run["out"]) if name.startswith(".tmp")]


def test_eval_json_matches_history(run):
    result = CliRunner().invoke(main, ["eval", str(run["out"] / "model.npz"), "--data", run["data"], "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    history = json.loads((run["out"] / "history.json").read_text())
    assert report["accuracy"] == pytest.approx(history["test_accuracy"])
    assert report["class_names"] == ["apple", "kiwi"]
    assert sum(map(sum, report["confusion_matrix"])) == report["images"] == 12
    assert [row["support"] for row in report["per_class"]] == [6, 6]


def test_eval_table_and_splits(run):
    model = str(run["out"] / "model.npz")
    result = CliRunner().invoke(main, ["eval", model, "--data", run["data"]])
    assert result.exit_code == 0 and "Accuracy:" in result.output and "Confusion matrix" in result.output
    sizes = {}
    for split in ("train", "val"):
        result = CliRunner().invoke(main, ["eval", model, "--data", run["data"], "--split", split, "--json"])
        assert result.exit_code == 0, result.output
        sizes[split] = json.loads(result.output)["images"]
    assert sizes == {"train": 8, "val": 4}  # 12 training images, 30% held out for validation


def test_predict_agrees_with_eval(run):
    model = str(run["out"] / "model.npz")
    photos = sorted(str(p) for p in (run["out"].parent / "photos" / "test").glob("*/*.png"))
    result = CliRunner().invoke(main, ["predict", model, *photos, "--json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.output)
    assert [p["file"] for p in predictions] == photos
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in predictions)
    report = json.loads(CliRunner().invoke(main, ["eval", model, "--data", run["data"], "--json"]).output)
    predicted = [["apple", "kiwi"].index(p["class"]) for p in predictions]
    truth = [["apple", "kiwi"].index(os.path.basename(os.path.dirname(path))) for path in photos]
    matrix = [[0, 0], [0, 0]]
    for t, p in zip(truth, predicted):
        matrix[t][p] += 1
    assert matrix == report["confusion_matrix"]
    text = CliRunner().invoke(main, ["predict", model, photos[0]])
    assert text.exit_code == 0 and text.output.startswith(photos[0]) and "apple" in text.output


def test_plot_writes_png(run, tmp_path):
    target = tmp_path / "curves.png"
    result = CliRunner().invoke(main, ["plot", str(run["out"] / "history.json"), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--epochs", "0"], "Error: --epochs must be at least 1, got 0"),
        (["train", "--lr", "-1"], "Error: --lr must be a positive number, got -1.0"),
        (["train", "--batch-size", "0"], "Error: --batch-size must be at least 1, got 0"),
        (["train", "--val-fraction", "1"], "Error: --val-fraction must be in [0, 1), got 1.0"),
        (["eval", "missing.npz"], "Error: checkpoint missing.npz does not exist"),
    ],
)
def test_bad_input_is_one_clean_line(args, message, tmp_path):
    result = CliRunner().invoke(main, args + (["--out", str(tmp_path)] if args[0] == "train" else []))
    assert result.exit_code == 1
    assert result.output.strip() == message
    assert "Traceback" not in result.output


def test_bad_hidden_flag():
    result = CliRunner().invoke(main, ["train", "--hidden", "abc"])
    assert result.exit_code == 2 and "'abc' is not a comma-separated list of layer sizes" in result.output


HEAVY_MODULES = ("numpy", "numba", "PIL", "matplotlib", "optuna", "onnx", "rich", "torch")


def test_help_imports_nothing_heavy():
    """`cnnfruit --help` loads every command module for its one-line help: none may pull in numpy.

    What keeps help's start-up at a fraction of `import numba`'s (benchmarks/bench.py times both).
    """
    code = ("import sys; from cnnfruit.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\n"
            "print(' '.join(sorted(m for m in sys.modules if '.' not in m)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.strip().splitlines()[-1].split())
    assert "click" in loaded and loaded.isdisjoint(HEAVY_MODULES), sorted(loaded & set(HEAVY_MODULES))


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("cnnfruit, version ")


def test_train_reports_an_early_stop(tmp_path):
    """Two classes of the same noise: validation loss stops improving within a few epochs."""
    import numpy as np

    rng = np.random.default_rng(0)
    for part, count in (("train", 20), ("test", 4)):
        for name in ("heads", "tails"):
            write_images(tmp_path / "noise" / part / name, count, side=32, rng=rng)
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "noise"), "--kernels", "2", "--kernel-size",
                                       "5", "--hidden", "6", "--batch-size", "4", "--lr", "1e-2", "--normalize",
                                       "scale", "--val-fraction", "0.5", "--epochs", "12", "--patience", "1",
                                       "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    best, epochs = history["best_epoch"], len(history["epochs"])
    assert epochs == best + 1 < 12
    assert (f"Early stop: validation loss has not improved for 1 epochs (best {history['best_val_loss']:.4f} at "
            f"epoch {best})") in result.output.splitlines()
    assert f"Saved {tmp_path / 'run' / 'best.npz'} (epoch {best}, lowest validation loss)" in result.output


def test_an_early_stop_without_a_finite_validation_loss_says_so():
    from cnnfruit.cli.terminal import describe_best
    from cnnfruit.history import History

    assert describe_best(History()) == "it was never a finite number"
