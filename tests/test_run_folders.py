"""Run folders are never clobbered: a folder holding a run is refused, a folder being written is locked.

The lock is tested with a real second process: a small script that opens a run folder and waits,
while this process tries to train into the same folder.
"""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import cnnfruit
from cnnfruit.errors import CnnfruitError
from cnnfruit.training.run_folder import RunFolder

from helpers import TINY, TINY_SETTINGS, cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = dict(epochs=1, **TINY_SETTINGS)


def data(seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        labels = np.arange(n) % 3
        images = rng.integers(0, 120, (n, 32, 32, 3))
        images[np.arange(n), :, :, labels] += 120
        return cnnfruit.Split(images.astype(np.uint8), labels.astype(np.int64), [])

    return cnnfruit.Dataset("tinted", ["a", "b", "c"], split(24), split(6))


def test_a_folder_holding_a_run_is_refused_and_left_as_it_was(tmp_path):
    out = tmp_path / "good"
    cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=out)
    before = {name: (out / name).read_bytes() for name in ("model.npz", "history.json", "best.npz")}
    with pytest.raises(CnnfruitError, match=f"{out} already holds a run \\(model.npz, history.json, history.csv, best.npz\\)"):
        cnnfruit.fit(data(1), cnnfruit.TrainConfig(**CONFIG), out=out)
    assert {name: (out / name).read_bytes() for name in before} == before


def test_the_cli_says_how_to_continue_or_replace_the_run(tmp_path, image_folder):
    out = tmp_path / "good"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    result = cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {out} already holds a run (model.npz, history.json, history.csv, best.npz); to continue it use --resume "
        f"{out / 'model.npz'}, to replace it use --overwrite")


def test_overwrite_clears_the_old_run_first_so_no_stale_best_survives(tmp_path):
    out = tmp_path / "run"
    cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=out)
    assert (out / "best.npz").exists()
    (out / "notes.txt").write_text("mine")
    result = cnnfruit.fit(data(), cnnfruit.TrainConfig(val_fraction=0, **CONFIG), out=out, overwrite=True)
    assert result.history.best_epoch is None
    assert sorted(name for name in os.listdir(out) if not name.startswith(".")) == [
        "history.csv", "history.json", "model.npz", "notes.txt"]


def test_overwrite_through_the_cli(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    result = cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--val-fraction", 0, "--overwrite",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert not (out / "best.npz").exists()


def test_an_empty_folder_or_one_with_other_files_is_fine(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "README").write_text("notes")
    assert cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=tmp_path / "run").stopped == "finished"


def test_resuming_into_another_folder_holding_a_run_needs_overwrite(tmp_path):
    for name in ("a", "b"):
        cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=tmp_path / name)
    with pytest.raises(CnnfruitError, match="already holds a run"):
        cnnfruit.resume(str(tmp_path / "a" / "model.npz"), epochs=2, data=data(), out=str(tmp_path / "b"))
    result = cnnfruit.resume(str(tmp_path / "a" / "model.npz"), epochs=2, data=data(), out=str(tmp_path / "b"),
                             overwrite=True)
    assert len(result.history.epochs) == 2


def test_resuming_into_a_new_folder_brings_the_best_checkpoint_along(tmp_path, monkeypatch, saved_arrays_of):
    """history.json names a best epoch; its best.npz must be in the folder the history is in."""
    from cnnfruit.training.loop import TrainingLoop

    cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=tmp_path / "a")
    monkeypatch.setattr(TrainingLoop, "_track_best", lambda self, record: setattr(self, "improved", False))
    result = cnnfruit.resume(str(tmp_path / "a" / "model.npz"), epochs=2, data=data(), out=str(tmp_path / "b"))
    assert result.history.best_epoch == 1  # epoch 2 did not improve, so nothing wrote best.npz in b
    assert saved_arrays_of(tmp_path / "b" / "best.npz") == saved_arrays_of(tmp_path / "a" / "best.npz")
    assert result.best is not None


@pytest.fixture
def saved_arrays_of():
    from helpers import saved_arrays

    return lambda path: {name: value.tobytes() for name, value in saved_arrays(path).items()}


HOLDER = """
import sys
from cnnfruit.training.run_folder import RunFolder
folder = RunFolder.create(sys.argv[1], resuming=True)
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    """A second process that holds the run folder tmp_path/run until its stdin closes."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], cwd=ROOT, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline() == "holding\n"
    yield process
    process.stdin.close()
    assert process.wait(timeout=60) == 0


def test_a_folder_in_use_by_another_process_is_refused_naming_it(tmp_path, holder):
    message = (f"run folder {tmp_path / 'run'} is in use by process {holder.pid} on {socket.gethostname()}, "
               "started ")
    with pytest.raises(CnnfruitError, match=message):
        cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=tmp_path / "run")
    with pytest.raises(CnnfruitError, match=message):  # overwrite does not take a folder from a live run
        cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=tmp_path / "run", overwrite=True)
    result = cli("train", *TINY, "--epochs", 1, "--out", tmp_path / "run")
    assert result.exit_code == 1 and result.output.splitlines()[-1].startswith(f"Error: {message}")
    assert not (tmp_path / "run" / "model.npz").exists()


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    out = tmp_path / "run"
    cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=out)
    taken = subprocess.run([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT, input="", text=True,
                           capture_output=True, timeout=60)
    assert taken.returncode == 0 and taken.stdout == "holding\n", taken.stderr


def test_a_failed_run_releases_the_lock_too(tmp_path, monkeypatch):
    from cnnfruit.training.loop import TrainingLoop

    def broken(*args, **kwargs):
        raise CnnfruitError("broken on purpose")

    monkeypatch.setattr(TrainingLoop, "run_epoch", broken)
    with pytest.raises(CnnfruitError, match="broken on purpose"):
        cnnfruit.fit(data(), cnnfruit.TrainConfig(**CONFIG), out=tmp_path / "run")
    RunFolder.create(str(tmp_path / "run"), resuming=True).unlock()


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        names = {
            f".tmp-{dead.pid}-abc123.npz": False,  # its writer is gone: a hard kill mid-write
            ".tmp-old7x_y.json": False,  # written before temporaries carried their writer's pid
            f".tmp-{alive.pid}-def456.png": True,  # a live process is writing it
            "model-notes.tmp": True,  # not ours at all
        }
        for name in names:
            (out / name).write_bytes(b"partial")
        RunFolder.create(str(out)).unlock()
        assert {name: (out / name).exists() for name in names} == names
    finally:
        alive.kill()
        alive.wait()


def test_two_runs_without_out_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    from cnnfruit.training.run_folder import new_run_folder

    monkeypatch.chdir(tmp_path)
    first, second = new_run_folder(), new_run_folder()
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
