"""Hostile input beyond checkpoints: huge sizes, odd environments, odd histories, many classes, bad files
among good ones. Each ends in one `Error:` line or in a bounded, correct result; never a traceback."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import cnnfruit
from cnnfruit import plots
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.errors import SettingError

from helpers import TINY, TINY_SETTINGS, cli, tiny_arch, write_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = r"[\d.]+ (B|KiB|MiB|GiB|TiB|PiB|EiB)"


def last_line(result):
    assert "Traceback" not in result.output, result.output
    return result.output.splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# memory: estimated before anything is allocated


@pytest.mark.parametrize("flag, value", [("--hidden", "1000000000"), ("--kernels", "1000000000"),
                                         ("--hidden", "100000,100000,100000")])
def test_a_network_too_big_for_memory_is_refused_with_the_estimate(tmp_path, flag, value):
    out = tmp_path / "run"
    result = cli("train", flag, value, "-q", "--out", out)
    assert result.exit_code == 1, result.output
    assert re.fullmatch(
        rf"Error: training this network needs about {SIZE} of memory \(weights {SIZE}, gradients {SIZE}, "
        rf"optimizer state {SIZE}, activations of \d+ images {SIZE}, images as tensors {SIZE}\), more than the "
        rf"{SIZE} available; lower {flag} \(now {re.escape(value)}\)", last_line(result)), last_line(result)
    assert not out.exists()


def test_the_library_names_the_setting_without_flags(synthetic_dataset):
    with pytest.raises(SettingError, match=r"; lower hidden \(now 1000000000\)$"):
        cnnfruit.fit(synthetic_dataset, cnnfruit.TrainConfig(epochs=1, hidden=(10**9,)))


def test_the_estimate_counts_what_training_allocates():
    from cnnfruit.nn.memory import training_needs

    config = cnnfruit.TrainConfig(optimizer="adam", batch_size=4, **TINY_SETTINGS)
    arch = Architecture.from_config(config, 3)
    parts = training_needs(arch, config, images=30)
    weights = sum(int(np.prod(s)) for s in arch.parameter_shapes().values()) * 4
    assert parts["weights"] == parts["gradients"] == weights
    assert parts["optimizer state"] == 2 * weights + 8
    # each layer's output and its gradient (conv maps, 6 and 3 units), a scratch of each layer's
    # input (the image, the flat maps, 6 units); probabilities and the loss; for the evaluation
    # batch (all 30 images)
    maps, image = arch.features, 32 * 32
    assert parts["activations of 30 images"] == 30 * 4 * (2 * (maps + 6 + 3) + (image + maps + 6) + 3 + 1)


# ---------------------------------------------------------------------------------------------
# the environment


@pytest.mark.parametrize("value, commands", [("0", ["train", "eval", "predict", "plot", "gradcheck", "summary"]),
                                             ("-2", ["predict"])])
def test_an_unusable_numba_thread_count_is_one_error_line(tmp_path, value, commands):
    """Numba reads NUMBA_NUM_THREADS as it is imported; every command imports it in one place."""
    model = tmp_path / "model.npz"
    arch = tiny_arch()
    cnnfruit.Classifier(arch, init_parameters(arch, np.random.default_rng(0)), ["a", "b", "c"]).save(str(model))
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    env = {**os.environ, "NUMBA_NUM_THREADS": value}
    every = {"train": ["train", "-q", "--epochs", "1", "--out", tmp_path / "run"], "eval": ["eval", model],
             "predict": ["predict", model, photo], "plot": ["plot", model, "--kernels", "-o", tmp_path / "k.png"],
             "gradcheck": ["gradcheck"], "summary": ["summary", model]}
    for args in (every[command] for command in commands):
        done = subprocess.run([sys.executable, "-m", "cnnfruit", *map(str, args)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert re.fullmatch(rf"Error: NUMBA_NUM_THREADS={re.escape(value)} is not a thread count Numba accepts "
                            r"\(.+\); set it to a whole number from 1 to \d+, or unset it",
                            done.stderr.splitlines()[-1]), done.stderr


# ---------------------------------------------------------------------------------------------
# history files


GOOD_EPOCH = {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5}


@pytest.mark.parametrize("history, problem", [
    ({"epochs": [{**GOOD_EPOCH, "train_loss": 1e308}, {**GOOD_EPOCH, "epoch": 2, "train_loss": -1e308}]},
     "epoch 1 has a train_loss that is not a number from 0 to 1e+39"),
    ({"epochs": [{**GOOD_EPOCH, "train_accuracy": 1e308}]}, "epoch 1 has a train_accuracy that is not a number from 0 to 1"),
    ({"epochs": [{**GOOD_EPOCH, "val_loss": -1}]}, "epoch 1 has a val_loss that is not a number from 0 to 1e+39"),
    ({"epochs": [{**GOOD_EPOCH, "seconds": -5}]}, "epoch 1 has a seconds that is not a number from 0 to 1e+12"),
    ({"epochs": [{**GOOD_EPOCH, "train_loss": float("nan")}]},
     "epoch 1 has a train_loss that is not a number from 0 to 1e+39"),
    ({"epochs": [GOOD_EPOCH, GOOD_EPOCH]}, "its epoch numbers do not rise: 1 after 1"),
    ({"epochs": [{**GOOD_EPOCH, "epoch": 10**12}]},
     "epoch 1 has an epoch number that is not a whole number from 1 to 1000000"),
    ({"epochs": [GOOD_EPOCH], "best_epoch": 10**400}, "its best_epoch is not one of its epochs"),
    ({"epochs": [GOOD_EPOCH], "best_epoch": 7}, "its best_epoch is not one of its epochs"),
    ({"epochs": [GOOD_EPOCH], "test_accuracy": float("inf")}, "its test_accuracy is not a number from 0 to 1"),
    ({"epochs": [GOOD_EPOCH], "total_seconds": -1}, "its total_seconds is not a number from 0 to 1e+12"),
    ({"epochs": [GOOD_EPOCH], "seed": -1}, "its seed is not a whole number of 0 or more"),
    ({"epochs": [GOOD_EPOCH], "dataset": "x" * 1000}, "its dataset is not a name of at most 255 characters"),
    ({"epochs": [GOOD_EPOCH], "hyperparameters": {"lr": [[[1]]]}}, "its hyperparameters are not setting: value pairs"),
])
def test_plot_refuses_absurd_values_in_a_history(tmp_path, history, problem, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history))
    result = cli("plot", path)
    assert result.exit_code == 1
    assert last_line(result) == f"Error: {path} is not a cnnfruit history: {problem}"
    assert not (tmp_path / "history.png").exists()


def test_a_deeply_nested_history_is_refused_before_parsing(tmp_path):
    path = tmp_path / "history.json"
    path.write_text('{"epochs": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result = cli("plot", path)
    assert last_line(result) == f"Error: {path} is not a cnnfruit history: it is nested more than 20 levels deep"


def test_json_depth_skips_strings_and_carries_across_chunks():
    from cnnfruit.jsontext import depth

    assert depth('{"a": [[1]], "b": "[[[[\\"[["}') == 3
    assert [depth("[[[]]][[", chunk=c) for c in (1, 2, 3, 100)] == [3, 3, 3, 3]
    assert depth("") == 0 and depth("[" * 100_000) == 100_000


def test_text_in_a_history_is_drawn_as_written_not_as_mathtext(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    """`$x^$` in a dataset name made matplotlib's mathtext parser raise while saving."""
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"dataset": "$x^$ fruit", "hyperparameters": {"lr": "$\\frac{$", "batch_size": 1},
                                "epochs": [GOOD_EPOCH, {**GOOD_EPOCH, "epoch": 2}]}))
    result = cli("plot", path)
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------------------
# figures: bounded for many classes, written in the format the file name asks for


