"""The block validation split: runs of consecutive video frames held out per class and recording."""
import warnings

import numpy as np
import pytest

from cnnfruit.data import splits
from cnnfruit.data.datasets import Split, load_embedded
from cnnfruit.errors import SettingError


def frames_split(names, labels):
    return Split(np.zeros((len(names), 2, 2, 3), np.uint8), np.array(labels), list(names))


def test_block_split_holds_out_runs_of_consecutive_frames_per_class_and_recording():
    names = [f"train/a/{i}_100.jpg" for i in range(60)] + [f"train/a/r_{i}_100.jpg" for i in range(60)] + \
            [f"train/b/{i}_100.jpg" for i in range(30)]
    labels = [0] * 120 + [1] * 30
    order = np.random.default_rng(3).permutation(len(names))  # the split must not depend on file order
    data = frames_split([names[i] for i in order], [labels[i] for i in order])
    train, val = splits.validation_cut(data, 0.3, "block", np.random.default_rng(0))
    assert len(val) == 18 + 18 + 9 and len(train) + len(val) == 150 and not set(train) & set(val)
    held = [data.paths[i] for i in val]
    for prefix in ("train/a/", "train/a/r_", "train/b/"):
        frames = sorted(int(p[len(prefix):].split("_")[0]) for p in held
                        if p.startswith(prefix) and p[len(prefix)].isdigit())
        runs = np.split(frames, np.where(np.diff(frames) != 1)[0] + 1)
        assert 1 <= len(runs) <= splits.BLOCKS_PER_RECORDING, (prefix, frames)
    again, _ = splits.validation_cut(data, 0.3, "block", np.random.default_rng(0))
    other, _ = splits.validation_cut(data, 0.3, "block", np.random.default_rng(1))
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_block_split_says_when_names_carry_no_frame_number():
    data = frames_split([f"train/a/photo-{c}.png" for c in "abcdefghij"], [0] * 10)
    with pytest.warns(UserWarning, match="10 of 10 training file names carry no frame number"):
        train, val = splits.validation_cut(data, 0.3, "block", np.random.default_rng(0))
    assert len(val) == 3


def test_block_split_needs_file_names():
    data = Split(np.zeros((4, 2, 2, 3), np.uint8), np.zeros(4, np.int64), [])
    with pytest.raises(SettingError, match="val_split block needs the file name"):
        splits.validation_cut(data, 0.3, "block", np.random.default_rng(0))


def test_the_random_split_is_unchanged_and_the_embedded_set_has_its_file_names():
    dataset = load_embedded()
    assert dataset.train.paths[0] == "train/Carambula/0_100.jpg" and len(dataset.test.paths) == 496
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, val = splits.validation_cut(dataset.train, 0.3, "block", np.random.default_rng(0))
    assert abs(len(val) - 0.3 * 1472) < 6
    old = splits.train_val_split(1472, 0.3, np.random.default_rng(0))
    new = splits.validation_cut(dataset.train, 0.3, "random", np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(old, new))


def test_train_and_eval_cut_the_same_block_validation_images():
    from cnnfruit import TrainConfig
    from cnnfruit.training.loop import TrainingLoop

    dataset = load_embedded()
    config = TrainConfig(val_split="block", kernels=2, kernel_size=5, hidden=(6,), seed=3)
    loop = TrainingLoop.start(dataset, config)
    val = splits.named_split(dataset, "val", config.to_dict())
    assert len(val) == len(loop.splits.y_val) and np.array_equal(val.labels, loop.splits.y_val)
    random_val = splits.named_split(dataset, "val", {**config.to_dict(), "val_split": "random"})
    assert val.paths == [dataset.train.paths[i] for i in splits.validation_cut(
        dataset.train, 0.3, "block", splits.generators(3)[1])[1]] != random_val.paths
