"""Every command follows a network given as a layer spec: train, eval, predict with TTA, resume,
summary, explain, export, lr-find, and the one-line errors of specs that cannot work."""
import json
import threading

import numpy as np
import pytest

import cnnfruit
from cnnfruit import checkpoint
from cnnfruit.data.datasets import read_image_folder

from helpers import assert_same_model, cli, saved_arrays

STACK = "conv4x3 same, maxpool2, conv6x3, maxpool2, dense8"
FLAGS = ["--layers", STACK, "--color", "rgb", "--normalize", "standardize", "--optimizer", "adam", "--lr", "1e-3",
         "--batch-size", "4", "--augment", "flip", "--dropout", "0.2", "-q"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, image_folder):
    out = tmp_path_factory.mktemp("stack") / "run"
    result = cli("train", "--data", image_folder, *FLAGS, "--epochs", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert "Network: 3x32x32 -> conv 4x3x3 same -> maxpool 2 -> conv 6x3x3 -> maxpool 2 -> 294 -> 8 -> 3" in \
        result.output
    return out


def test_training_saves_the_spec_and_every_layer(run):
    saved = saved_arrays(run / "model.npz")
    assert int(saved["format_version"]) == 2 and str(saved["arch_layers"]) == STACK
    assert sorted(name for name in saved if name.startswith("param_")) == [
        f"param_{layer}_{kind}" for layer in ("conv0", "conv1", "dense0", "dense1") for kind in ("b", "w")]
    assert json.loads(str(saved["train_config"]))["layers"] == STACK


def test_eval_predict_with_tta_and_summary_of_the_model(run, image_folder):
    evaluated = cli("eval", run / "model.npz", "--data", image_folder, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert 0 <= json.loads(evaluated.output)["accuracy"] <= 1
    photo = next((image_folder / "test" / "kiwi").iterdir())
    predicted = cli("predict", run / "model.npz", photo, "--tta", "rotate", "--json")
    assert predicted.exit_code == 0, predicted.output
    summary = cli("summary", run / "model.npz", "--json")
    assert json.loads(summary.output)["architecture"]["layers"] == STACK


def test_a_stopped_run_of_a_stack_resumes_bit_for_bit(tmp_path, image_folder):
    straight = tmp_path / "straight"
    assert cli("train", "--data", image_folder, *FLAGS, "--epochs", 2, "--out", straight).exit_code == 0
    dataset = read_image_folder(str(image_folder))
    config = cnnfruit.TrainConfig(epochs=2, layers=STACK, color="rgb", normalize="standardize", optimizer="adam",
                                  lr=1e-3, batch_size=4, augment="flip", dropout=0.2)
    stop, steps = threading.Event(), []

    def on_step(done, total):
        steps.append(done)
        if len(steps) == total + 2:  # two steps into the second epoch
            stop.set()

    stopped = tmp_path / "stopped"
    assert cnnfruit.fit(dataset, config, out=str(stopped), on_step=on_step, stop=stop).interrupted
    result = cli("train", "--resume", stopped / "model.npz")
    assert result.exit_code == 0, result.output
    assert_same_model(straight / "model.npz", stopped / "model.npz")


def test_explain_and_export_go_through_every_layer(run, tmp_path):
    from PIL import Image

    from cnnfruit.inference.explain import input_gradient

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3)).astype(np.uint8)).save(photo)
    explained = cli("explain", run / "model.npz", photo, "-o", tmp_path / "explain.png")
    assert explained.exit_code == 0, explained.output
    clf = cnnfruit.Classifier.load(str(run / "model.npz"))
    assert np.abs(input_gradient(clf, str(photo), 0)).max() > 0
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    exported = cli("export", run / "model.npz", tmp_path / "stack.onnx")
    assert exported.exit_code == 0, exported.output
    session = ort.InferenceSession(str(tmp_path / "stack.onnx"), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    probabilities = session.run(["probabilities"], {"images": images})[0]
    np.testing.assert_allclose(probabilities, clf.predict_proba(images), rtol=0, atol=1e-5)


def test_lr_find_on_a_stack(tmp_path, image_folder):
    result = cli("lr-find", "--data", image_folder, "--layers", STACK, "--color", "rgb", "--normalize", "scale",
                 "--optimizer", "adam", "--batch-size", "4", "--steps", "12", "-o", tmp_path / "lr.png")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("flags, message", [
    (["--layers", "conv8x4, maxpool2"], "Error: --layers: layer 2 maxpool2 cannot pool the 8x29x29 maps of layer 1 "
                                        "(conv8x4): 2 does not divide 29"),
    (["--layers", "conv8x3, dense16", "--kernels", "4"],
     "Error: give the network as --layers or by its shorthands (--kernels), not both"),
    (["--layers", "conv8x3, desne16"], "Error: --layers: layer 2 'desne16' is not a layer; did you mean dense? Layers "
                                       "are convKxS [same|valid], maxpoolP or denseO"),
])
def test_a_spec_that_cannot_work_stops_training_before_the_images_are_read(tmp_path, flags, message):
    result = cli("train", "--data", tmp_path / "missing", *flags, "--out", tmp_path / "run")
    assert result.exit_code == 1 and result.output.splitlines() == [message], result.output
    assert not (tmp_path / "run").exists()


def test_an_api_spec_that_cannot_work_is_a_setting_error(synthetic_dataset):
    with pytest.raises(cnnfruit.SettingError, match="layer 3 conv4x9 has a 9x9 kernel, larger than the 4x8x8 maps"):
        cnnfruit.fit(synthetic_dataset, cnnfruit.TrainConfig(layers="conv4x3 same, maxpool4, conv4x9"))
    with pytest.raises(cnnfruit.SettingError, match="not both"):
        cnnfruit.TrainConfig(layers="dense8", hidden=(8,))
    assert checkpoint.FORMAT_VERSION == 2


def test_gradcheck_refuses_a_network_too_big_for_memory_in_one_line(monkeypatch):
    from cnnfruit.nn import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 10**6)
    result = cli("gradcheck", "--layers", "conv4x3 same, maxpool2, dense100000")
    assert result.exit_code == 1
    line = result.output.splitlines()[-1]
    assert line.startswith("Error: this gradient check needs about ")
    assert line.endswith("more than the 976.6 KiB available; lower --layers")