def test_the_confusion_figure_stays_readable_and_bounded_for_many_classes(tmp_path):
    names = [f"class {k}" for k in range(200)]
    fig = plots.confusion_figure(np.ones((200, 200), np.int64), names)
    width, height = fig.get_size_inches()
    assert width <= plots.CONFUSION_MAX_INCHES and height <= plots.CONFUSION_MAX_INCHES
    ax = fig.axes[0]
    assert len(ax.texts) == 0  # no per-cell numbers: they would be unreadable specks
    assert 2 <= len(ax.get_xticklabels()) <= plots.CONFUSION_MAX_TICKS
    assert ax.get_xticklabels()[0].get_text() == "class 0"
    names = [f"class {k}" for k in range(1000)]
    matrix = np.random.default_rng(0).integers(0, 5, (1000, 1000))
    path = tmp_path / "cm.png"
    plots.save_figure(plots.confusion_figure(matrix, names), str(path))
    with Image.open(path) as image:
        assert max(image.size) <= 120 * plots.CONFUSION_MAX_INCHES + 100


def test_the_terminal_report_leaves_out_a_confusion_table_too_wide_to_read(capsys):
    """1000 classes made a 1000-column table: 12 s and 600 MB to print a million unreadable numbers."""
    from cnnfruit.cli.terminal import print_report

    M = 300
    report = {"accuracy": 0.5, "images": M, "split": "test", "class_names": [f"c{k}" for k in range(M)],
              "per_class": [{"class": f"c{k}", "precision": 0.5, "recall": 0.5, "support": 1} for k in range(M)],
              "confusion_matrix": np.eye(M, dtype=int).tolist()}
    print_report(report)
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == ("Confusion matrix: 300 classes are too many for a table; --json gives it, --plot "
                                    "draws it")
    assert len(out.splitlines()) < M + 20  # the per-class table, one row each, and little else


