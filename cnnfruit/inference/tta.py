"""Test-time augmentation: predict on several views of each image and average the probabilities.

    flip    the image and its left-right mirror (2 views)
    rotate  the 8 symmetries of the square: 4 quarter turns, each also mirrored (8 views)

A view is a turned or mirrored copy of the uint8 photo, made before preprocessing: the luma and
the per-image standardisation do not depend on where a pixel is, so turning the photo first or
the tensor first gives the same input. The views are the deterministic counterparts of
augment.py's random flips and turns.
"""
import numpy as np

from cnnfruit.config import TTA_MODES
from cnnfruit.errors import SettingError


def check_mode(mode):
    if mode not in TTA_MODES:
        raise SettingError("{tta} must be one of {choices}, got {value!r}", choices=", ".join(TTA_MODES), value=mode)
    return mode


def views(images, mode):
    """The views of uint8 images (N, H, W, 3), one (N, H, W, 3) array per view; the first is the image."""
    check_mode(mode)
    mirror = images[:, :, ::-1]
    if mode == "none":
        return [images]
    if mode == "flip":
        return [images, mirror]
    turns = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    return [view for turned in turns for view in (turned, turned[:, :, ::-1])]
