"""Tiny image folders in any layout, for the folder reader's and the cache's tests."""
import os
import time

import numpy as np
from PIL import Image


def write_images(folder, count, label=0, start=0, side=8, suffix=".png"):
    """count small images in folder, named start.png, start+1.png, ...; each one's pixels differ."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        pixels = np.random.default_rng([label, i]).integers(0, 256, (side, side, 3), dtype=np.uint8)
        path = os.path.join(folder, f"{i}{suffix}")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def class_folders(root, classes=("apple", "kiwi", "plum"), per_class=5):
    """root/<class>/*.png; returns root."""
    for label, name in enumerate(classes):
        write_images(os.path.join(root, name), per_class, label)
    return root


def split_folders(root, splits=("train", "test"), classes=("apple", "kiwi"), per_class=(4, 2, 2)):
    """root/<split>/<class>/*.png for each split name given; returns root."""
    for split, count in zip(splits, per_class):
        for label, name in enumerate(classes):
            write_images(os.path.join(root, split, name), count, label, start=100 * len(split))
    return root


def backdate(root, seconds=60):
    """Set the modification time of root, or of every file under it, to seconds ago: old enough
    to be cached (cnnfruit.data.cache.RACY_SECONDS)."""
    when = time.time_ns() - seconds * 10**9
    paths = [os.path.join(folder, name) for folder, _, files in os.walk(root) for name in files]
    for path in paths or [root]:
        os.utime(path, ns=(when, when))
    return root
