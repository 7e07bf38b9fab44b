"""No command writes over its own input or another run's file, and no run ends in a state that the
other commands refuse: such a run is refused before it starts."""
import hashlib
import shutil

import numpy as np
import pytest

import cnnfruit
from cnnfruit.errors import CnnfruitError

from helpers import TINY, cli

pytest.importorskip("onnx", reason="the onnx extra is not installed")


@pytest.fixture(scope="module")
def run(tmp_path_factory, image_folder):
    """A finished tiny run (model.npz, best.npz, history.json, history.csv), copied per test."""
    out = tmp_path_factory.mktemp("clobber") / "run"
    result = cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def folder(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def digests(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir() if path.is_file()}


def last_line(result):
    assert "Traceback" not in result.output, result.output
    return result.output.splitlines()[-1]


@pytest.mark.parametrize("target", ["model.npz", "best.npz", "history.json", "history.csv"])
def test_export_never_writes_over_a_run_file_or_its_own_input(folder, target):
    before = digests(folder)
    result = cli("export", folder / "model.npz", folder / target)
    assert result.exit_code == 1
    if target == "model.npz":
        assert last_line(result) == (f"Error: {folder / 'model.npz'} is the checkpoint being exported; write the ONNX "
                                     f"file to another name, such as {folder / 'model.onnx'}")
    else:
        stem = target.split(".")[0]
        assert last_line(result) == (f"Error: {folder / target} exists and is not an ONNX file; export replaces only an "
                                     f"earlier export, so give another name, such as {folder / stem}.onnx")
    assert digests(folder) == before


def test_export_replaces_an_earlier_export(folder):
    assert cli("export", folder / "model.npz", folder / "model.onnx").exit_code == 0
    (folder / "model.onnx").write_bytes(b"\x08" + (folder / "model.onnx").read_bytes()[1:200])  # an old export
    again = cli("export", folder / "best.npz", folder / "model.onnx")
    assert again.exit_code == 0, again.output
    assert (folder / "model.onnx").stat().st_size > 200
    with pytest.raises(CnnfruitError, match="exists and is not an ONNX file"):
        cnnfruit.Classifier.load(folder / "model.npz").export(folder / "history.json")


def test_a_figure_never_replaces_an_input_of_its_command(folder, tmp_path, monkeypatch):
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(photo)
    kept = photo.read_bytes()
    result = cli("explain", folder / "model.npz", photo, "-o", photo)
    assert last_line(result) == f"Error: {photo} is an input of this command; write the figure to another file"
    result = cli("plot", folder / "model.npz", "--feature-maps", photo, "-o", photo)
    assert last_line(result) == f"Error: {photo} is an input of this command; write the figure to another file"
    assert photo.read_bytes() == kept
    history = tmp_path / "history.png"  # a history under a figure's name: its default figure is itself
    shutil.copy(folder / "history.json", history)
    monkeypatch.chdir(tmp_path)  # where plot writes by default
    result = cli("plot", history)
    assert last_line(result) == "Error: history.png is an input of this command; write the figure to another file"
    assert history.read_bytes() == (folder / "history.json").read_bytes()


def test_saving_a_classifier_to_a_folder_is_one_error(folder):
    clf = cnnfruit.Classifier.load(folder / "model.npz")
    with pytest.raises(CnnfruitError, match=f"^cannot write checkpoint {folder}: it is a folder; give a file name such "
                                            f"as {folder / 'model.npz'}$"):
        clf.save(folder)


def test_a_run_without_test_images_is_refused_before_it_starts(synthetic_dataset, tmp_path):
    data = synthetic_dataset
    empty = cnnfruit.Dataset("no-test", data.class_names, data.train, data.test.subset(np.arange(0)))
    with pytest.raises(CnnfruitError, match="^the data no-test has no test images: a run is scored on them when it "
                                            "ends; give it a test split$"):
        cnnfruit.fit(empty, cnnfruit.TrainConfig(epochs=1, kernels=2, kernel_size=5, hidden=(6,)), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()
