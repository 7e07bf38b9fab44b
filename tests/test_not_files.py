"""Anything that is not a regular file is refused without being opened: a FIFO would block the
reader for ever, a device might never end, a link to itself cannot be followed.

A command that opened the FIFO would hang; each call runs in a thread that the test gives up on
after a generous while, so the old behaviour fails the test instead of hanging the suite.
"""
import os
import threading

import numpy as np
import pytest
from PIL import Image

import cnnfruit
from cnnfruit.errors import CnnfruitError

from helpers import TINY, cli

HANG = 120  # seconds: far beyond any of these calls, only there to catch one that blocks


def finishes(call):
    """call()'s result, or a failure if it does not return: it would have blocked for ever."""
    result = {}

    def run():
        try:
            result["value"] = call()
        except BaseException as err:  # noqa: BLE001 - handed back below
            result["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), "the call blocked: it opened something that is not a file"
    if "error" in result:
        raise result["error"]
    return result["value"]


def last_line(result):
    assert "Traceback" not in result.output, result.output
    return result.output.splitlines()[-1]


@pytest.fixture
def data(make_image_folder, tmp_path):
    return make_image_folder(tmp_path / "data")


@pytest.fixture(scope="module")
def model(tmp_path_factory, image_folder):
    out = tmp_path_factory.mktemp("model")
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    return out / "model.npz"


def test_a_fifo_named_like_an_image_in_a_data_folder_is_refused_or_skipped(data, tmp_path):
    fifo = data / "train" / "kiwi" / "pipe.jpg"
    os.mkfifo(fifo)
    result = finishes(lambda: cli("train", "--data", data, *TINY, "--epochs", 1, "--no-cache", "--out", tmp_path / "a"))
    assert last_line(result) == (f"Error: cannot read image {fifo}: a FIFO (named pipe), not a file (--skip-bad skips "
                                 "unreadable images)")
    result = finishes(lambda: cli("train", "--data", data, *TINY, "--epochs", 1, "--skip-bad", "--out", tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert f"Skipped 1 unreadable image(s) in {data}" in result.output


def test_predict_explain_and_plot_refuse_a_fifo_unopened(model, tmp_path):
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    result = finishes(lambda: cli("predict", model, fifo))
    assert f"cannot read image {fifo}: a FIFO (named pipe), not a file" in result.output
    assert last_line(result) == "Error: none of the 1 images could be read"
    result = finishes(lambda: cli("explain", model, fifo, "-o", tmp_path / "e.png"))
    assert last_line(result) == f"Error: cannot read image {fifo}: a FIFO (named pipe), not a file"
    result = finishes(lambda: cli("plot", model, "--feature-maps", fifo, "-o", tmp_path / "f.png"))
    assert last_line(result) == f"Error: cannot read image {fifo}: a FIFO (named pipe), not a file"
    history = tmp_path / "history.json"
    os.mkfifo(history)
    result = finishes(lambda: cli("plot", history))
    assert last_line(result) == f"Error: file {history} is a FIFO (named pipe), not a file"
    with pytest.raises(CnnfruitError, match="a FIFO"):
        finishes(lambda: cnnfruit.History.load(history))
    with pytest.raises(CnnfruitError, match="a FIFO"):
        finishes(lambda: cnnfruit.Classifier.load(model).predict([str(fifo)]))


def test_a_device_is_refused_unopened(model):
    result = finishes(lambda: cli("predict", model, "/dev/zero"))  # reading it would never end
    assert "cannot read image /dev/zero: a device, not a file" in result.output


def test_a_link_to_itself_in_a_data_folder_is_one_error_or_skipped(data, tmp_path):
    loop = data / "train" / "kiwi" / "loop.png"
    os.symlink(loop.name, loop)
    result = cli("train", "--data", data, *TINY, "--epochs", 1, "--no-cache", "--out", tmp_path / "a")
    assert last_line(result) == (f"Error: cannot read image {loop}: Too many levels of symbolic links (--skip-bad "
                                 "skips unreadable images)")
    assert cli("train", "--data", data, *TINY, "--epochs", 1, "--skip-bad", "--out", tmp_path / "b").exit_code == 0
    loop.unlink()
    folder = data / "train" / "loop"  # where a class folder would be: not a folder, so not a class
    os.symlink(folder.name, folder)
    result = cli("train", "--data", data, *TINY, "--epochs", 1, "--no-cache", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert cnnfruit.read_image_folder(data, cache_dir=False).class_names == ["apple", "kiwi", "plum"]


def test_regular_files_still_load(tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    link = tmp_path / "link.png"
    os.symlink(photo, link)
    assert cnnfruit.load_image(link).shape == (32, 32, 3)
