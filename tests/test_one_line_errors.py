"""Misuse and odd environments end in one `Error:` line (or a CnnfruitError from the library), never a
traceback: huge gradient checks, a Numba with nowhere to cache, a terminal that cannot show the class
names, hostile sweep reports, and the API called in ordinary wrong ways."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnfruit
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.nn.architecture import init_parameters

from helpers import TINY, cli

ROOT = Path(__file__).resolve().parents[1]


def last_line(result):
    assert "Traceback" not in result.output, result.output
    return result.output.splitlines()[-1]


# ---- gradcheck


@pytest.mark.parametrize("flags, lower", [(["--image-size", "100000"], "--image-size or --kernels"),
                                          (["--hidden", "100000000"], "--hidden"),
                                          (["--images", "100000000"], "--images"),
                                          (["--classes", "1000000000"], "--classes")])
def test_a_gradient_check_too_big_for_memory_is_refused_with_the_estimate(flags, lower):
    line = last_line(cli("gradcheck", *flags))
    assert line.startswith("Error: this gradient check needs about ") and line.endswith(f"available; lower {lower}")


# ---- the environment

NO_CACHE_FOLDER = """
import sys
from numba.core import caching
# cnnfruit installed where it may not write (its __pycache__), and a HOME without a cache folder
caching.InTreeCacheLocator.from_function = classmethod(lambda cls, py_func, py_file: None)
from cnnfruit.cli import main
sys.argv[0] = "cnnfruit"
main()
"""


def test_numba_without_a_writable_cache_folder_compiles_into_a_private_temporary_one(tmp_path):
    (tmp_path / "tmp").mkdir()
    env = {**{k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "NUMBA_CACHE_DIR")},
           "HOME": "/proc/nowhere", "TMPDIR": str(tmp_path / "tmp"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", NO_CACHE_FOLDER, "gradcheck", "--hidden", "4", "--kernels", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("Gradient check passed")
    folder = tmp_path / "tmp" / f"cnnfruit-numba-{os.getuid()}"
    assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o700" and any(folder.rglob("*.nbi"))
    # a folder of that name that others may write to is never used: Numba would load its contents as code
    (tmp_path / "tmp2").mkdir()
    shared = tmp_path / "tmp2" / f"cnnfruit-numba-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    done = subprocess.run([sys.executable, "-c", NO_CACHE_FOLDER, "gradcheck", "--hidden", "4", "--kernels", "2"],
                          cwd=ROOT, env={**env, "TMPDIR": str(tmp_path / "tmp2")}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert not any(shared.iterdir())


def test_class_names_a_terminal_cannot_show_are_escaped_not_a_traceback(tmp_path):
    rng = np.random.default_rng(0)
    for part, count in (("train", 6), ("test", 2)):
        for k, name in enumerate(["Kiwi", "\u00c4pfel", "\u68a8"]):
            folder = tmp_path / "data" / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray((rng.integers(0, 90, (32, 32, 3)) + 80 * k).astype(np.uint8)).save(folder / f"{i}.png")
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONPATH": str(ROOT)}
    tiny = [str(a) for a in TINY]
    commands = [["train", "--data", str(tmp_path / "data"), *tiny, "--epochs", "1", "--out", str(tmp_path / "run")],
                ["eval", str(tmp_path / "run" / "model.npz")],
                ["predict", str(tmp_path / "run" / "model.npz"), str(tmp_path / "data" / "test" / "\u68a8" / "0.png")]]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "cnnfruit", *command], cwd=ROOT, env=env, capture_output=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr.decode("ascii", "replace")
        assert b"Traceback" not in done.stderr
        if command[0] == "eval":  # its report table: escaped where the terminal has no way to show it
            assert b"\\u68a8" in done.stdout and b"\\xc4pfel" in done.stdout


# ---- hostile sweep reports

SWEEP = {
    "kind": "cnnfruit-sweep", "version": 1, "swept": ["lr"], "fixed": {}, "seeds": [0], "rows": [{}],
    "runs": [{"trial": n, "params": {"lr": lr}, "seed": 0, "val_split": "block", "outcome": "finished", "epochs": 1,
              "val_accuracy": acc, "val_loss": 0.5, "best_val_loss": 0.5, "test_accuracy": acc, "seconds": 1.0,
              "folder": f"runs/trial-{n:04d}", "error": None}
             for n, (lr, acc) in enumerate([(1e-4, 0.8), (1e-3, 0.9)])],
}


def test_a_sweep_report_of_hundreds_of_unknown_settings_is_refused_at_once(tmp_path):
    report = copy.deepcopy(SWEEP)
    report["swept"] = [f"s{i}" for i in range(300)]
    for run in report["runs"]:
        run["params"] = {name: 1 for name in report["swept"]}
    (tmp_path / "sweep.json").write_text(json.dumps(report))
    assert last_line(cli("plot", tmp_path / "sweep.json")) == (
        f"Error: {tmp_path / 'sweep.json'} is not a cnnfruit sweep.json: its swept settings are not distinct names "
        "of training settings")
    assert not (tmp_path / "sweep.png").exists()


@pytest.mark.parametrize("change, problem", [
    (lambda r: r["runs"][0].pop("params"), "run 1 is not an object with params"),
    (lambda r: r["runs"][0].update(val_accuracy="x"), "run 1 has a val_accuracy that is not a number from 0 to 1"),
    (lambda r: r["runs"][1].update(test_accuracy=7), "run 2 has a test_accuracy that is not a number from 0 to 1"),
    (lambda r: r["runs"][0]["params"].update(lr={"a": 1}), "run 1 has no value of lr of a setting's kind"),
    (lambda r: r["runs"][0].update(outcome="won"), "run 1 has an outcome that is not one of"),
    (lambda r: r.update(seeds=[-1]), "its seeds are not whole numbers from 0"),
    (lambda r: r.update(swept=["lr", "lr"]), "its swept settings are not distinct names"),
    (lambda r: r.update(version=99), "its version is not one this cnnfruit reads"),
    (lambda r: r.update(runs={}), "it needs a list of at most"),
])
def test_a_malformed_sweep_report_names_what_is_wrong(tmp_path, change, problem):
    report = copy.deepcopy(SWEEP)
    change(report)
    (tmp_path / "sweep.json").write_text(json.dumps(report))
    assert last_line(cli("plot", tmp_path / "sweep.json")).startswith(
        f"Error: {tmp_path / 'sweep.json'} is not a cnnfruit sweep.json: {problem}")


def test_every_setting_swept_with_many_odd_values_draws_a_bounded_figure(tmp_path):
    from cnnfruit.config import setting_fields

    names = [name for name in setting_fields() if name != "seed"]
    report = copy.deepcopy(SWEEP)
    report["swept"] = names
    run = report["runs"][0]
    report["runs"] = [{**run, "trial": n, "params": {name: f"$x^{n}" * 30 if n % 2 else n + 0.5 for name in names}}
                      for n in range(200)]
    (tmp_path / "sweep.json").write_text(json.dumps(report))
    result = cli("plot", tmp_path / "sweep.json", "-o", tmp_path / "sweep.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "sweep.png") as image:  # panels wrap four to a row
        assert image.size[0] < 2400 and image.size[1] < 120 * 4.5 * (len(names) // 4 + 1)


# ---- the API called in ordinary wrong ways


@pytest.fixture(scope="module")
def clf():
    arch = cnnfruit.Architecture(in_channels=1, kernels=2, kernel_size=5, hidden=(6,), classes=3)
    return cnnfruit.Classifier(arch, init_parameters(arch, np.random.default_rng(0)), ["a", "b", "c"])


def test_a_list_mixing_paths_and_arrays_is_one_error(clf, tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    with pytest.raises(CnnfruitError, match="^a list of images must be all file paths or all arrays; item 1 is a "
                                            "ndarray among paths$"):
        clf.predict([str(photo), np.zeros((32, 32, 3), np.uint8)])
    with pytest.raises(CnnfruitError, match="^expected uint8 RGB images"):
        clf.predict([np.zeros((32, 32, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)])  # ragged


def test_predict_files_takes_one_path_as_one_file(clf, tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    for given in (str(photo), photo):
        results = clf.predict_files(given)
        assert len(results) == 1 and results[0].path == given and results[0].error is None
    with pytest.raises(CnnfruitError, match="^predict_files takes file paths; item 0 is a ndarray$"):
        clf.predict_files([np.zeros((32, 32, 3), np.uint8)])


@pytest.mark.parametrize("config, message", [
    ("adam", "the settings must be a TrainConfig (or a dict of them), got 'adam'"),
    (None, "the settings must be a TrainConfig (or a dict of them), got None"),
    ({"lrr": 1e-3}, "'lrr' is not a training setting"),
])
def test_fit_with_settings_that_are_not_settings_is_one_error(synthetic_dataset, config, message):
    with pytest.raises(SettingError) as err:
        cnnfruit.fit(synthetic_dataset, config)
    assert str(err.value) == message
    with pytest.raises(SettingError):
        cnnfruit.find_lr(synthetic_dataset, config)


def test_fit_with_data_that_is_not_a_dataset_is_one_error():
    with pytest.raises(CnnfruitError, match="^the data must be a Dataset .* got str$"):
        cnnfruit.fit("photos/", cnnfruit.TrainConfig())
