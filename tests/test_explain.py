"""Saliency and occlusion maps: the chain rule through preprocessing, the maps, and cnnfruit explain."""
import json

import numpy as np
import pytest

from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.nn.gradcheck import relative_error
from cnnfruit.inference.classifier import Classifier
from cnnfruit.inference.explain import explain, input_gradient, occlusion_map, preprocess_backward
from cnnfruit.data.preprocess import to_inputs

import naive
from helpers import cli, tiny_arch

MODES = [(color, normalize) for color in ("grey", "rgb") for normalize in ("none", "scale", "standardize")]


@pytest.mark.parametrize("color,normalize", MODES)
def test_the_reference_preprocessing_is_the_librarys(rng, color, normalize):
    pixels = rng.integers(0, 256, (2, 6, 6, 3)).astype(np.uint8)
    np.testing.assert_allclose(naive.preprocess(pixels.astype(np.float64), color, normalize),
                               to_inputs(pixels, color, normalize), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("color,normalize", MODES)
def test_preprocess_backward_by_finite_differences(rng, color, normalize):
    pixels = rng.uniform(0, 255, (2, 5, 5, 3))
    upstream = rng.standard_normal((2, 1 if color == "grey" else 3, 5, 5))
    analytic = preprocess_backward(pixels, upstream, color, normalize)
    numeric = naive.numerical_gradient(lambda: naive.preprocess(pixels, color, normalize), pixels, upstream, eps=1e-4)
    assert relative_error(analytic, numeric) < 1e-6


STACK = "conv4x3 same, maxpool2, conv6x3 same, conv6x5, maxpool4, dense8"  # explain goes through every kind


@pytest.fixture(params=[(*mode, "") for mode in MODES[1::2] + MODES[:1]] + [("rgb", "standardize", STACK),
                                                                            ("grey", "scale", STACK)])
def clf(request):
    color, normalize, layers = request.param
    shape = dict(layers=layers) if layers else dict(kernels=3, kernel_size=5, hidden=(8,))
    arch = Architecture(in_channels=1 if color == "grey" else 3, classes=3, **shape)
    params = init_parameters(arch, np.random.default_rng(3), dtype=np.float64)
    return Classifier(arch, params, ["a", "b", "c"], color, normalize)


def logit_of_pixels(clf, pixels, index):
    """The class's logit as a function of float64 pixel values: the reference forward, end to end."""
    inputs = naive.preprocess(pixels, clf.color, clf.normalize)
    return naive.network_logits(clf.arch, clf.params, inputs)[:, index].sum()


def test_the_saliency_gradient_is_that_of_the_logit_with_respect_to_the_pixels(clf):
    image = np.random.default_rng(4).integers(0, 256, (1, 32, 32, 3)).astype(np.uint8)
    analytic = input_gradient(clf, image, 1)
    pixels = image.astype(np.float64)
    # to_inputs rounds to float32 on the way in, so compare at float32's precision on a sample of pixels
    sample = [(0, i, j, c) for i, j, c in zip((0, 5, 16, 31, 20), (3, 9, 16, 30, 1), (0, 1, 2, 1, 0))]
    for index in sample:
        saved = pixels[index]
        pixels[index] = saved + 0.5
        plus = logit_of_pixels(clf, pixels, 1)
        pixels[index] = saved - 0.5
        minus = logit_of_pixels(clf, pixels, 1)
        pixels[index] = saved
        assert analytic[index] == pytest.approx((plus - minus) / 1.0, rel=1e-3, abs=1e-6 * np.abs(analytic).max())
    assert np.abs(analytic).max() > 0


def test_log_probability_gradient_is_the_logit_gradients_minus_their_weighted_mean(clf):
    image = np.random.default_rng(5).integers(0, 256, (1, 32, 32, 3)).astype(np.uint8)
    probs = clf.predict_proba(image)[0].astype(np.float64)
    logits = [input_gradient(clf, image, m) for m in range(3)]
    expected = logits[2] - sum(p * g for p, g in zip(probs, logits))
    np.testing.assert_allclose(input_gradient(clf, image, 2, "log-probability"), expected, rtol=1e-5,
                               atol=1e-7 * np.abs(expected).max())


def test_occlusion_map_is_the_mean_fall_over_the_patches(clf):
    image = np.random.default_rng(6).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    occlusion = occlusion_map(clf, image, 0, patch=16, stride=16)  # four patches, one per quarter
    base = clf.predict_proba(image[None])[0, 0]
    covered = image.copy()
    covered[16:, :16] = image.reshape(-1, 3).mean(axis=0).round()
    expected = base - clf.predict_proba(covered[None])[0, 0]
    assert occlusion[20, 5] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert occlusion.shape == (32, 32)


def test_explain_defaults_to_the_predicted_class(clf):
    image = np.random.default_rng(7).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    e = explain(clf, image)
    assert e.class_name == e.predicted == clf.predict(image[None])[0]
    assert e.saliency.shape == (32, 32) and (e.saliency >= 0).all()
    assert explain(clf, image, class_name="c").class_name == "c"


def test_the_command_draws_the_maps(tmp_path, image_folder):
    arch = tiny_arch()
    model = tmp_path / "m.npz"
    Classifier(arch, init_parameters(arch, np.random.default_rng(1)), ["apple", "kiwi", "plum"], "grey",
               "standardize").save(model)
    photo = sorted((image_folder / "test" / "kiwi").iterdir())[0]
    out = tmp_path / "map.png"
    result = cli("explain", model, photo, "-o", out, "--class", "plum")
    assert result.exit_code == 0, result.output
    assert "explaining plum" in result.output and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    as_json = json.loads(cli("explain", model, photo, "-o", out, "--json").stdout)
    assert np.array(as_json["saliency"]).shape == (32, 32)
    bad = cli("explain", model, photo, "-o", out, "--class", "pear")
    assert bad.exit_code == 1 and "Error: the model has no class 'pear'" in bad.output
