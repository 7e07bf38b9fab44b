"""What the tests share: tiny settings that train in milliseconds, small datasets and image folders
made on the spot, the CLI runner, and comparisons of what runs saved.

Fixtures built on these live in conftest.py.
"""
import json
import os
import time

import numpy as np
from click.testing import CliRunner
from PIL import Image

from cnnfruit.cli import main
from cnnfruit.config import TrainConfig
from cnnfruit.data.datasets import Split
from cnnfruit.nn.architecture import Architecture

# ---- tiny networks: a step takes well under a millisecond

TINY_SETTINGS = {"kernels": 2, "kernel_size": 5, "hidden": (6,)}
# The same network as command-line flags, with no progress bar; 17 steps per epoch on image_folder.
TINY = ["--kernels", "2", "--kernel-size", "5", "--hidden", "6", "-q"]


def tiny_config(**settings):
    """A TrainConfig of the tiny network, with these settings on top."""
    return TrainConfig(**{**TINY_SETTINGS, **settings})


def tiny_arch(**overrides):
    """The tiny network's Architecture, for 3 grey classes unless told otherwise."""
    return Architecture(**{**TINY_SETTINGS, "classes": 3, **overrides})


# ---- arrays and datasets in memory


def relu_like(rng, shape, dtype):
    """Random values with about half of them exactly zero, as after a ReLU."""
    return np.maximum(rng.standard_normal(shape), 0).astype(dtype)


def tinted(n, rng):
    """A Split of n random 32x32 photos in 3 classes, each class tinted in its own colour channel
    so that the task is learnable."""
    labels = np.arange(n) % 3
    images = rng.integers(0, 120, (n, 32, 32, 3))
    images[np.arange(n), :, :, labels] += 120
    return Split(images.astype(np.uint8), labels.astype(np.int64), [])


# ---- image files and folders


def write_images(folder, count, *, label=0, start=0, side=8, suffix=".png", shade=None, rng=None):
    """count images in folder, named start.png, start+1.png, ...; returns their paths.

    The pixels are noise, drawn from rng when given (one generator across a whole tree), else
    from a generator seeded by (label, number), so that every image differs and writing it again
    gives the same file. shade: pixels 0..89 plus shade (a class's brightness, which a tiny
    network learns); None: 0..255.
    """
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        draw = rng if rng is not None else np.random.default_rng([label, i])
        if shade is None:
            pixels = draw.integers(0, 256, (side, side, 3), dtype=np.uint8)
        else:
            pixels = (draw.integers(0, 90, (side, side, 3)) + shade).astype(np.uint8)
        path = os.path.join(folder, f"{i}{suffix}")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def write_image_folder(root, classes=("apple", "kiwi", "plum"), train=8, test=3, size=32, fmt="png", seed=0):
    """root/train/<class>/*.fmt and root/test/<class>/*.fmt; classes differ in brightness. Returns root."""
    rng = np.random.default_rng(seed)
    for part, count in (("train", train), ("test", test)):
        for label, name in enumerate(classes):
            write_images(root / part / name, count, side=size, suffix=f".{fmt}", shade=80 * label, rng=rng)
    return root


def class_folders(root, classes=("apple", "kiwi", "plum"), per_class=5):
    """root/<class>/*.png; returns root."""
    for label, name in enumerate(classes):
        write_images(os.path.join(root, name), per_class, label=label)
    return root


def split_folders(root, splits=("train", "test"), classes=("apple", "kiwi"), per_class=(4, 2, 2)):
    """root/<split>/<class>/*.png for each split name given; returns root."""
    for split, count in zip(splits, per_class):
        for label, name in enumerate(classes):
            write_images(os.path.join(root, split, name), count, label=label, start=100 * len(split))
    return root


def backdate(root, seconds=60):
    """Set the modification time of root, or of every file under it, to seconds ago: old enough
    to be cached (cnnfruit.data.cache.RACY_SECONDS)."""
    when = time.time_ns() - seconds * 10**9
    paths = [os.path.join(folder, name) for folder, _, files in os.walk(root) for name in files]
    for path in paths or [root]:
        os.utime(path, ns=(when, when))
    return root


# ---- the command line and what runs saved


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def saved_arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def rewrite(source, target, change):
    """A copy of the checkpoint source at target, its arrays passed through change(arrays) first."""
    arrays = saved_arrays(source)
    change(arrays)
    np.savez(target, **arrays)
    return target


def without_timings(history):
    """The history with wall-clock times taken out: the only part of a run that may differ."""
    history = dict(history)
    history.pop("total_seconds", None)
    history["epochs"] = [{k: v for k, v in e.items() if k != "seconds"} for e in history["epochs"]]
    return history


def assert_same_model(path_a, path_b):
    """Every array bit for bit; the history up to its timings."""
    a, b = saved_arrays(path_a), saved_arrays(path_b)
    assert sorted(a) == sorted(b)
    for name in a:
        if name == "train_history":
            ha, hb = json.loads(str(a[name])), json.loads(str(b[name]))
            assert without_timings(ha) == without_timings(hb)
        else:
            assert a[name].dtype == b[name].dtype, name
            assert np.array_equal(a[name], b[name]), name


def as_format_1(arrays):
    """The arrays of a format-2 checkpoint of the report's shape of network as format 1 wrote them:
    the network by its kernels, kernel size and hidden widths instead of its layer spec."""
    from cnnfruit import layerspec

    arrays = dict(arrays)
    conv, *hidden = layerspec.parse(str(arrays.pop("arch_layers")))
    assert isinstance(conv, layerspec.ConvSpec) and conv.padding == "valid", conv
    arrays.update(format_version=np.array(1), arch_kernels=np.array(conv.kernels),
                  arch_kernel_size=np.array(conv.size), arch_hidden=np.array([h.units for h in hidden], np.int64))
    return arrays
