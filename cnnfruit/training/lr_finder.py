"""The learning-rate finder (after fastai's lr_find and L. Smith's LR range test).

From the run's own initial weights and data order, train for a bounded number of steps while the
learning rate grows exponentially from `start` to `end`, and record each step's loss. The loss
first barely moves (lr too small), then falls (lr useful), then rises or explodes (lr too large).

    sweep = find_lr(load_embedded(), TrainConfig())     # the report's recipe
    print(sweep.suggestion.low, sweep.suggestion.high)
    for line in sweep.suggestion.reasons: print(line)

The training steps are the TrainingLoop's own (TrainingLoop.run_epoch with its on_step hook), so the sweep
sees what training would see: the same initialisation, split, shuffling, augmentation, batch size,
loss reduction and optimizer. Nothing is saved.

The suggestion is a rule of thumb read off a noisy curve. It moves with the range swept and the
seed (docs/insight.md measures how much), so look at the curve (plots.lr_sweep_figure).
"""
import math
from dataclasses import dataclass, field, replace

import numpy as np

from cnnfruit.config import LR_FIND_END, LR_FIND_PROBE, LR_FIND_START, LR_FIND_STEPS, TrainConfig
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.threads import one_blas_thread

# The sweep stops once the loss is this many times its lowest value (fastai's rule), both taken as
# medians of the last few steps, so that one spike does not end it, and the lowest counted as at
# least a uniform guess's loss, ln(classes), so that a loss of exactly 0 (a saturated softmax on
# raw pixels) does not make every later step "infinitely worse".
DIVERGED_FACTOR = 4.0


@dataclass
class Suggestion:
    low: float  # the suggested range of learning rates
    high: float
    minimum: float  # the learning rate where the smoothed loss is lowest
    steepest: float  # where the smoothed loss falls fastest per decade of learning rate
    reasons: list = field(default_factory=list)  # the reasoning, in sentences


@dataclass
class LrSweep:
    lrs: np.ndarray  # the learning rate of each step taken
    losses: np.ndarray  # mean per-image loss on the probe images after each step
    smoothed: np.ndarray  # losses smoothed without lag (see smooth)
    start: float
    end: float
    planned_steps: int
    stopped: str  # why the sweep ended, in words
    config: TrainConfig
    train_losses: np.ndarray = None  # each step's own batch loss (noisy at small batches)
    probe: int = 0  # validation images behind `losses` (0: they are the training losses)
    suggestion: Suggestion = None

    def to_dict(self):
        s = self.suggestion
        return {
            "start": self.start, "end": self.end, "planned_steps": self.planned_steps, "steps": len(self.lrs),
            "stopped": self.stopped, "seed": self.config.seed, "probe_images": self.probe,
            "suggestion": {"low": s.low, "high": s.high, "minimum": s.minimum, "steepest": s.steepest,
                           "reasons": s.reasons},
            "lrs": self.lrs.tolist(), "losses": self.losses.tolist(), "smoothed": self.smoothed.tolist(),
            "train_losses": self.train_losses.tolist(),
        }


def lr_schedule(start, end, steps):
    """steps learning rates from start to end, evenly spaced on a log scale."""
    return start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))


