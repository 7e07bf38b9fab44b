"""The training loop: seeded split and shuffling, mini-batch steps, per-epoch history.

The loss of a mini-batch is by default the SUM of its per-image losses, so the report's learning
rate (1e-6 on raw 0..255 pixels) means the same at every batch size and batch size 1 is its plain
SGD. With loss_reduction "mean" it is the mean, as in PyTorch and Keras: the gradient is divided by
the batch size, so the same learning rate takes steps batch-size times smaller.
"""
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import checkpoint as ckpt_io
from .data import train_val_split
from .errors import CnnfruitError
from .architecture import Architecture, init_parameters
from .augment import AUGMENT_MODES, augment
from .model import Network
from .optim import make_optimizer
from .preprocess import to_inputs


LOSS_REDUCTIONS = ("sum", "mean")


@dataclass
class TrainConfig:
    lr: float = 1e-6
    epochs: int = 10
    batch_size: int = 1
    kernels: int = 8
    kernel_size: int = 4
    hidden: tuple = (841, 29)
    val_fraction: float = 0.3
    seed: int = 0
    color: str = "grey"
    normalize: str = "none"
    optimizer: str = "sgd"
    # ---- beyond the report: optimizer settings, loss reduction, early stopping, augmentation
    momentum: float = 0.9
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    loss_reduction: str = "sum"
    patience: int = 0  # 0: never stop early
    augment: str = "none"

    def check(self):
        if not self.lr > 0:
            raise CnnfruitError(f"--lr must be positive, got {self.lr}")
        if self.epochs < 1:
            raise CnnfruitError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise CnnfruitError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.val_fraction < 1:
            raise CnnfruitError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise CnnfruitError(f"--loss-reduction must be one of {', '.join(LOSS_REDUCTIONS)}, got {self.loss_reduction!r}")
        if self.augment not in AUGMENT_MODES:
            raise CnnfruitError(f"--augment must be one of {', '.join(AUGMENT_MODES)}, got {self.augment!r}")
        if self.patience < 0:
            raise CnnfruitError(f"--patience must be zero (off) or positive, got {self.patience}")
        if self.patience and self.val_fraction == 0:
            raise CnnfruitError("--patience watches the validation loss: give a --val-fraction above 0")

    def optimizer_settings(self):
        return {"lr": self.lr, "weight_decay": self.weight_decay, "momentum": self.momentum,
                "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def architecture(self, classes):
        return Architecture(
            in_channels=3 if self.color == "rgb" else 1,
            kernels=self.kernels,
            kernel_size=self.kernel_size,
            hidden=tuple(self.hidden),
            classes=classes,
        )


def generators(seed):
    """Independent generators for weight init, the train/validation split and epoch shuffling."""
    init, split, shuffle = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(init), np.random.default_rng(split), np.random.default_rng(shuffle)


@dataclass
class Prepared:
    """A dataset turned into tensors and split, ready for the loop."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def prepare(dataset, config, split_rng):
    train_index, val_index = train_val_split(len(dataset.train), config.val_fraction, split_rng)
    x_all = to_inputs(dataset.train.images, config.color, config.normalize)
    y_all = dataset.train.labels
    return Prepared(
        x_all[train_index], y_all[train_index],
        x_all[val_index], y_all[val_index],
        to_inputs(dataset.test.images, config.color, config.normalize), dataset.test.labels,
    )


class Trainer:
    """Runs epochs of SGD on one dataset and records the history."""

    def __init__(self, dataset, config, network, optimizer, shuffle_rng, data, history):
        self.dataset = dataset
        self.config = config
        self.network = network
        self.optimizer = optimizer
        self.shuffle_rng = shuffle_rng
        self.data = data
        self.history = history
        n = len(data.y_train)
        self._x_epoch = np.empty_like(data.x_train)
        self._y_epoch = np.empty_like(data.y_train)
        self.steps_per_epoch = -(-n // config.batch_size)
        self.improved = False  # did the last epoch reach a new lowest validation loss?

    @classmethod
    def start(cls, dataset, config):
        config.check()
        init_rng, split_rng, shuffle_rng = generators(config.seed)
        arch = config.architecture(len(dataset.class_names))
        network = Network(arch, init_parameters(arch, init_rng))
        optimizer = make_optimizer(config.optimizer, network.params, **config.optimizer_settings())
        history = {
            "dataset": dataset.name,
            "class_names": list(dataset.class_names),
            "seed": config.seed,
            "hyperparameters": asdict(config),
            "epochs": [],
        }
        return cls(dataset, config, network, optimizer, shuffle_rng, prepare(dataset, config, split_rng), history)

    @property
    def epoch(self):
        return len(self.history["epochs"])

    def run_epoch(self, on_step=None):
        """One pass over the shuffled training set; returns and records the epoch's figures."""
        started = time.perf_counter()
        data, batch = self.data, self.config.batch_size
        order = self.shuffle_rng.permutation(len(data.y_train))
        np.take(data.x_train, order, axis=0, out=self._x_epoch)
        np.take(data.y_train, order, axis=0, out=self._y_epoch)
        augment(self._x_epoch, self.config.augment, self.shuffle_rng)
        mean_loss = self.config.loss_reduction == "mean"
        loss_sum, correct = 0.0, 0
        net, params, grads = self.network, self.network.params, self.network.grads
        for step in range(self.steps_per_epoch):
            chunk = slice(step * batch, (step + 1) * batch)
            labels = self._y_epoch[chunk]
            net.forward(self._x_epoch[chunk])
            loss_sum += float(net.loss(labels).sum())
            correct += int((net.probs.argmax(axis=1) == labels).sum())
            if mean_loss:
                net.dpres[-1] *= net.dtype.type(1 / len(labels))  # the logit gradient of the mean loss
            net.backward()
            self.optimizer.step(params, grads)
            if on_step is not None:
                on_step(step + 1, self.steps_per_epoch)
        n = len(data.y_train)
        record = {"epoch": self.epoch + 1, "train_loss": loss_sum / n, "train_accuracy": correct / n}
        if len(data.y_val):
            record["val_loss"], record["val_accuracy"], _ = net.evaluate(data.x_val, data.y_val)
        else:
            record["val_loss"] = record["val_accuracy"] = None
        record["seconds"] = time.perf_counter() - started
        self.history["epochs"].append(record)
        self._track_best(record)
        return record

    # ---- early stopping and the best checkpoint

    def _track_best(self, record):
        best = self.history.get("best_val_loss")
        loss = record["val_loss"]
        self.improved = bool(loss is not None and np.isfinite(loss) and (best is None or loss < best))
        if self.improved:
            self.history["best_epoch"], self.history["best_val_loss"] = record["epoch"], loss

    def should_stop(self):
        """True once validation loss has not improved for `patience` epochs (never if patience is 0)."""
        patience = self.config.patience
        if not patience or self.epoch == 0:
            return False
        return self.epoch - self.history.get("best_epoch", 0) >= patience

    def finish(self, total_seconds):
        """Test accuracy on the held-out test split, recorded in the history."""
        loss, accuracy, _ = self.network.evaluate(self.data.x_test, self.data.y_test)
        self.history["test_loss"] = loss
        self.history["test_accuracy"] = accuracy
        self.history["total_seconds"] = total_seconds
        return accuracy

    def checkpoint(self):
        return ckpt_io.Checkpoint(
            arch=self.network.arch,
            class_names=list(self.dataset.class_names),
            params=self.network.params,
            color=self.config.color,
            normalize=self.config.normalize,
            epoch=self.epoch,
            optimizer=self.config.optimizer,
            optimizer_state=self.optimizer.state,
            rng_state=self.shuffle_rng.bit_generator.state,
            config=asdict(self.config),
            history=self.history,
        )
