"""The training loop: seeded split and shuffling, mini-batch steps, per-epoch history.

The loss of a mini-batch is by default the SUM of its per-image losses, so the report's learning
rate (1e-6 on raw 0..255 pixels) means the same at every batch size and batch size 1 is its plain
SGD. With loss_reduction "mean" it is the mean, as in PyTorch and Keras: the gradient is divided by
the batch size, so the same learning rate takes steps batch-size times smaller.

Each step's learning rate comes from the run's schedule (schedules.py), each step's dropout masks
from a generator of its own (splits.dropout_generator), so a run resumed at any step repeats the
unbroken one. Class weights and label smoothing shape the training loss only (and so the training
loss in the history); validation and test losses stay the plain cross-entropy, one measure for
best.npz, early stopping and the plateau schedule whatever the options.

A TrainingLoop runs epochs in memory; run.py's Run wraps it into a whole run (files, best
checkpoint, early stopping, resume).
"""
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from cnnfruit import checkpoint as ckpt_io
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.data.augment import draw_plan
from cnnfruit.config import class_weight_values
from cnnfruit.data.datasets import fingerprint
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.history import EpochRecord, History
from cnnfruit.nn.network import Network
from cnnfruit.nn.optimizers import make_optimizer
from cnnfruit.data.preprocess import to_inputs
from cnnfruit.nn.schedules import make_schedule
from cnnfruit.data.splits import dropout_generator, generators, validation_cut
from cnnfruit.threads import compute_lock


class ImageRows:
    """Some rows of a uint8 image array, read where they lie: rows[idx] gathers only what a batch
    needs. The training and validation cut of 53,000 colour photos would otherwise be a 160 MB
    copy of images that the dataset already holds."""

    def __init__(self, source, index):
        self.source, self.index = source, np.asarray(index, dtype=np.int64)
        self.dtype, self.ndim = source.dtype, source.ndim

    def __len__(self):
        return len(self.index)

    def __getitem__(self, rows):
        return self.source[self.index[rows]]


@dataclass
class SplitImages:
    """A dataset cut into the training, validation and test images and labels the loop reads.

    Images stay uint8 (N, H, W, 3) until a batch is formed: as float32 network inputs, 70,000
    colour photos would take four times the memory.
    """

    images_train: np.ndarray  # or ImageRows of the dataset's training images
    y_train: np.ndarray
    images_val: np.ndarray  # or ImageRows
    y_val: np.ndarray
    images_test: np.ndarray
    y_test: np.ndarray
    color: str
    normalize: str

    def inputs(self, images):
        """float32 network inputs (N, C, H, W) of uint8 images, with the run's preprocessing.

        Preprocessing works image by image, so a batch converted alone gives the same numbers
        as the same images converted with the whole set.
        """
        return to_inputs(images, self.color, self.normalize)


def split_images(dataset, config, split_rng):
    if dataset.val is not None:
        train, val = dataset.train, dataset.val
        cut = (train.images, train.labels, val.images, val.labels)
    else:  # the cut split_training_images makes, as rows of dataset.train rather than copies
        train_index, val_index = validation_cut(dataset.train, config.val_fraction, config.val_split, split_rng)
        images, labels = dataset.train.images, dataset.train.labels
        cut = (ImageRows(images, train_index), labels[train_index], ImageRows(images, val_index), labels[val_index])
    return SplitImages(*cut, dataset.test.images, dataset.test.labels, config.color, config.normalize)


def class_weights_for(config, labels, class_names):
    """The loss weight of each class (M,) float64 that config.class_weights asks for; None for none.

    auto: N / (M * n_c) for the n_c of the N training images (after the validation cut) in class
    c, scikit-learn's "balanced": a rarer class weighs more, and the weights average exactly 1
    over the training images, so an epoch's summed loss, and what a learning rate means, stay on
    the scale of an unweighted run. Given weights are used as they are.
    """
    M = len(class_names)
    if config.class_weights == "none":
        return None
    if config.class_weights == "auto":
        counts = np.bincount(labels, minlength=M)
        if not counts.all():
            missing = ", ".join(name for name, count in zip(class_names, counts) if not count)
            raise SettingError("{class_weights} auto needs training images of every class; the training split has "
                               "none of {missing}", missing=missing)
        return len(labels) / (M * counts)
    weights = class_weight_values(config.class_weights)
    if len(weights) != M:
        raise SettingError("{class_weights} gives {count} weights for {M} classes ({names})",
                           count=len(weights), M=M, names=", ".join(class_names))
    return np.array(weights)


class Diverged(SettingError):
    """A non-finite loss or weight: training cannot recover, so it stops."""

    def __init__(self, epoch, step, what, lr, saved=""):
        self.epoch, self.step, self.what, self.lr = epoch, step, what, lr
        super().__init__(
            "training diverged at epoch {epoch}, step {step}: {what} is not finite; try a smaller learning rate "
            "than {lr} {value:g}, e.g. {lr} {smaller:g}{saved}",
            epoch=epoch, step=step, what=what, value=lr, smaller=lr / 10, saved=saved,
        )


