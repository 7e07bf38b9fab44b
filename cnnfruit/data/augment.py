"""Training-time augmentation: random flips, turns and shifts of each image, drawn per epoch.

All of an epoch's random choices are drawn at its start (`draw_plan`) from the generator passed
in, the training loop's shuffling generator, so a seeded run makes the same choices every time; they are
then applied batch by batch (`AugmentPlan.apply`) to inputs already preprocessed, (N, C, H, W).
Drawing for the whole epoch first is what lets a batch be formed, preprocessed and augmented only
when its step comes, with the same result as augmenting the whole epoch at once.
"""
from dataclasses import dataclass

import numpy as np

from cnnfruit.config import AUGMENT_MODES
from cnnfruit.errors import CnnfruitError, SettingError

MAX_SHIFT = 2  # pixels, for "shift"


@dataclass
class AugmentPlan:
    """One epoch's choices, one entry per image of the epoch (in its shuffled order); None: not drawn."""

    mirror: np.ndarray = None  # left-right
    upside_down: np.ndarray = None
    transpose: np.ndarray = None
    offsets: np.ndarray = None  # (n, 2): down, right

    def apply(self, x, images=slice(None)):
        """Apply the choices of the epoch's `images` (a slice of it) to their inputs x, in place."""
        if self.mirror is not None:
            mirror = self.mirror[images]
            x[mirror] = x[mirror][..., ::-1]
        if self.upside_down is not None:
            upside_down = self.upside_down[images]
            x[upside_down] = x[upside_down][..., ::-1, :]
        if self.transpose is not None:
            if x.shape[-1] != x.shape[-2]:
                raise SettingError("{augment} rotate needs square images")
            transpose = self.transpose[images]
            x[transpose] = x[transpose].swapaxes(-1, -2)
        if self.offsets is not None:
            _shift(x, self.offsets[images])
        return x


def draw_plan(n, mode, rng):
    """The choices for n images: none: nothing; flip: each image mirrored left-right with
    probability 1/2; flip-vh: also upside down, independently; rotate: flip-vh, then transposed
    with probability 1/2, which makes each of the square's 8 rotations and reflections equally
    likely; shift: flip, then moved by up to MAX_SHIFT pixels each way, the border pixels repeated
    into the gap (the photos' background is plain). Drawn in that order."""
    if mode not in AUGMENT_MODES:
        raise CnnfruitError(f"unknown augmentation {mode!r}; choose from {', '.join(AUGMENT_MODES)}")
    plan = AugmentPlan()
    if mode == "none":
        return plan
    plan.mirror = rng.random(n) < 0.5
    if mode in ("flip-vh", "rotate"):
        plan.upside_down = rng.random(n) < 0.5
    if mode == "rotate":
        plan.transpose = rng.random(n) < 0.5
    elif mode == "shift":
        plan.offsets = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(n, 2))
    return plan


def augment(x, mode, rng):
    """Draw a plan for all of x and apply it, in place: the whole epoch at once."""
    return draw_plan(len(x), mode, rng).apply(x)


def _shift(x, offsets):
    """Move image n by offsets[n] = (down, right) pixels, repeating the edge into the gap."""
    H, W = x.shape[-2:]
    m = MAX_SHIFT
    padded = np.pad(x, ((0, 0), (0, 0), (m, m), (m, m)), mode="edge")
    for n, (down, right) in enumerate(offsets):
        x[n] = padded[n, :, m - down:m - down + H, m - right:m - right + W]
