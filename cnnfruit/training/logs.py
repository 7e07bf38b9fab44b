"""Training logs beside history.json: history.csv for spreadsheets, TensorBoard event files.

history.csv has one row per finished epoch and one column per EpochRecord field, so a field
added to EpochRecord appears in it without a change here. TensorBoard logs go through
tensorboardX, an optional extra (`pip install 'cnnfruit[tensorboard]'`), as a callback for fit's
`on_epoch`:

    with TensorBoardLog("tb/grey-s0") as log:
        result = fit(data, config, on_epoch=log)
        log.finish(result.history)
"""
import csv
import io
import os
from dataclasses import fields

from cnnfruit.errors import CnnfruitError
from cnnfruit.history import EpochRecord

# TensorBoard draws the runs (sub-folders) of one logdir in the same chart for each tag, so the
# training and validation curves are written as two runs with the same tags ("loss", "accuracy").
TENSORBOARD_RUNS = ("train", "validation", "test")


def history_csv(history):
    """The epochs of a History as CSV text: a header of EpochRecord's fields, then one row per epoch.

    A value that is not known (no validation set) is an empty cell; numbers keep every digit.
    """
    names = [f.name for f in fields(EpochRecord)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    for record in history.epochs:
        writer.writerow(["" if getattr(record, name) is None else getattr(record, name) for name in names])
    return text.getvalue()


class TensorBoardLog:
    """TensorBoard scalars per epoch: loss and accuracy in logdir/train and logdir/validation.

    Call it with each EpochRecord (it is an `on_epoch` callback); `finish(history)` adds the test
    loss and accuracy at the last epoch (logdir/test) and the run's settings as text. A resumed
    run writes to the same logdir: its epochs carry on where the curves stopped.
    """

    def __init__(self, logdir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise CnnfruitError("TensorBoard logs need the tensorboardX package: "
                                "pip install 'cnnfruit[tensorboard]' (or pip install tensorboardX)") from None
        self.logdir = logdir
        try:
            self.writers = {run: SummaryWriter(os.path.join(logdir, run)) for run in TENSORBOARD_RUNS}
        except OSError as err:
            raise CnnfruitError(f"cannot write TensorBoard logs to {logdir}: {err.strerror or err}") from None
        self.last_epoch = 0

    def __call__(self, record):
        train, validation = self.writers["train"], self.writers["validation"]
        train.add_scalar("loss", record.train_loss, record.epoch)
        train.add_scalar("accuracy", record.train_accuracy, record.epoch)
        train.add_scalar("seconds_per_epoch", record.seconds, record.epoch)  # TensorBoard's tags take no spaces
        if record.lr is not None:  # the rate of the epoch's first step (None in a history that does not record it)
            train.add_scalar("learning_rate", record.lr, record.epoch)
        if record.val_loss is not None:
            validation.add_scalar("loss", record.val_loss, record.epoch)
            validation.add_scalar("accuracy", record.val_accuracy, record.epoch)
        for writer in (train, validation):
            writer.flush()  # visible in TensorBoard while the run goes on
        self.last_epoch = record.epoch

    def finish(self, history):
        """The test figures (when the run finished) and the settings, at the run's last epoch."""
        step = len(history.epochs)
        test = self.writers["test"]
        if history.test_accuracy is not None:
            test.add_scalar("loss", history.test_loss, step)
            test.add_scalar("accuracy", history.test_accuracy, step)
        settings = "\n".join(f"    {name}: {value}" for name, value in history.hyperparameters.items())
        test.add_text("settings", f"{history.dataset}, seed {history.seed}\n\n{settings}", step)
        test.flush()

    def close(self):
        for writer in self.writers.values():
            writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NoLog:
    """The log of a run without TensorBoard: every call does nothing."""

    def __call__(self, record):
        pass

    def finish(self, history):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def open_log(logdir):
    """A TensorBoardLog into logdir, or a NoLog when logdir is None."""
    return NoLog() if logdir is None else TensorBoardLog(logdir)