def find_lr(dataset, config, start=LR_FIND_START, end=LR_FIND_END, steps=LR_FIND_STEPS, probe=LR_FIND_PROBE):
    """Sweep the learning rate of `config` (its lr is ignored) from start to end over `steps` steps.

    After each step the loss is measured on the same `probe` validation images (the first ones of
    the run's own validation split): one image's loss (batch 1) swings between 0 and hundreds, and
    would hide the curve. Without validation images the steps' own training losses are used.
    Stops early when the loss stops being finite or exceeds DIVERGED_FACTOR times its lowest.
    Returns an LrSweep with the suggestion filled in.
    """
    from cnnfruit.training.loop import Diverged, TrainingLoop  # here, so the CLI can read this module's defaults without Numba

    if isinstance(config, dict):
        config = TrainConfig(**config)
    if not (0 < start < end and math.isfinite(end)):
        raise SettingError("the learning-rate range needs 0 < {start} < {end}, got {low:g} and {high:g}",
                           low=start, high=end)
    if steps < 5:
        raise SettingError("{steps} must be at least 5, got {value}", value=steps)
    schedule = lr_schedule(start, end, steps)
    # The sweep sets every step's rate itself; a --lr-schedule would overwrite it at each step.
    loop = TrainingLoop.start(dataset, replace(config, lr_schedule="constant").check())
    network, optimizer, data = loop.network, loop.optimizer, loop.splits
    x_probe, y_probe = data.inputs(data.images_val[:probe]), data.y_val[:probe]
    optimizer.lr = float(schedule[0])
    train_losses, probe_losses = [], []
    window = max(5, steps // 20)
    guess = math.log(len(dataset.class_names))  # the loss of a uniform guess
    state = {"best": math.inf, "stopped": "the end of the range"}

    def on_step(done, total):
        train_losses.append(float(network.losses.mean()))  # this step's batch, before its update
        loss = network.evaluate(x_probe, y_probe)[0] if len(y_probe) else train_losses[-1]
        probe_losses.append(loss)
        recent = float(np.median(probe_losses[-window:]))
        if len(probe_losses) >= window:
            state["best"] = min(state["best"], recent)
        if len(probe_losses) == steps:
            loop.stop.set()
        elif not math.isfinite(loss):
            state["stopped"] = "the loss stopped being a finite number"
            loop.stop.set()
        elif recent > DIVERGED_FACTOR * max(state["best"], guess) and len(probe_losses) >= 2 * window:
            state["stopped"] = f"the loss diverged (past {DIVERGED_FACTOR:g}x its lowest)"
            loop.stop.set()
        else:
            optimizer.lr = float(schedule[len(probe_losses)])

    with one_blas_thread():
        try:
            while not loop.stop.is_set():
                loop.run_epoch(on_step)
        except Diverged:
            state["stopped"] = "the loss stopped being a finite number"
    finite = int(np.isfinite(probe_losses).sum()) if probe_losses else 0
    if finite < 5:
        raise CnnfruitError(f"the sweep ended after {len(probe_losses)} steps ({state['stopped']}): start lower "
                            f"than {start:g}")
    losses = np.array(probe_losses[:finite])
    sweep = LrSweep(schedule[:finite], losses, smooth(losses), start, end, steps, state["stopped"], config,
                    np.array(train_losses[:finite]), len(y_probe))
    sweep.suggestion = suggest(sweep)
    return sweep


def smooth(losses, window=None):
    """A centred moving average (window about a tenth of the steps, odd, shrunk at the ends).

    Centred, unlike the running average that decides when to stop: a running average lags, which
    would move every feature of the curve to larger learning rates.
    """
    n = len(losses)
    if window is None:
        window = max(3, n // 10) | 1
    half = window // 2
    sums = np.concatenate([[0.0], np.cumsum(losses)])
    index = np.arange(n)
    lo, hi = np.maximum(index - half, 0), np.minimum(index + half + 1, n)
    return (sums[hi] - sums[lo]) / (hi - lo)


def suggest(sweep):
    """A range read off the smoothed curve, with the reasons.

    minimum: the lowest smoothed loss. Beyond it the steps are too large to keep improving; at
    the minimum itself they are already on the edge, so the range ends a decade below it.
    steepest: where the loss falls fastest per decade of learning rate, looked for below the
    minimum; the range starts there, or a decade below its top where the steepest fall is closer
    to the minimum than that.
    """
    lrs, smoothed = sweep.lrs, sweep.smoothed
    lowest = int(np.argmin(smoothed))
    slope = np.gradient(smoothed, np.log10(lrs))
    steepest = int(np.argmin(slope[:lowest + 1])) if lowest > 0 else 0
    high = lrs[lowest] / 10
    low = min(lrs[steepest], high / 10)
    first, last = smoothed[0], smoothed[lowest]
    reasons = [
        f"The sweep took {len(lrs)} of {sweep.planned_steps} steps from {sweep.start:.0e} and ended at "
        f"{lrs[-1]:.1e}: {sweep.stopped}.",
        f"The smoothed loss starts at {first:.4g} and is lowest, {last:.4g}, at lr {lrs[lowest]:.1e}.",
    ]
    if lowest == 0:
        reasons.append(f"Every larger learning rate made it worse: the loss is lowest after the first step, so the "
                       f"suggestion lies below the range swept; start lower than {sweep.start:.0e}.")
    elif lowest == len(lrs) - 1:
        reasons.append("It was still falling at the end of the range: sweep to larger learning rates; the "
                       "suggestion below is only a lower bound.")
    elif last > 0.9 * first:
        reasons.append("It never fell by even 10%: no learning rate in this range trains well in so few steps, "
                       "so the suggestion is weak (widen the range, or sweep more steps).")
    if slope[steepest] < 0:
        reasons.append(f"It falls fastest at lr {lrs[steepest]:.1e} ({slope[steepest]:.3g} per decade).")
    top = f"up to a tenth of the lowest point's lr, {high:.0e}, since at the lowest point the steps already start to " \
          "undo the progress"
    if low == lrs[steepest] and slope[steepest] < 0:
        reasons.append(f"Suggested: {low:.0e} to {high:.0e}: from the steepest fall {top}.")
    else:
        reasons.append(f"Suggested: {low:.0e} to {high:.0e}: the decade {top}"
                       + (f"; the steepest fall, at {lrs[steepest]:.0e}, is too close to the lowest point to start from."
                          if slope[steepest] < 0 else "."))
    return Suggestion(float(low), float(high), float(lrs[lowest]), float(lrs[steepest]), reasons)
