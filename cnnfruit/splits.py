"""The seeded random streams of a run, and the train/validation cut they make.

One seed gives three independent generators: weight init, the train/validation split and the
epoch shuffling. Training and `eval --split train|val` both cut the training images here, so the
validation images of a finished run can always be found again from its seed.
"""
import numpy as np

from .errors import SettingError


def generators(seed):
    """Independent generators for weight init, the train/validation split and epoch shuffling."""
    init, split, shuffle = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(init), np.random.default_rng(split), np.random.default_rng(shuffle)


def train_val_split(n, val_fraction, rng):
    """Shuffle range(n) with rng and cut off round(val_fraction * n) items for validation."""
    order = rng.permutation(n)
    n_val = int(round(val_fraction * n))
    if n - n_val < 1:
        raise SettingError("{val_fraction} {value} leaves no training images out of {n}", value=val_fraction, n=n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def training_split(dataset, seed, val_fraction):
    """(train, validation) Splits of dataset.train, as a run with this seed and share cut them."""
    _, split_rng, _ = generators(seed)
    train_index, val_index = train_val_split(len(dataset.train), val_fraction, split_rng)
    return dataset.train.subset(train_index), dataset.train.subset(val_index)


def named_split(dataset, name, config):
    """The Split called name ("test", "train" or "val") of a run with the settings config (a dict)."""
    if name == "test":
        return dataset.test
    if name not in ("train", "val"):
        raise SettingError("{split} must be one of test, train, val, got {value!r}", value=name)
    if not config:
        raise SettingError("the model records no training settings, so its {value} images are unknown; use "
                           "{split} test", value=name)
    train, val = training_split(dataset, config.get("seed", 0), config.get("val_fraction", 0.3))
    return train if name == "train" else val
