"""A Classifier always applies its own preprocessing: from arrays, from files, in eval and predict."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import cnnfruit
from cnnfruit.nn.architecture import init_parameters
from cnnfruit.cli import main
from cnnfruit.nn.network import Network
from cnnfruit.data.preprocess import to_inputs

NAMES = ["Carambula", "Lychee", "Pear"]


def saved_model(rng, tmp_path, color, normalize):
    arch = cnnfruit.Architecture(in_channels=3 if color == "rgb" else 1, kernels=2, kernel_size=5, hidden=(6,),
                                 classes=3)
    clf = cnnfruit.Classifier(arch, init_parameters(arch, rng), NAMES, color, normalize)
    path = str(tmp_path / f"{color}-{normalize}.npz")
    clf.save(path)
    return path, Network(arch, clf.params)


@pytest.mark.parametrize("color, normalize", [("grey", "none"), ("grey", "scale"), ("rgb", "standardize")])
def test_a_loaded_classifier_applies_its_preprocessing(rng, tmp_path, color, normalize):
    path, network = saved_model(rng, tmp_path, color, normalize)
    clf = cnnfruit.Classifier.load(path)
    assert (clf.color, clf.normalize, clf.class_names) == (color, normalize, NAMES)
    pixels = rng.integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    expected = network.predict_proba(to_inputs(pixels, color, normalize))
    np.testing.assert_array_equal(clf.predict_proba(pixels), expected)
    assert clf.predict(pixels) == [NAMES[m] for m in expected.argmax(axis=1)]


def test_files_and_arrays_give_the_same_answer(rng, tmp_path):
    path, _ = saved_model(rng, tmp_path, "rgb", "scale")
    clf = cnnfruit.Classifier.load(path)
    pixels = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    files = []
    for k, image in enumerate(pixels):
        files.append(tmp_path / f"{k}.png")
        Image.fromarray(image).save(files[-1])
    np.testing.assert_array_equal(clf.predict_proba(files), clf.predict_proba(pixels))
    np.testing.assert_array_equal(clf.predict_proba(str(files[0])), clf.predict_proba(pixels[0]))
    assert clf.feature_maps(files[1]).shape == (2, 28, 28)


def test_preprocessed_tensors_are_refused(rng, tmp_path):
    """Handing it float inputs would preprocess them twice; it says what it expects instead."""
    path, _ = saved_model(rng, tmp_path, "grey", "scale")
    clf = cnnfruit.Classifier.load(path)
    x = to_inputs(rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8), "grey", "scale")
    with pytest.raises(cnnfruit.CnnfruitError, match=r"expected uint8 RGB images of shape \(N, 32, 32, 3\)"):
        clf.predict_proba(x)


def test_evaluate_scores_a_split(rng, tmp_path):
    path, network = saved_model(rng, tmp_path, "grey", "scale")
    test = cnnfruit.load_embedded().test
    evaluation = cnnfruit.Classifier.load(path).evaluate(test)
    loss, accuracy, predictions = network.evaluate(to_inputs(test.images, "grey", "scale"), test.labels)
    assert evaluation.accuracy == accuracy and evaluation.loss == loss
    np.testing.assert_array_equal(evaluation.predictions, predictions)
    report = evaluation.report()
    assert report["images"] == 496 and report["class_names"] == NAMES


def test_predict_command_applies_the_checkpoints_preprocessing(rng, tmp_path):
    pixels = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    image = tmp_path / "photo.png"
    Image.fromarray(pixels).save(image)
    path, network = saved_model(rng, tmp_path, "rgb", "standardize")
    result = CliRunner().invoke(main, ["predict", path, str(image), "--json"])
    assert result.exit_code == 0, result.output
    got = list(json.loads(result.output)[0]["probabilities"].values())
    expected = network.predict_proba(to_inputs(pixels[None], "rgb", "standardize"))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    raw = network.predict_proba(to_inputs(pixels[None], "rgb", "none"))[0]
    assert not np.allclose(got, raw, rtol=1e-3)


@pytest.mark.parametrize("color, normalize", [("grey", "scale"), ("rgb", "standardize")])
def test_eval_command_applies_the_checkpoints_preprocessing(rng, tmp_path, color, normalize):
    path, network = saved_model(rng, tmp_path, color, normalize)
    result = CliRunner().invoke(main, ["eval", path, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    test = cnnfruit.load_embedded().test
    _, accuracy, predictions = network.evaluate(to_inputs(test.images, color, normalize), test.labels)
    assert report["accuracy"] == pytest.approx(accuracy)
    assert np.bincount(predictions, minlength=3).tolist() == np.sum(report["confusion_matrix"], axis=0).tolist()


def test_a_classifier_without_training_settings_cannot_replay_its_split(rng, tmp_path):
    path, _ = saved_model(rng, tmp_path, "grey", "none")
    result = CliRunner().invoke(main, ["eval", path, "--split", "val"])
    assert result.exit_code == 1
    assert result.output == ("Error: the model records no training settings, so its val images are unknown; use "
                             "--split test\n")
