"""Training-time augmentation: random flips and shifts of a whole epoch's inputs, in place.

Every random choice comes from the generator passed in (the trainer's shuffling generator), so a
seeded run makes the same choices every time. Inputs are (N, C, H, W) arrays already preprocessed.
"""
import numpy as np

from .config import AUGMENT_MODES
from .errors import CnnfruitError
MAX_SHIFT = 2  # pixels, for "shift"


def augment(x, mode, rng):
    """none: nothing; flip: each image mirrored left-right with probability 1/2; flip-vh: also
    upside down, independently; rotate: flip-vh, then transposed with probability 1/2, which makes
    each of the square's 8 rotations and reflections equally likely; shift: flip, then moved by up
    to MAX_SHIFT pixels each way, the border pixels repeated into the gap (the photos' background
    is plain)."""
    if mode == "none":
        return x
    if mode not in AUGMENT_MODES:
        raise CnnfruitError(f"unknown augmentation {mode!r}; choose from {', '.join(AUGMENT_MODES)}")
    mirror = rng.random(len(x)) < 0.5
    x[mirror] = x[mirror][..., ::-1]
    if mode in ("flip-vh", "rotate"):
        upside_down = rng.random(len(x)) < 0.5
        x[upside_down] = x[upside_down][..., ::-1, :]
    if mode == "rotate":
        if x.shape[-1] != x.shape[-2]:
            raise CnnfruitError("--augment rotate needs square images")
        transpose = rng.random(len(x)) < 0.5
        x[transpose] = x[transpose].swapaxes(-1, -2)
    elif mode == "shift":
        _shift(x, rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(len(x), 2)))
    return x


def _shift(x, offsets):
    """Move image n by offsets[n] = (down, right) pixels, repeating the edge into the gap."""
    H, W = x.shape[-2:]
    m = MAX_SHIFT
    padded = np.pad(x, ((0, 0), (0, 0), (m, m), (m, m)), mode="edge")
    for n, (down, right) in enumerate(offsets):
        x[n] = padded[n, :, m - down:m - down + H, m - right:m - right + W]
