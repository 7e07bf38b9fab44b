"""Numbers are checked where they enter the library, and an array's memory layout never changes an
answer: inputs are made C-ordered before the preprocessing and the kernels see them."""
import numpy as np
import pytest

import cnnfruit
from cnnfruit.errors import SettingError
from cnnfruit.inference.tta import views
from cnnfruit.nn.architecture import init_parameters

NAMES = ["a", "b", "c"]


def classifier(color="grey", normalize="none", seed=0):
    arch = cnnfruit.Architecture(in_channels=3 if color == "rgb" else 1, kernels=2, kernel_size=5, hidden=(6,),
                                 classes=3)
    return cnnfruit.Classifier(arch, init_parameters(arch, np.random.default_rng(seed)), NAMES, color, normalize)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(3).integers(0, 256, (10, 32, 32, 3)).astype(np.uint8)


@pytest.mark.parametrize("batch_size", [0, -1, -256, 2.5, True, "8", None])
def test_a_batch_size_that_is_not_a_whole_number_from_1_is_refused(pixels, tmp_path, batch_size):
    clf = classifier()
    message = rf"^batch_size must be a whole number, 1 or more, got {batch_size!r}$".replace("(", r"\(").replace(")", r"\)")
    for call in (lambda: clf.predict_proba(pixels, batch_size=batch_size),
                 lambda: clf.predict(pixels, batch_size=batch_size),
                 lambda: clf.evaluate(cnnfruit.Split(pixels, np.zeros(10, np.int64), []), batch_size=batch_size),
                 lambda: clf.predict_files([str(tmp_path / "x.png")], batch_size=batch_size)):
        with pytest.raises(SettingError, match=message):
            call()


def test_any_batch_size_from_1_gives_the_same_answer(pixels):
    clf = classifier()
    whole = clf.predict_proba(pixels)
    for batch_size in (1, 3, 10, 11, np.int64(4)):
        np.testing.assert_array_equal(clf.predict_proba(pixels, batch_size=batch_size), whole)


@pytest.mark.parametrize("min_confidence", ["0.5", -0.1, 1.5, float("nan"), float("inf"), True, None, [0.5]])
def test_a_confidence_that_is_not_a_number_from_0_to_1_is_refused(pixels, min_confidence):
    clf = classifier()
    with pytest.raises(SettingError, match=r"^min_confidence must be a number from 0 to 1, got "):
        clf.predict(pixels, min_confidence=min_confidence)
    with pytest.raises(SettingError, match=r"^min_confidence must be a number from 0 to 1, got "):
        clf.decide(clf.predict_proba(pixels), min_confidence)


def test_confidences_at_the_ends_are_accepted(pixels):
    clf = classifier()
    probs = clf.predict_proba(pixels)
    assert None not in clf.predict(pixels, min_confidence=0)
    assert clf.predict(pixels, min_confidence=1) == [NAMES[m] if p[m] == 1 else None for m, p in
                                                     zip(probs.argmax(axis=1), probs)]
    assert clf.decide([], 0.5) == []


@pytest.mark.parametrize("color, normalize", [("grey", "none"), ("grey", "standardize"), ("rgb", "scale")])
def test_fortran_ordered_and_strided_images_give_the_bits_of_c_ordered_ones(pixels, color, normalize):
    clf = classifier(color, normalize)
    expected = clf.predict_proba(pixels)
    np.testing.assert_array_equal(clf.predict_proba(np.asfortranarray(pixels)), expected)
    wide = np.zeros((10, 32, 64, 3), np.uint8)
    wide[:, :, ::2] = pixels
    np.testing.assert_array_equal(clf.predict_proba(wide[:, :, ::2]), expected)
    labels = np.arange(10) % 3
    a = clf.evaluate(cnnfruit.Split(pixels, labels, []))
    b = clf.evaluate(cnnfruit.Split(np.asfortranarray(pixels), labels, []))
    assert (a.loss, a.accuracy) == (b.loss, b.accuracy)


def test_each_turned_view_gives_what_the_turned_photos_give(pixels):
    """rotate's views are quarter-turned views of the array, not copies: the same bits as copies."""
    clf = classifier()
    for view in views(pixels, "rotate"):
        np.testing.assert_array_equal(clf.predict_proba(view), clf.predict_proba(view.copy()))
