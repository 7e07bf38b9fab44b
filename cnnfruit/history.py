"""A run's history: one record per epoch, the best epoch, the test score; history.json on disk.

`History.load` checks a file before anything uses it, so a hand-edited or damaged history.json
gives one clear error instead of a failure deep inside a plot.
"""
import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields

from cnnfruit import jsontext
from cnnfruit.errors import CnnfruitError
from cnnfruit.files import write_text_atomically

# Bounds far beyond any real run that keep a crafted file from breaking a plot (matplotlib fails
# on an axis from -1e308 to 1e308) or from printing nonsense.
MAX_EPOCHS = 1_000_000
MAX_LOSS = 1e39  # above float32's range, where the per-image losses are computed
MAX_SECONDS = 1e12
MAX_TEXT = 255  # a dataset name is a folder name
MAX_LR = 1e39  # above float32's range, to which the kernels cast the learning rate
# field -> (low, high, whether NaN and +inf are allowed): a diverging run's validation and test
# losses may be NaN or infinite, nothing else may.
BOUNDS = {
    "train_loss": (0, MAX_LOSS, False), "val_loss": (0, MAX_LOSS, True), "best_val_loss": (0, MAX_LOSS, False),
    "test_loss": (0, MAX_LOSS, True), "train_accuracy": (0, 1, False), "val_accuracy": (0, 1, False),
    "test_accuracy": (0, 1, False), "seconds": (0, MAX_SECONDS, False), "total_seconds": (0, MAX_SECONDS, False),
    "lr": (0, MAX_LR, False),
}


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float = None  # None when the run holds out no validation images
    val_accuracy: float = None
    seconds: float = 0.0
    lr: float = None  # the learning rate of the epoch's first step (None in a history that does not record it)

    def __str__(self):
        """The report's log line: `Epoch: N | Training Loss: ... | Validation Loss: ... | ...`."""
        def loss(value):
            return "n/a" if value is None else f"{value:.4f}"

        def percent(value):
            return "n/a" if value is None else f"{100 * value:.1f}%"

        return (
            f"Epoch: {self.epoch} | Training Loss: {loss(self.train_loss)} | Validation Loss: {loss(self.val_loss)} | "
            f"Training Accuracy: {percent(self.train_accuracy)} | Validation Accuracy: {percent(self.val_accuracy)} | "
            f"{self.seconds:.1f} s"
        )


@dataclass
class History:
    dataset: str = ""
    class_names: list = field(default_factory=list)
    seed: int = 0
    hyperparameters: dict = field(default_factory=dict)  # TrainConfig.to_dict()
    epochs: list = field(default_factory=list)  # EpochRecord per finished epoch
    best_epoch: int = None  # the epoch with the lowest finite validation loss, once there is one
    best_val_loss: float = None
    test_loss: float = None  # set when the run finishes
    test_accuracy: float = None
    total_seconds: float = None

    def to_dict(self):
        """JSON-ready, leaving out what is not known yet (no best epoch, no test score)."""
        record = {"dataset": self.dataset, "class_names": list(self.class_names), "seed": self.seed,
                  "hyperparameters": dict(self.hyperparameters), "epochs": [asdict(e) for e in self.epochs]}
        for name in ("best_epoch", "best_val_loss", "test_loss", "test_accuracy", "total_seconds"):
            if getattr(self, name) is not None:
                record[name] = getattr(self, name)
        return record

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path):
        write_text_atomically(path, self.to_json())

    @classmethod
    def from_dict(cls, record, source="the history"):
        """A History from its JSON form, checked field by field; errors say what is wrong where."""
        def bad(problem):
            return CnnfruitError(f"{source} is not a cnnfruit history: {problem}")

        needed = ("epoch", "train_loss", "train_accuracy")
        epochs = record.get("epochs") if isinstance(record, dict) else None
        if not isinstance(epochs, list) or not all(isinstance(e, dict) and all(k in e for k in needed) for e in epochs):
            raise bad(f"it needs a list of epochs with {', '.join(needed)}")
        records, known = [], {f.name for f in fields(EpochRecord)}
        for number, epoch in enumerate(epochs, 1):
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "lr"):
                value = epoch.get(key)
                if not (value is None and key not in needed) and not _within(value, *BOUNDS[key]):
                    low, high, _ = BOUNDS[key]
                    raise bad(f"epoch {number} has a {key} that is not a number from {low} to {high:g}")
            if not _whole(epoch["epoch"], 1, MAX_EPOCHS):
                raise bad(f"epoch {number} has an epoch number that is not a whole number from 1 to {MAX_EPOCHS}")
            if records and epoch["epoch"] <= records[-1].epoch:
                raise bad(f"its epoch numbers do not rise: {epoch['epoch']} after {records[-1].epoch}")
            records.append(EpochRecord(**{k: v for k, v in epoch.items() if k in known and v is not None}))
        history = cls(epochs=records)
        for name in ("dataset", "seed", "hyperparameters", "class_names", "best_epoch", "best_val_loss", "test_loss",
                     "test_accuracy", "total_seconds"):
            if record.get(name) is None:
                continue
            value = record[name]
            if name in BOUNDS and not _within(value, *BOUNDS[name]):
                low, high, _ = BOUNDS[name]
                raise bad(f"its {name} is not a number from {low} to {high:g}")
            if name == "dataset" and not (isinstance(value, str) and len(value) <= MAX_TEXT):
                raise bad(f"its dataset is not a name of at most {MAX_TEXT} characters")
            if name == "seed" and not _whole(value, 0, math.inf):
                raise bad("its seed is not a whole number of 0 or more")
            if name == "best_epoch" and (not _whole(value, 1, MAX_EPOCHS) or value not in [e.epoch for e in records]):
                raise bad("its best_epoch is not one of its epochs")
            if name == "hyperparameters" and not _settings(value):
                raise bad("its hyperparameters are not setting: value pairs")
            if name == "class_names" and not (isinstance(value, list) and all(isinstance(n, str) for n in value)):
                raise bad("its class_names are not all text")
            setattr(history, name, value)
        return history

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise CnnfruitError(f"cannot read {path}: {err}") from None
        if jsontext.depth(text) > jsontext.MAX_DEPTH:
            raise CnnfruitError(f"{path} is not a cnnfruit history: it is nested more than {jsontext.MAX_DEPTH} "
                                "levels deep")
        return cls.from_dict(jsontext.parse(text, path), source=path)


def _within(value, low, high, non_finite):
    """A number from low to high; with non_finite, NaN and +inf too."""
    if not _is_number(value):
        return False
    value = float(value)
    return low <= value <= high or (non_finite and (math.isnan(value) or value == math.inf))


def _whole(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _settings(value):
    """name: value pairs of single values or flat lists of them (hidden layer sizes), short text only."""
    def single(v):
        return v is None or isinstance(v, (bool, int, float)) or isinstance(v, str) and len(v) <= MAX_TEXT

    return isinstance(value, dict) and all(
        isinstance(k, str) and (single(v) or isinstance(v, list) and len(v) <= MAX_TEXT and all(map(single, v)))
        for k, v in value.items())


def _is_number(value):
    """int or float that a float can hold, not bool; NaN and inf count (a diverging validation loss)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        float(value)
    except OverflowError:  # an integer of hundreds of digits
        return False
    return True
