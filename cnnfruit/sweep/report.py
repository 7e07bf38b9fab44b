"""A sweep's results: one record per run, one row per setting, sweep.json and sweep.csv.

A row sums up a setting over its seeds: the median and spread (largest minus smallest) of the
validation and test accuracy of its finished runs, the median best validation loss and seconds,
and the folders of its runs. Rows are sorted by the selection metric: the median validation
accuracy (ties: the lower median best validation loss), since a sweep may not look at the test;
settings that lost a seed to the pruner or a failure come after those that finished every seed.

`validation_vs_test` answers whether the validation score can choose at all, for each validation
split: Spearman's rank correlation between validation and test accuracy over the finished runs, and
between the table's order and the settings' median test accuracy.
Needs numpy only (no Optuna), so `cnnfruit plot sweep.json` works without the sweep extra.
"""
import csv
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np

from cnnfruit.errors import CnnfruitError
from cnnfruit.files import write_text_atomically

KIND = "cnnfruit-sweep"
VERSION = 1
JSON_FILE = "sweep.json"
CSV_FILE = "sweep.csv"
SELECTION = ("settings that finished every seed first, then median validation accuracy (ties: lower median best "
             "validation loss)")


def run_record(number, params, attrs, config):
    """One run as the report lists it, from its trial's values and user attributes."""
    return {
        "trial": number,
        "params": params,
        "seed": attrs.get("seed"),
        "val_split": config.val_split,
        "outcome": attrs.get("outcome", "running"),
        "epochs": attrs.get("epochs"),
        "val_accuracy": attrs.get("val_accuracy"),
        "val_loss": attrs.get("val_loss"),
        "best_val_loss": attrs.get("best_val_loss"),
        "test_accuracy": attrs.get("test_accuracy"),
        "seconds": attrs.get("seconds"),
        "folder": attrs.get("folder"),
        "error": attrs.get("error"),
    }


@dataclass
class SweepReport:
    swept: list  # the searched settings' names
    fixed: dict
    seeds: list
    rows: list  # one dict per setting, best first
    runs: list  # one dict per run (the latest of each setting and seed), by trial number
    validation_vs_test: dict = field(default_factory=dict)  # val_split -> {"spearman", "runs"}
    seconds: float = None  # wall time of the last `run` call
    interrupted: bool = False

    @classmethod
    def build(cls, space, seeds, records, seconds=None, interrupted=False):
        latest = {}
        for record in sorted(records, key=lambda r: r["trial"]):
            key = (_key(record["params"], space.names), record["seed"])
            previous = latest.get(key)
            if previous is None or record["error"] != "cancelled" or previous["error"] == "cancelled":
                latest[key] = record
        runs = sorted(latest.values(), key=lambda r: r["trial"])
        rows = _rows(runs, space.names)
        return cls(space.names, dict(space.fixed), list(seeds), rows, runs, _validation_vs_test(runs, rows),
                   seconds, interrupted)

    def to_dict(self):
        return {"kind": KIND, "version": VERSION, "selection": SELECTION, "swept": self.swept, "fixed": self.fixed,
                "seeds": self.seeds, "seconds": self.seconds, "interrupted": self.interrupted,
                "validation_vs_test": self.validation_vs_test, "rows": self.rows, "runs": self.runs}

    def save(self, folder):
        """sweep.json and sweep.csv in folder, each written atomically."""
        write_text_atomically(os.path.join(folder, JSON_FILE), json.dumps(self.to_dict(), indent=2) + "\n")
        write_text_atomically(os.path.join(folder, CSV_FILE), self.to_csv())

    def to_csv(self):
        columns = [*self.swept, *ROW_COLUMNS]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in self.rows:
            writer.writerow([_csv_value(row["params"][name]) for name in self.swept] +
                            [_csv_value(row[name]) for name in ROW_COLUMNS])
        return out.getvalue()

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as err:
            raise CnnfruitError(f"cannot read {path}: {err}") from None
        if not is_sweep_record(record):
            raise CnnfruitError(f"{path} is not a cnnfruit sweep.json")
        return cls(record["swept"], record["fixed"], record["seeds"], record["rows"], record["runs"],
                   record.get("validation_vs_test", {}), record.get("seconds"), record.get("interrupted", False))