class TrainingLoop:
    """Runs epochs of SGD on one dataset and records the history.

    Setting the `stop` event (from a signal handler, say) makes run_epoch stop after the current
    step and keep the epoch's progress in `partial`; `checkpoint()` then saves it, and a loop
    made by `resume` from that checkpoint finishes the epoch exactly as an unbroken run would.
    """

    def __init__(self, dataset, config, network, optimizer, shuffle_rng, splits, history, partial=None):
        self.dataset = dataset
        self.config = config
        self.network = network
        self.optimizer = optimizer
        self.shuffle_rng = shuffle_rng
        self.splits = splits
        self.history = history
        self.partial = partial  # progress of an epoch stopped part-way, see Checkpoint.partial
        self.stop = threading.Event()
        self._epoch_rng_state = shuffle_rng.bit_generator.state
        self._digest = None
        n = len(splits.y_train)
        self.steps_per_epoch = -(-n // config.batch_size)
        self.improved = False  # did the last epoch reach a new lowest validation loss?
        self.schedule = make_schedule(config, self.steps_per_epoch)
        self.class_weights = class_weights_for(config, splits.y_train, dataset.class_names)  # float64 or None
        self._loss_weights = None if self.class_weights is None else self.class_weights.astype(network.dtype)
        network.dropout = config.dropout

    @classmethod
    def start(cls, dataset, config):
        config.check()
        init_rng, split_rng, shuffle_rng = generators(config.seed)
        arch = Architecture.from_config(config, len(dataset.class_names))
        network = Network(arch, init_parameters(arch, init_rng, scheme=config.init))
        optimizer = make_optimizer(config.optimizer, network.params, **config.optimizer_settings())
        history = History(dataset=dataset.name, class_names=list(dataset.class_names), seed=config.seed,
                          hyperparameters=config.to_dict())
        return cls(dataset, config, network, optimizer, shuffle_rng, split_images(dataset, config, split_rng), history)

    @classmethod
    def resume(cls, dataset, config, ckpt):
        """A loop in the state `ckpt` saved; config must be the checkpoint's (epochs may grow)."""
        config.check()
        _, split_rng, shuffle_rng = generators(config.seed)
        arch = Architecture.from_config(config, len(dataset.class_names))
        if arch != ckpt.arch:
            raise CnnfruitError("the checkpoint's network does not match its own training settings")
        if ckpt.optimizer != config.optimizer:
            raise CnnfruitError(f"the checkpoint's optimizer {ckpt.optimizer} differs from its settings' {config.optimizer}")
        params = {name: value.copy() for name, value in ckpt.params.items()}
        network = Network(arch, params)
        optimizer = make_optimizer(config.optimizer, network.params, **config.optimizer_settings())
        optimizer.load_state(ckpt.optimizer_state)
        try:
            shuffle_rng.bit_generator.state = ckpt.rng_state
        except (TypeError, ValueError, KeyError) as err:
            raise CnnfruitError(f"the checkpoint's generator state is unusable: {err}") from None
        history = History.from_dict(ckpt.history, source="the checkpoint's history")
        if len(history.epochs) != ckpt.epoch:
            raise CnnfruitError(f"the checkpoint's history does not hold its {ckpt.epoch} completed epochs")
        history.hyperparameters = config.to_dict()
        loop = cls(dataset, config, network, optimizer, shuffle_rng, split_images(dataset, config, split_rng), history,
                   ckpt.partial)
        if ckpt.partial is not None and ckpt.partial["step"] >= loop.steps_per_epoch:
            # checkpoint.load checked the record itself; how many steps an epoch has depends on the data
            raise CnnfruitError("the checkpoint's interrupted epoch does not fit its data and batch size")
        if ckpt.schedule is not None:
            try:
                loop.schedule.load_state(ckpt.schedule)
            except ValueError as err:
                raise CnnfruitError(str(err)) from None
        elif config.lr_schedule != "constant":  # a checkpoint without a schedule's state ran at a constant rate
            raise CnnfruitError("the checkpoint lacks the state of its learning-rate schedule")
        return loop

    @property
    def epoch(self):
        return len(self.history.epochs)

    def run_epoch(self, on_step=None):
        """One pass over the shuffled training set; returns and records the epoch's EpochRecord.

        Returns None instead if the stop event was set before the last step; the epoch's
        progress is then in `partial`, and calling run_epoch again (with the event cleared),
        or resuming from a checkpoint, carries on from the next step with the same order.
        """
        started = time.perf_counter()
        splits, batch = self.splits, self.config.batch_size
        partial = self.partial or {"step": 0, "loss_sum": 0.0, "correct": 0, "seconds": 0.0}
        if self.partial is None:
            self._epoch_rng_state = self.shuffle_rng.bit_generator.state
        else:  # draw the stopped epoch's order again
            self.shuffle_rng.bit_generator.state = self._epoch_rng_state
        order = self.shuffle_rng.permutation(len(splits.y_train))
        plan = draw_plan(len(order), self.config.augment, self.shuffle_rng)
        mean_loss = self.config.loss_reduction == "mean"
        loss_sum, correct = partial["loss_sum"], partial["correct"]
        net, params = self.network, self.network.params
        config, schedule, first_step = self.config, self.schedule, self.epoch * self.steps_per_epoch
        for step in range(partial["step"], self.steps_per_epoch):
            with compute_lock():  # one step is one unit of work (threads.py); on_step runs outside it
                chunk = slice(step * batch, (step + 1) * batch)
                labels = splits.y_train[order[chunk]]
                x = plan.apply(splits.inputs(splits.images_train[order[chunk]]), chunk)
                if schedule.varies:
                    self.optimizer.lr = schedule.lr(first_step + step)
                dropout_rng = dropout_generator(config.seed, self.epoch, step) if config.dropout else None
                net.forward(x, dropout_rng)
                step_loss = float(net.loss(labels, self._loss_weights, config.label_smoothing).sum())
                if not math.isfinite(step_loss):
                    raise Diverged(self.epoch + 1, step + 1, "the loss", self.config.lr)
                loss_sum += step_loss
                correct += int((net.probs.argmax(axis=1) == labels).sum())
                if mean_loss:
                    net.dlogits[...] *= net.dtype.type(1 / len(labels))  # the logit gradient of the mean loss
                net.backward_step(self.optimizer)  # the update fused into the backward pass
            if on_step is not None:
                on_step(step + 1, self.steps_per_epoch)
            if self.stop.is_set() and step + 1 < self.steps_per_epoch:
                seconds = partial["seconds"] + time.perf_counter() - started
                self.partial = {"step": step + 1, "loss_sum": loss_sum, "correct": correct, "seconds": seconds}
                return None
        for name, value in params.items():
            if not np.isfinite(value).all():
                raise Diverged(self.epoch + 1, self.steps_per_epoch, f"the weight {name}", self.config.lr)
        n = len(splits.y_train)
        record = EpochRecord(epoch=self.epoch + 1, train_loss=loss_sum / n, train_accuracy=correct / n,
                             lr=schedule.lr(first_step))
        if len(splits.y_val):
            with compute_lock():  # the validation pass is one unit of work
                record.val_loss, record.val_accuracy, _ = net.evaluate(splits.images_val, splits.y_val,
                                                                       inputs=splits.inputs)
        record.seconds = partial["seconds"] + time.perf_counter() - started
        self.history.epochs.append(record)
        self.partial = None
        self._track_best(record)
        schedule.end_epoch(record.val_loss)
        return record

    # ---- early stopping and the best checkpoint

    def _track_best(self, record):
        best, loss = self.history.best_val_loss, record.val_loss
        self.improved = bool(loss is not None and np.isfinite(loss) and (best is None or loss < best))
        if self.improved:
            self.history.best_epoch, self.history.best_val_loss = record.epoch, loss

    def should_stop(self):
        """True once validation loss has not improved for `patience` epochs (never if patience is 0)."""
        patience = self.config.patience
        if not patience or self.epoch == 0:
            return False
        return self.epoch - (self.history.best_epoch or 0) >= patience

    def finish(self, total_seconds):
        """Test accuracy on the held-out test split, recorded in the history."""
        splits = self.splits
        with compute_lock():
            loss, accuracy, _ = self.network.evaluate(splits.images_test, splits.y_test, inputs=splits.inputs)
        self.history.test_loss, self.history.test_accuracy = loss, accuracy
        self.history.total_seconds = total_seconds
        return accuracy

    def checkpoint(self):
        """Everything needed to evaluate, or to resume bit for bit."""
        if self._digest is None:
            self._digest = fingerprint(self.dataset)
        # Mid-epoch, the epoch's order is redrawn on resume from the generator's state at its start.
        rng_state = self._epoch_rng_state if self.partial is not None else self.shuffle_rng.bit_generator.state
        return ckpt_io.Checkpoint(
            arch=self.network.arch,
            class_names=list(self.dataset.class_names),
            params=self.network.params,
            color=self.config.color,
            normalize=self.config.normalize,
            epoch=self.epoch,
            optimizer=self.config.optimizer,
            optimizer_state=self.optimizer.state,
            rng_state=rng_state,
            config=self.config.to_dict(),
            history=self.history.to_dict(),
            trained_on={"source": self.dataset.source, "digest": self._digest, **self.dataset.options},
            partial=self.partial,
            schedule=self.schedule.state,
        )
