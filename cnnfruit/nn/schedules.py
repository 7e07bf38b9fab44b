"""Learning-rate schedules: the rate of every training step, and the state a checkpoint keeps.

A schedule gives the learning rate of step `t` of the run, counted from 0 over all epochs
(t = epoch * steps_per_epoch + step within the epoch), so that a run stopped anywhere and resumed
gets the same rates as a run that never stopped. Of the schedules in config.LR_SCHEDULES:

- constant: `lr` at every step.
- step: `lr * lr_factor ** (epoch // lr_step_epochs)`; it moves between epochs, as its
  parameter is counted in epochs.
- cosine: `lr * (1 + cos(pi * t / T)) / 2` over the run's T steps, moved at every step: a
  smooth curve matters in short runs (8 epochs of 33 steps), where 8 flat stretches would leave
  the last epoch at 4% of `lr` instead of letting it fall to 0.
- onecycle (Smith and Topin's 1cycle, with PyTorch OneCycleLR's default ends): rises by a
  half cosine from `lr / 25` to `lr` over the first `lr_warmup` of the T steps, then falls by a
  half cosine to `lr / 250000`; per step, since the warm-up is a share of steps and usually ends
  inside an epoch; the last step runs at the end rate. (Unlike OneCycleLR it does not cycle
  Adam's beta1 or momentum.)
- plateau: `lr` times a scale that is multiplied by `lr_factor` at the end of each epoch in
  which the validation loss has not reached a new lowest value for more than `lr_patience`
  epochs in a row (as PyTorch's ReduceLROnPlateau counts, without its threshold and cooldown).
  It can only move between epochs, when a validation loss is measured. Its scale, lowest loss
  and count are the state that `state` gives and a checkpoint stores.

T is config.epochs times steps_per_epoch: the run's total as it stands. A resumed run with the same
total follows the unbroken run's curve exactly; resuming with a larger --epochs plans the curve of
cosine and onecycle anew for the new total from the next step on (for step, constant and plateau
nothing changes). This module imports nothing heavy.
"""
import math

ONECYCLE_START = 1 / 25  # onecycle's first rate, as a share of lr (OneCycleLR's div_factor 25)
ONECYCLE_END = ONECYCLE_START / 1e4  # its last (OneCycleLR's final_div_factor 1e4)


class Schedule:
    """The base of every schedule, itself the constant one."""

    name = "constant"
    varies = True  # False only for a rate that never moves, which training then never sets

    def __init__(self, config, steps_per_epoch):
        self.config = config
        self.steps_per_epoch = steps_per_epoch

    @property
    def total_steps(self):
        return self.config.epochs * self.steps_per_epoch

    def lr(self, t):
        """The learning rate of step t (0-based, over the whole run)."""
        return self.config.lr

    def end_epoch(self, val_loss):
        """Called once after each finished epoch with its validation loss (None without one)."""

    @property
    def state(self):
        """What a checkpoint must keep to resume this schedule: a JSON-ready dict."""
        return {"name": self.name}

    def load_state(self, state):
        """Take back a state from `state` (after a check that it is this schedule's)."""
        if not isinstance(state, dict) or state.get("name") != self.name:
            raise ValueError(f"the saved learning-rate schedule {state!r} is not the run's {self.name}")


class Constant(Schedule):
    varies = False


class Step(Schedule):
    name = "step"

    def lr(self, t):
        epoch = t // self.steps_per_epoch
        return self.config.lr * self.config.lr_factor ** (epoch // self.config.lr_step_epochs)


class Cosine(Schedule):
    name = "cosine"

    def lr(self, t):
        return self.config.lr * (1 + math.cos(math.pi * t / self.total_steps)) / 2


def _half_cosine(start, end, progress):
    """From start (progress 0) to end (progress 1) along half a cosine: flat at both ends."""
    return end + (start - end) * (1 + math.cos(math.pi * progress)) / 2


class OneCycle(Schedule):
    name = "onecycle"

    def lr(self, t):
        peak, total = self.config.lr, self.total_steps
        warmup = self.config.lr_warmup * total
        if t < warmup:
            return _half_cosine(peak * ONECYCLE_START, peak, t / warmup)
        return _half_cosine(peak, peak * ONECYCLE_END, min((t - warmup) / max(total - 1 - warmup, 1), 1))


class Plateau(Schedule):
    name = "plateau"

    def __init__(self, config, steps_per_epoch):
        super().__init__(config, steps_per_epoch)
        self.scale = 1.0  # the product of the reductions so far
        self.best = None  # the lowest validation loss so far
        self.bad_epochs = 0  # epochs since best was set or the rate last fell

    def lr(self, t):
        return self.config.lr * self.scale

    def end_epoch(self, val_loss):
        if val_loss is not None and math.isfinite(val_loss) and (self.best is None or val_loss < self.best):
            self.best, self.bad_epochs = val_loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.config.lr_patience:
            self.scale *= self.config.lr_factor
            self.bad_epochs = 0

    @property
    def state(self):
        return {"name": self.name, "scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state(self, state):
        super().load_state(state)
        scale, best, bad = state.get("scale"), state.get("best"), state.get("bad_epochs")
        if not (_is_real(scale) and 0 < scale <= 1 and (best is None or _is_real(best) and math.isfinite(best))
                and isinstance(bad, int) and not isinstance(bad, bool) and 0 <= bad < 2**31):
            raise ValueError(f"the saved plateau schedule needs a scale in (0, 1], a best loss and a count, got {state!r}")
        self.scale, self.best, self.bad_epochs = float(scale), best, bad


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


SCHEDULES = {cls.name: cls for cls in (Constant, Step, Cosine, OneCycle, Plateau)}  # keys: config.LR_SCHEDULES


def make_schedule(config, steps_per_epoch):
    """The schedule config.lr_schedule names, for a run of steps_per_epoch steps an epoch."""
    return SCHEDULES[config.lr_schedule](config, steps_per_epoch)
