"""Run folders: where a training run keeps model.npz, history.json and best.npz.

Every file is rewritten atomically at each save, so a crash or a kill leaves the previous
complete version, never a half-written one.
"""
import os
import time

from . import checkpoint
from .errors import CnnfruitError
from .files import write_text_atomically
from .logs import history_csv

MODEL_FILE = "model.npz"  # the last state: weights, optimizer, generator, history
HISTORY_FILE = "history.json"
HISTORY_CSV_FILE = "history.csv"  # the same epochs as a table (logs.history_csv)
BEST_FILE = "best.npz"  # the epoch with the lowest validation loss


def new_run_folder(parent="runs"):
    """A folder name under parent, from the date and time, that does not exist yet."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = os.path.join(parent, stamp)
    suffix = 1
    while os.path.exists(folder):
        suffix += 1
        folder = os.path.join(parent, f"{stamp}-{suffix}")
    return folder


class RunFolder:
    """A run's folder and the files in it; `saved_at` says which point of training they hold."""

    def __init__(self, folder):
        self.folder = folder
        self.model_path = os.path.join(folder, MODEL_FILE)
        self.history_path = os.path.join(folder, HISTORY_FILE)
        self.history_csv_path = os.path.join(folder, HISTORY_CSV_FILE)
        self.best_path = os.path.join(folder, BEST_FILE)
        self.saved_at = None

    @classmethod
    def create(cls, folder=None):
        """Make the folder (a new one under ./runs/ if None) and check that it can be written."""
        folder = folder or new_run_folder()
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise CnnfruitError(f"cannot create output folder {folder}: {err.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise CnnfruitError(f"output folder {folder} is not writable")
        return cls(folder)

    def save(self, trainer):
        """model.npz, history.json and history.csv, as the trainer stands now."""
        try:
            checkpoint.save(self.model_path, trainer.checkpoint())
            trainer.history.save(self.history_path)
            write_text_atomically(self.history_csv_path, history_csv(trainer.history))
        except OSError as err:
            raise CnnfruitError(f"cannot write to {self.folder}: {err.strerror or err}") from None
        self.saved_at = describe_point(trainer)

    def save_best(self, trainer):
        try:
            checkpoint.save(self.best_path, trainer.checkpoint())
        except OSError as err:
            raise CnnfruitError(f"cannot write to {self.folder}: {err.strerror or err}") from None


def describe_point(trainer):
    """Where training stands, in words: the initial weights, the end of an epoch, or mid-epoch."""
    if trainer.partial is not None:
        return f"epoch {trainer.epoch + 1} up to step {trainer.partial['step']} of {trainer.steps_per_epoch}"
    if trainer.epoch == 0:
        return "the initial weights"
    return f"the end of epoch {trainer.epoch}"
