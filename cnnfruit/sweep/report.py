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
import math
import os
from dataclasses import dataclass, field

import numpy as np

from cnnfruit import jsontext
from cnnfruit.config import setting_fields
from cnnfruit.errors import CnnfruitError
from cnnfruit.files import check_regular, write_text_atomically

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
        """A sweep.json, checked in everything a figure or a table reads from it (see from_dict)."""
        check_regular(path, "sweep report")
        try:
            if os.path.getsize(path) > MAX_FILE_BYTES:
                raise CnnfruitError(f"{path} is larger than any sweep.json ({MAX_FILE_BYTES // 2**20} MiB at most)")
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as err:
            raise CnnfruitError(f"cannot read {path}: {err}") from None
        record = jsontext.parse(text, path)
        if not is_sweep_record(record):
            raise CnnfruitError(f"{path} is not a cnnfruit sweep.json")
        return cls.from_dict(record, source=path)

    @classmethod
    def from_dict(cls, record, source="the sweep report"):
        """A SweepReport from its JSON form, refused unless every field a figure reads is in range:
        a swept setting is a training setting (so a figure has a bounded number of panels), each
        run holds a value of each, accuracies are numbers from 0 to 1, and so on."""
        def bad(problem):
            return CnnfruitError(f"{source} is not a cnnfruit sweep.json: {problem}")

        version = record.get("version", VERSION)
        if not _whole(version) or not 1 <= version <= VERSION:
            raise bad(f"its version is not one this cnnfruit reads (1 to {VERSION})")
        swept = record.get("swept")
        settings = setting_fields()
        if not isinstance(swept, list) or not swept or len(set(map(str, swept))) != len(swept) or \
                not all(isinstance(name, str) and name in settings for name in swept):
            raise bad("its swept settings are not distinct names of training settings")
        seeds, fixed, rows, runs = (record.get(key) for key in ("seeds", "fixed", "rows", "runs"))
        if not isinstance(seeds, list) or len(seeds) > MAX_RUNS or not all(_whole(seed) and seed >= 0 for seed in seeds):
            raise bad("its seeds are not whole numbers from 0")
        if not isinstance(fixed, dict) or not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise bad("it needs a fixed object and a list of rows")
        if not isinstance(runs, list) or len(runs) > MAX_RUNS or len(rows) > MAX_RUNS:
            raise bad(f"it needs a list of at most {MAX_RUNS:,} runs")
        for number, run in enumerate(runs, 1):
            problem = _run_problem(run, swept)
            if problem:
                raise bad(f"run {number} {problem}")
        seconds = record.get("seconds")
        if seconds is not None and not (_number(seconds) and 0 <= seconds <= 1e12):
            raise bad("its seconds are not a number from 0 to 1e12")
        comparison = record.get("validation_vs_test", {})
        return cls(swept, fixed, seeds, rows, runs, comparison if isinstance(comparison, dict) else {}, seconds,
                   record.get("interrupted") is True)


OUTCOMES = ("finished", "pruned", "failed", "running")
MAX_RUNS = 100_000  # runs (and rows, and seeds) a sweep.json may list: far above any sweep's
MAX_TEXT = 255  # a text value or a validation split's name
MAX_FILE_BYTES = 256 * 2**20  # a sweep.json of MAX_RUNS runs is about 60 MiB

ROW_COLUMNS = ["state", "finished", "pruned", "failed", "val_accuracy", "val_accuracy_spread", "test_accuracy",
               "test_accuracy_spread", "best_val_loss", "seconds", "folders"]


def _run_problem(run, swept):
    """What is wrong with one run's record for the figure and the table, or None."""
    if not isinstance(run, dict) or not isinstance(run.get("params"), dict):
        return "is not an object with params"
    for name in swept:
        if name not in run["params"] or not _value(run["params"][name]):
            return f"has no value of {name} of a setting's kind (a number, short text or a list of sizes)"
    if run.get("outcome") not in OUTCOMES:
        return f"has an outcome that is not one of {', '.join(OUTCOMES)}"
    if not (isinstance(run.get("val_split"), str) and len(run["val_split"]) <= MAX_TEXT):
        return "has no validation split"
    if run.get("seed") is not None and not (_whole(run["seed"]) and run["seed"] >= 0):
        return "has a seed that is not a whole number from 0"
    for key in ("val_accuracy", "test_accuracy"):
        value = run.get(key)
        if (value is not None or run["outcome"] == "finished") and not (_number(value) and 0 <= value <= 1):
            return f"has a {key} that is not a number from 0 to 1"
    for key in ("val_loss", "best_val_loss", "seconds"):
        value = run.get(key)
        if value is not None and not (_number(value) and (value >= 0 or math.isnan(value))):
            return f"has a {key} that is not a number of 0 or more"
    if run.get("error") is not None and not isinstance(run["error"], str):
        return "has an error that is not text"
    return None


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (math.isfinite(value) or math.isnan(value))


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _value(value):
    """A swept setting's value as a sweep records it: a finite number, short text, a flag, or a
    layout (a short list of sizes)."""
    if isinstance(value, bool) or (isinstance(value, str) and len(value) <= MAX_TEXT):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    return isinstance(value, list) and len(value) <= 64 and all(_whole(v) for v in value)


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