ROW_COLUMNS = ["state", "finished", "pruned", "failed", "val_accuracy", "val_accuracy_spread", "test_accuracy",
               "test_accuracy_spread", "best_val_loss", "seconds", "folders"]


def is_sweep_record(record):
    return isinstance(record, dict) and record.get("kind") == KIND and isinstance(record.get("rows"), list)


def _key(params, names):
    return tuple(json.dumps(params.get(name)) for name in names)


def _rows(runs, names):
    groups = {}
    for run in runs:
        groups.setdefault(_key(run["params"], names), []).append(run)
    rows = []
    for group in groups.values():
        done = [r for r in group if r["outcome"] == "finished"]
        counts = {kind: sum(r["outcome"] == kind for r in group) for kind in ("finished", "pruned", "failed")}
        states = sorted({r["outcome"] if r["error"] != "cancelled" else "cancelled" for r in group})
        rows.append({
            "params": group[0]["params"],
            "val_split": group[0]["val_split"],
            "state": states[0] if len(states) == 1 else "mixed",
            **counts,
            "val_accuracy": _median(r["val_accuracy"] for r in done),
            "val_accuracy_spread": _spread(r["val_accuracy"] for r in done),
            "test_accuracy": _median(r["test_accuracy"] for r in done),
            "test_accuracy_spread": _spread(r["test_accuracy"] for r in done),
            "best_val_loss": _median(r["best_val_loss"] for r in done),
            "seconds": _median(r["seconds"] for r in group if r["seconds"] is not None),
            "folders": [r["folder"] for r in group],
            "errors": sorted({r["error"] for r in group if r["error"]}),
        })
    rows.sort(key=_selection_key)
    return rows


def _selection_key(row):
    """Best first: highest median validation accuracy, then lowest best validation loss.

    Settings that finished every seed come first: one that lost a seed to the pruner (or a
    failure) shows the median of its survivors, which flatters it. No result at all: last.
    """
    accuracy, loss = row["val_accuracy"], row["best_val_loss"]
    incomplete = row["pruned"] + row["failed"] > 0
    return (accuracy is None, incomplete, -(accuracy or 0), loss if loss is not None else float("inf"))


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _spread(values):
    values = [v for v in values if v is not None]
    return float(max(values) - min(values)) if values else None


def _csv_value(value):
    if isinstance(value, (list, tuple)):
        return ";".join(map(str, value)) if value and isinstance(value[0], str) else ",".join(map(str, value))
    return "" if value is None else value


def ranks(values):
    """Ranks from 1, ties sharing the mean of their ranks (as Spearman's coefficient needs)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(x, y):
    """Spearman's rank correlation of x and y; None when either has no spread (or fewer than 3 points)."""
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / scale) if scale > 0 else None


def _validation_vs_test(runs, rows):
    """Per validation split: how well validation ranks like the test, per run and per setting.

    spearman: validation vs test accuracy over the finished runs. spearman_by_setting: the table's
    order (the selection metric) vs the settings' median test accuracy, over settings with results.
    """
    by_split = {}
    for run in runs:
        if run["outcome"] == "finished" and run["val_accuracy"] is not None and run["test_accuracy"] is not None:
            by_split.setdefault(run["val_split"], []).append(run)
    summary = {}
    for split, group in sorted(by_split.items()):
        ranked = [row for row in rows if row["val_split"] == split and row["test_accuracy"] is not None]
        summary[split] = {
            "spearman": spearman([r["val_accuracy"] for r in group], [r["test_accuracy"] for r in group]),
            "runs": len(group),
            "spearman_by_setting": spearman([-place for place in _places(ranked)],
                                            [row["test_accuracy"] for row in ranked]),
            "settings": len(ranked),
            "val_accuracy_median": _median(r["val_accuracy"] for r in group),
            "test_accuracy_median": _median(r["test_accuracy"] for r in group),
        }
    return summary


def _places(rows):
    """Each row's place in the selection order, rows that tie on the selection metric sharing one."""
    keys = sorted({_selection_key(row) for row in rows})
    return [keys.index(_selection_key(row)) for row in rows]
