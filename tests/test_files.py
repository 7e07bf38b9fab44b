"""Atomic writes: a failed or interrupted write leaves the old file whole and no temporary behind."""
import os

import numpy as np
import pytest
from click.testing import CliRunner

from cnnfruit import checkpoint
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.cli import main
from cnnfruit.files import TEMPORARY_PREFIX, write_atomically, write_text_atomically


def leftovers(folder):
    return [name for name in os.listdir(folder) if name.startswith(TEMPORARY_PREFIX)]


def test_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    write_text_atomically(str(path), "new")
    assert path.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, failure):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old contents")

    def write(temporary):
        with open(temporary, "wb") as f:
            f.write(b"half of the new")
        raise failure

    with pytest.raises(type(failure)):
        write_atomically(str(path), write)
    assert path.read_bytes() == b"old contents"
    assert leftovers(tmp_path) == []


def tiny_checkpoint(seed=0):
    arch = Architecture(kernels=2, kernel_size=5, hidden=(4,))
    return checkpoint.Checkpoint(arch, ["a", "b", "c"], init_parameters(arch, np.random.default_rng(seed)))


def test_checkpoint_save_failing_midway_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    checkpoint.save(str(path), tiny_checkpoint(0))
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 truncated")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        checkpoint.save(str(path), tiny_checkpoint(1))
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_train_that_cannot_write_says_so_and_leaves_nothing_half_written(tmp_path, image_folder, monkeypatch):
    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(image_folder), "--hidden", "4", "--kernels", "1",
                                       "--epochs", "1", "-q", "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: cannot write to {out}: No space left on device"
    assert os.listdir(out) in ([], [".cnnfruit.lock"])  # the lock file stays (see training/run_folder.py), empty


def test_plot_that_cannot_write_keeps_the_old_png(tmp_path, monkeypatch):
    history = tmp_path / "history.json"
    history.write_text('{"epochs": [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5}]}')
    png = tmp_path / "history.png"
    png.write_bytes(b"old picture")

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    result = CliRunner().invoke(main, ["plot", str(history)])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {png}: No space left on device\n"
    assert png.read_bytes() == b"old picture"
    assert leftovers(tmp_path) == []
def test_saved_files_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    from cnnfruit.files import write_text_atomically

    path = tmp_path / "history.json"
    write_text_atomically(str(path), "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