def test_a_few_classes_still_get_their_numbers():
    fig = plots.confusion_figure([[5, 1, 0], [0, 6, 0], [1, 0, 4]], ["$a^", "b", "c"])
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted("510060104")
    fig.savefig(__import__("io").BytesIO(), format="png")  # "$a^" is drawn as text, not parsed as maths


MAGIC = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".svg": b"<?xml", ".pdf": b"%PDF"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_image_folder):
    root = tmp_path_factory.mktemp("trained")
    data = make_image_folder(root / "data")
    out = root / "run"
    result = cli("train", "--data", data, *TINY, "--epochs", 1, "--out", out)
    assert result.exit_code == 0, result.output
    return {"data": data, "out": out, "model": out / "model.npz"}


@pytest.mark.parametrize("suffix", list(MAGIC))
def test_figures_are_written_in_the_format_their_suffix_names(tmp_path, trained, suffix):
    target = tmp_path / f"curves{suffix}"
    assert cli("plot", trained["out"] / "history.json", "-o", target).exit_code == 0
    assert target.read_bytes().startswith(MAGIC[suffix])
    target = tmp_path / f"cm{suffix}"
    assert cli("eval", trained["model"], "--plot", target).exit_code == 0
    assert target.read_bytes().startswith(MAGIC[suffix])


@pytest.mark.parametrize("name", ["curves.bmp", "curves", "curves.png.txt"])
def test_an_unknown_figure_format_is_refused_before_any_work(tmp_path, trained, name):
    message = f"Error: cannot write {tmp_path / name}: name a .png, .jpg, .jpeg, .svg or .pdf file"
    assert last_line(cli("plot", trained["out"] / "history.json", "-o", tmp_path / name)) == message
    result = cli("eval", trained["model"], "--plot", tmp_path / name)
    assert result.output.splitlines() == [message]  # refused before evaluating
    assert not (tmp_path / name).exists()


# ---------------------------------------------------------------------------------------------
# gradcheck


def test_gradcheck_refuses_a_threshold_that_is_not_a_positive_number():
    """A NaN threshold once passed with every row saying FAIL (no comparison with NaN is true)."""
    for value in ("nan", "-1", "0", "inf"):
        result = cli("gradcheck", "--threshold", value, "--image-size", "6", "--kernel-size", "3", "--hidden", "4")
        assert result.exit_code == 1
        assert last_line(result) == f"Error: --threshold must be a positive number, got {float(value)}"


# ---------------------------------------------------------------------------------------------
# predict: a bad file among good ones


