"""Augmentation: flips, rotations and shifts do what they say, from the run's seeded generator."""
import numpy as np
import pytest

import cnnfruit
from cnnfruit.data.augment import MAX_SHIFT, augment

from helpers import TINY_SETTINGS


def test_flip_mirrors_about_half_the_images_and_nothing_else(rng):
    x = rng.standard_normal((400, 1, 5, 5))
    flipped = augment(x.copy(), "flip", np.random.default_rng(0))
    mirrored = np.array([np.array_equal(a, b[..., ::-1]) for a, b in zip(flipped, x)])
    unchanged = np.array([np.array_equal(a, b) for a, b in zip(flipped, x)])
    assert (mirrored ^ unchanged).all()
    assert 150 < mirrored.sum() < 250
    np.testing.assert_array_equal(flipped, augment(x.copy(), "flip", np.random.default_rng(0)))


def test_rotate_reaches_all_eight_symmetries_of_the_square():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    seen = {augment(x.copy(), "rotate", np.random.default_rng(seed)).tobytes() for seed in range(100)}
    square = x[0, 0]
    symmetries = {np.ascontiguousarray(np.rot90(m, k)).tobytes() for m in (square, square.T) for k in range(4)}
    assert seen == symmetries


def test_shift_moves_content_by_at_most_max_shift(rng):
    x = np.zeros((50, 1, 12, 12))
    x[:, :, 5, 6] = 1.0  # one bright pixel away from the borders
    shifted = augment(x, "shift", np.random.default_rng(1))
    rows, cols = np.nonzero(shifted[:, 0].sum(axis=0))
    assert shifted.sum() == 50  # each image keeps its single pixel
    assert rows.min() >= 5 - MAX_SHIFT and rows.max() <= 5 + MAX_SHIFT
    assert cols.min() >= 5 - MAX_SHIFT and cols.max() <= 6 + MAX_SHIFT  # column 6, or 5 when mirrored
    assert len(set(rows)) > 1


def test_augmented_training_is_repeatable(synthetic_dataset):
    config = dict(TINY_SETTINGS, epochs=1, batch_size=8, normalize="scale", augment="flip", lr=1e-3)
    first, second, plain = (cnnfruit.fit(synthetic_dataset, cnnfruit.TrainConfig(**settings)).classifier.params
                            for settings in (config, config, {**config, "augment": "none"}))
    np.testing.assert_array_equal(first["conv_w"], second["conv_w"])
    assert not np.array_equal(first["conv_w"], plain["conv_w"])


@pytest.mark.parametrize("mode", ["none", "flip", "flip-vh", "rotate", "shift"])
def test_a_plan_applied_batch_by_batch_equals_the_whole_epoch_at_once(rng, mode):
    """The loop augments each batch when its step comes, from choices drawn for the epoch."""
    from cnnfruit.data.augment import draw_plan

    x = rng.standard_normal((23, 3, 9, 9))
    whole = augment(x.copy(), mode, np.random.default_rng(4))
    plan = draw_plan(len(x), mode, np.random.default_rng(4))
    batches = np.concatenate([plan.apply(x[start:start + 5].copy(), slice(start, start + 5))
                              for start in range(0, len(x), 5)])
    np.testing.assert_array_equal(batches, whole)
