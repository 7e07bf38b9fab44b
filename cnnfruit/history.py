"""A run's history: one record per epoch, the best epoch, the test score; history.json on disk.

`History.load` checks a file before anything uses it, so a hand-edited or damaged history.json
gives one clear error instead of a failure deep inside a plot.
"""
import json
import numbers
from dataclasses import asdict, dataclass, field, fields

from .errors import CnnfruitError
from .files import write_text_atomically

MAX_EPOCHS = 1_000_000  # far beyond any real run; keeps a crafted file from overflowing a plot axis


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float = None  # None when the run holds out no validation images
    val_accuracy: float = None
    seconds: float = 0.0

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
        records = []
        for number, epoch in enumerate(epochs, 1):
            for key in (*needed, "val_loss", "val_accuracy", "seconds"):
                value = epoch.get(key)
                if not _is_number(value) and not (value is None and key not in needed):
                    raise bad(f"epoch {number} has a {key} that is not a number")
            if not isinstance(epoch["epoch"], int) or not 1 <= epoch["epoch"] <= MAX_EPOCHS:
                raise bad(f"epoch {number} has an epoch number that is not a whole number from 1 to {MAX_EPOCHS}")
            known = {f.name for f in fields(EpochRecord)}
            records.append(EpochRecord(**{k: v for k, v in epoch.items() if k in known and v is not None}))
        history = cls(epochs=records)
        for name, kind in (("dataset", str), ("seed", int), ("hyperparameters", dict), ("class_names", list),
                           ("best_epoch", int), ("best_val_loss", float), ("test_loss", float),
                           ("test_accuracy", float), ("total_seconds", float)):
            if record.get(name) is None:
                continue
            value = record[name]
            if not (_is_number(value) if kind is float else isinstance(value, kind) and not isinstance(value, bool)):
                raise bad(f"its {name} is not {'a number' if kind is float else kind.__name__}")
            setattr(history, name, value)
        if not all(isinstance(name, str) for name in history.class_names):
            raise bad("its class_names are not all text")
        return history

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
        except json.JSONDecodeError as err:
            raise CnnfruitError(f"{path} is not valid JSON: {err}") from None
        except RecursionError:
            raise CnnfruitError(f"{path} is not a cnnfruit history: it is nested too deeply") from None
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise CnnfruitError(f"cannot read {path}: {err}") from None
        return cls.from_dict(record, source=path)


def _is_number(value):
    """int or float that a float can hold, not bool; NaN and inf count (a diverging validation loss)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        float(value)
    except OverflowError:  # an integer of hundreds of digits
        return False
    return True
