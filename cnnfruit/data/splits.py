"""The seeded random streams of a run, and the train/validation cut they make.

One seed gives three independent generators: weight init, the train/validation split and the
epoch shuffling (with augmentation); dropout has a fourth stream of its own (dropout_generator).
Training and `eval --split train|val` both cut the training images here, so the validation images
of a finished run can always be found again from its seed.

Two cuts: `random` holds out a random share of the images; `block` holds out, within each class
and each recording, a few runs of consecutive video frames. On video-frame datasets such as
Fruits-360, a random cut puts the neighbours of every validation frame in the training set, so it
scores nearly 100% for almost any recipe; a block cut is harder and ranks recipes like the test set.
"""
import os
import re
import warnings

import numpy as np

from cnnfruit.errors import SettingError


def generators(seed):
    """Independent generators for weight init, the train/validation split and epoch shuffling."""
    init, split, shuffle = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(init), np.random.default_rng(split), np.random.default_rng(shuffle)


# The run's SeedSequence spawns init, split and shuffle as its children 0, 1 and 2 (generators); its
# child 3 is dropout's, a stream of its own, so that dropout on or off moves none of the other three.
DROPOUT_STREAM = 3


def dropout_generator(seed, epoch, step):
    """The generator of dropout's draws for one training step (epoch and step counted from 0).

    A generator of its own per step, derived from the seed alone, so that a run resumed at any
    step draws the masks of an unbroken run without saving a generator state, and a run without
    dropout draws nothing from any stream it shares with one with dropout.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(DROPOUT_STREAM, epoch, step)))


def train_val_split(n, val_fraction, rng):
    """Shuffle range(n) with rng and cut off round(val_fraction * n) items for validation."""
    order = rng.permutation(n)
    n_val = int(round(val_fraction * n))
    if n - n_val < 1:
        raise SettingError("{val_fraction} {value} leaves no training images out of {n}", value=val_fraction, n=n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


BLOCKS_PER_RECORDING = 3  # held-out runs of frames per class and recording
# Fruits-360 names a frame N_100.jpg (100: the photo's side), r_N_100.jpg in a second recording
# and r2_N_100.jpg in a third: the recording is what precedes the frame number.
FRAME_NAME = re.compile(r"^(?P<recording>.*?)(?P<frame>\d+)(?:_\d+)?\.[^.]+$")


def frame_order(paths):
    """(recording, frame) of each file name; frame is None where the name carries no number."""
    keys = []
    for path in paths:
        match = FRAME_NAME.match(os.path.basename(path))
        keys.append((match["recording"], int(match["frame"])) if match else ("", None))
    return keys


def block_split(labels, paths, val_fraction, rng):
    """Hold out BLOCKS_PER_RECORDING runs of consecutive frames per class and recording.

    Each group (class, recording) is ordered by frame number and round(val_fraction * size) of
    its frames are held out as up to three blocks at seeded random places. Files whose names carry
    no frame number are ordered by name after the numbered ones, with a warning.
    """
    if len(paths) != len(labels):
        raise SettingError("{val_split} block needs the file name of every training image, and this dataset "
                           "has none; use {val_split} random")
    keys = frame_order(paths)
    unnumbered = sum(frame is None for _, frame in keys)
    if unnumbered:
        warnings.warn(f"block validation split: {unnumbered} of {len(paths)} training file names carry no frame "
                      "number (like 12_100.jpg); they are taken in name order", stacklevel=3)
    groups = {}
    for i, ((recording, frame), label) in enumerate(zip(keys, labels)):
        group_key = (int(label), os.path.dirname(paths[i]), recording)
        groups.setdefault(group_key, []).append((frame is None, frame or 0, os.path.basename(paths[i]), i))
    held_out = []
    for group_key in sorted(groups):
        members = [i for *_, i in sorted(groups[group_key])]
        held_out.extend(_blocks(members, int(round(val_fraction * len(members))), rng))
    val_index = np.sort(np.array(held_out, dtype=np.int64))
    train_index = np.setdiff1d(np.arange(len(labels)), val_index)
    if len(train_index) < 1:
        raise SettingError("{val_fraction} {value} leaves no training images out of {n}", value=val_fraction,
                           n=len(labels))
    return train_index, val_index


def _blocks(members, n_val, rng):
    """n_val of the ordered members as up to BLOCKS_PER_RECORDING runs, at seeded random places."""
    if n_val == 0:
        return []
    count = min(BLOCKS_PER_RECORDING, n_val)
    sizes = [n_val // count + (b < n_val % count) for b in range(count)]
    kept = len(members) - n_val
    # Where each block goes among the kept frames: distinct gaps, so blocks never merge.
    gaps = np.sort(rng.choice(kept + 1, size=count, replace=False)) if kept + 1 >= count else np.zeros(count, int)
    out = []
    for b, (gap, size) in enumerate(zip(gaps, sizes)):
        start = gap + sum(sizes[:b])
        out.extend(members[start:start + size])
    return out


def validation_cut(train, val_fraction, val_split, rng):
    """(train_index, val_index) of the Split train, cut the way val_split says."""
    if val_split == "block":
        return block_split(train.labels, train.paths, val_fraction, rng)
    return train_val_split(len(train), val_fraction, rng)


def split_training_images(dataset, val_fraction, val_split, rng):
    """(train, validation) Splits of a run: the data's own val/ folder when it has one, else a cut
    of dataset.train the way val_split says, drawn from rng (the run's split generator)."""
    if dataset.val is not None:
        return dataset.train, dataset.val
    train_index, val_index = validation_cut(dataset.train, val_fraction, val_split, rng)
    return dataset.train.subset(train_index), dataset.train.subset(val_index)


def training_split(dataset, seed, val_fraction, val_split="random"):
    """(train, validation) Splits of dataset, as a run with this seed and share had them."""
    _, split_rng, _ = generators(seed)
    return split_training_images(dataset, val_fraction, val_split, split_rng)


def named_split(dataset, name, config):
    """The Split called name ("test", "train" or "val") of a run with the settings config (a dict)."""
    if name == "test":
        return dataset.test
    if name not in ("train", "val"):
        raise SettingError("{split} must be one of test, train, val, got {value!r}", value=name)
    if not config:
        raise SettingError("the model records no training settings, so its {value} images are unknown; use "
                           "{split} test", value=name)
    train, val = training_split(dataset, config.get("seed", 0), config.get("val_fraction", 0.3),
                                config.get("val_split", "random"))
    return train if name == "train" else val