def test_predict_reports_a_bad_file_predicts_the_rest_and_fails_at_the_end(tmp_path, trained):
    good = write_images(tmp_path, 3, side=32)
    bad = tmp_path / "notes.jpg"
    bad.write_text("shopping list")
    files = [good[0], bad, good[1], good[2]]
    result = cli("predict", trained["model"], *files)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines if line.startswith(str(tmp_path)) and "Error" not in line] == \
        [str(p) for p in (good[0], good[1], good[2])]
    assert f"cannot read image {bad}: not an image format Pillow can decode" in lines
    assert lines[-1] == "Error: 1 of 4 images could not be read (--skip-bad predicts the others without this error)"

    skipped = cli("predict", trained["model"], *files, "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    assert skipped.output.splitlines()[-1] == "Skipped 1 unreadable image(s)"

    as_json = cli("predict", trained["model"], *files, "--json", "--skip-bad")
    entries = json.loads(as_json.output.split("\nSkipped")[0])
    assert [e["file"] for e in entries] == [str(f) for f in files]
    assert entries[1] == {"file": str(bad), "error": f"cannot read image {bad}: not an image format Pillow can decode"}
    assert all("class" in e for k, e in enumerate(entries) if k != 1)


def test_predict_with_nothing_readable_fails_even_with_skip_bad(tmp_path, trained):
    bad = tmp_path / "notes.jpg"
    bad.write_text("shopping list")
    assert last_line(cli("predict", trained["model"], bad, "--skip-bad")) == "Error: none of the 1 images could be read"


def test_the_library_predicts_files_and_says_which_failed(tmp_path, trained):
    clf = cnnfruit.Classifier.load(str(trained["model"]))
    good = write_images(tmp_path, 2, side=32)
    results = clf.predict_files([good[0], tmp_path / "gone.png", good[1]], batch_size=1)
    assert [r.path for r in results] == [good[0], tmp_path / "gone.png", good[1]]
    assert results[1].probabilities is None and "No such file or directory" in results[1].error
    np.testing.assert_array_equal(np.stack([results[0].probabilities, results[2].probabilities]),
                                  clf.predict_proba(good))
    assert results[0].error is None and results[0].class_name == clf.predict([good[0]])[0]


# ---------------------------------------------------------------------------------------------
# eval: which images, and splits that do not exist


def test_eval_without_data_scores_the_folder_the_model_was_trained_on(trained):
    sizes = {}
    for split in ("train", "val", "test"):
        result = cli("eval", trained["model"], "--split", split, "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        sizes[split] = report["images"]
        given = json.loads(cli("eval", trained["model"], "--split", split, "--json", "--data", trained["data"]).output)
        assert given["accuracy"] == report["accuracy"] and given["confusion_matrix"] == report["confusion_matrix"]
    assert sizes == {"train": 17, "val": 7, "test": 9}  # 24 training images, 30% held out; not the embedded set


def test_eval_refuses_when_the_training_folder_is_gone(tmp_path, make_image_folder):
    data = make_image_folder(tmp_path / "data")
    out = tmp_path / "run"
    assert cli("train", "--data", data, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    data.rename(tmp_path / "moved")
    assert last_line(cli("eval", out / "model.npz", "--split", "train")) == (
        f"Error: the data folder {data} that {out / 'model.npz'} was trained on is gone; pass --data")


def test_eval_refuses_a_train_split_of_other_images(tmp_path, trained, make_image_folder):
    other = make_image_folder(tmp_path / "other", seed=3)
    result = cli("eval", trained["model"], "--split", "val", "--data", other)
    assert last_line(result) == (
        f"Error: the images in {other} differ from those {trained['model']} was trained on, so its val split "
        "cannot be cut again; use --split test")


def test_eval_of_a_validation_split_that_was_never_held_out(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--val-fraction", 0, "--out", out).exit_code == 0
    result = cli("eval", out / "model.npz", "--split", "val")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: {out / 'model.npz'} was trained with --val-fraction 0: it held out no validation images; use "
        "--split test or --split train"]
