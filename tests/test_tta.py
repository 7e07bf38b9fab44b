"""Test-time augmentation: the views, the averaged probabilities, and eval/predict --tta."""
import json

import numpy as np
import pytest

from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.inference.classifier import Classifier
from cnnfruit.data.datasets import Split
from cnnfruit.errors import SettingError
from cnnfruit.inference.tta import views

from helpers import cli


@pytest.fixture
def clf():
    arch = Architecture(in_channels=3, kernels=3, kernel_size=5, hidden=(8,), classes=3)
    return Classifier(arch, init_parameters(arch, np.random.default_rng(2)), ["a", "b", "c"], "rgb", "standardize")


def photos(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode, count", [("none", 1), ("flip", 2), ("rotate", 8)])
def test_views_are_the_distinct_symmetries_of_the_square(mode, count):
    image = photos(1)
    made = views(image, mode)
    assert len(made) == count == len({v.tobytes() for v in made})
    assert np.array_equal(made[0], image)
    if mode == "rotate":  # every turn and mirror, each once
        expected = {np.rot90(m, k, axes=(1, 2)).tobytes() for m in (image, image[:, :, ::-1]) for k in range(4)}
        assert {np.ascontiguousarray(v).tobytes() for v in made} == expected


def test_tta_averages_the_probabilities_of_the_views(clf):
    images = photos(5)
    expected = np.mean([clf.predict_proba(np.ascontiguousarray(v)) for v in views(images, "rotate")], axis=0)
    np.testing.assert_allclose(clf.predict_proba(images, tta="rotate"), expected, rtol=1e-6, atol=1e-7)
    # the 8 views of a turned photo are the same 8 views: the answer does not depend on the turn
    turned = np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2)))
    np.testing.assert_allclose(clf.predict_proba(turned, tta="rotate"), clf.predict_proba(images, tta="rotate"),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(clf.predict_proba(turned), clf.predict_proba(images))


def test_evaluate_with_tta(clf):
    split = Split(photos(12, seed=1), np.arange(12) % 3, [])
    plain, flipped = clf.evaluate(split), clf.evaluate(split, tta="flip")
    assert plain.tta == "none" and flipped.tta == "flip"
    assert np.array_equal(plain.predictions, plain.probabilities.argmax(axis=1))
    assert np.array_equal(flipped.predictions, flipped.probabilities.argmax(axis=1))
    assert flipped.accuracy == np.mean(flipped.predictions == split.labels)
    true = flipped.probabilities[np.arange(12), split.labels]
    assert flipped.loss == pytest.approx(-np.log(true).mean(), rel=1e-6)
    with pytest.raises(SettingError):
        clf.predict_proba(split.images, tta="turn")


def test_eval_and_predict_take_tta(tmp_path, clf, make_image_folder):
    data = make_image_folder(tmp_path / "data", classes=("a", "b", "c"), train=2, test=2)
    clf.save(tmp_path / "m.npz")
    report = json.loads(cli("eval", tmp_path / "m.npz", "--data", data, "--tta", "rotate", "--json").output)
    assert report["tta"] == "rotate"
    photo = sorted((data / "test" / "a").iterdir())[0]
    result = json.loads(cli("predict", tmp_path / "m.npz", photo, "--tta", "flip", "--json").output)[0]
    expected = clf.predict_proba([str(photo)], tta="flip")[0]
    assert [result["probabilities"][name] for name in "abc"] == pytest.approx(expected.tolist())
