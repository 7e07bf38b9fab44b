"""Fuzzing, seeded and bounded: mutated checkpoints, history files and image bytes end in success or a
CnnfruitError, never another exception and never a crash.

Hypothesis draws the mutations from a fixed seed (derandomize=True), so every run tries the same
cases; max_examples bounds the count and the deadline only stops an example that hangs.
"""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from cnnfruit import plots
from cnnfruit.errors import CnnfruitError
from cnnfruit.history import History
from cnnfruit.data.preprocess import load_image

from fuzz_checkpoint import json_values, paths_in, replaced

HERE = os.path.dirname(os.path.abspath(__file__))
BOUNDED = settings(derandomize=True, deadline=20_000, database=None, suppress_health_check=list(HealthCheck))


def test_mutated_checkpoints_load_predict_and_resume_or_are_refused():
    """In a child process: a checkpoint that corrupts memory must fail this test, not kill pytest."""
    done = subprocess.run([sys.executable, os.path.join(HERE, "fuzz_checkpoint.py"), "300"], cwd=HERE,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.returncode, done.stdout[-3000:], done.stderr[-6000:])
    outcomes = json.loads(done.stdout.splitlines()[-1])
    assert sum(outcomes.values()) == 300
    assert any(key.endswith("refused") for key in outcomes) and any(key.endswith("works") for key in outcomes)


HISTORY = {
    "dataset": "fruit", "class_names": ["a", "b"], "seed": 0, "hyperparameters": {"lr": 1e-6, "batch_size": 1},
    "epochs": [{"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.5, "val_loss": 1.5, "val_accuracy": 0.6,
                "seconds": 1.0},
               {"epoch": 2, "train_loss": 1.0, "train_accuracy": 0.7, "val_loss": 1.2, "val_accuracy": 0.7,
                "seconds": 1.0}],
    "best_epoch": 2, "best_val_loss": 1.2, "test_loss": 1.3, "test_accuracy": 0.7, "total_seconds": 2.0,
}


DRAWN = [("dataset",), ("hyperparameters", "lr"), ("epochs", 0, "train_loss"), ("epochs", 1, "val_loss"),
         ("epochs", 1, "epoch"), ("test_accuracy",)]


@st.composite
def mutated_histories(draw):
    if draw(st.integers(0, 9)) == 0:  # bytes that may not even be JSON
        text = json.dumps(HISTORY).encode()
        cut = draw(st.integers(0, len(text)))
        return text[:cut] + draw(st.binary(max_size=8))
    value = HISTORY
    odd = st.sampled_from([1e308, -1e308, 1e300, 10**400, float("nan"), float("inf"), -1, 0, 2, 10**9, "$x^$",
                           "$\\frac{$", "\n", "x" * 2000, [[[1]]]])
    for _ in range(draw(st.integers(1, 3))):
        places = list(paths_in(value))[1:]  # fields, not the whole record
        drawn = [p for p in DRAWN if p in places]
        # half the time a field that reaches a figure's text or an axis
        place = draw(st.sampled_from(drawn if drawn and draw(st.booleans()) else places))
        new = draw(odd) if draw(st.integers(0, 3)) else draw(json_values)
        value = replaced(value, place, new)
    return json.dumps(value).encode()


def test_mutated_histories_plot_or_are_refused(tmp_path):
    path = tmp_path / "history.json"

    @settings(BOUNDED, max_examples=40)
    @given(mutated_histories())
    def plot(blob):
        path.write_bytes(blob)
        try:
            history = History.load(str(path))
        except CnnfruitError:
            return
        plots.history_figure(history).savefig(io.BytesIO(), format="png", dpi=30)

    plot()


def image_bytes(fmt):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


FORMATS = {fmt: image_bytes(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")}


@st.composite
def mutated_images(draw):
    data = bytearray(FORMATS[draw(st.sampled_from(sorted(FORMATS)))])
    kind = draw(st.sampled_from(["flip", "truncate", "insert"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    else:
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the damage it reads past
def test_mutated_image_bytes_load_or_are_refused(tmp_path):
    path = tmp_path / "image"

    @settings(BOUNDED, max_examples=300)
    @given(mutated_images())
    def load(blob):
        path.write_bytes(blob)
        try:
            pixels = load_image(str(path))
        except CnnfruitError:
            return
        assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8

    load()


# ---- the sweep's inputs: values and ranges, sweep.json, study.db

from cnnfruit.config import setting_fields  # noqa: E402
from cnnfruit.errors import SettingError  # noqa: E402

SETTING_NAMES = sorted(setting_fields())
PIECES = st.sampled_from(["1e-3", "4", "0", "-1", "nan", "inf", "1e400", "adam", "sgd", "log", "lin", "841,29", "{",
                          "}", "{0}", "{lr}", "%s", "$x^$", "", " ", "\u68a8", "\n", "\x00"])


@st.composite
def sweep_texts(draw):
    """A setting's text as the command line would pass it: pieces joined by commas and colons."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=20))
    parts = draw(st.lists(PIECES, min_size=1, max_size=4))
    return "".join(part + draw(st.sampled_from([",", ":", ""])) for part in parts)


def test_sweep_values_and_ranges_make_a_space_or_one_setting_error():
    @settings(BOUNDED, max_examples=300)
    @given(st.dictionaries(st.sampled_from(SETTING_NAMES + ["lrr", "{x}"]),
                           sweep_texts() | st.lists(sweep_texts(), max_size=3), min_size=1, max_size=3))
    def space(given_text):
        from cnnfruit.sweep.space import SearchSpace

        try:
            made = SearchSpace.from_text(given_text)
        except SettingError as err:
            str(err), err.render(lambda name: "--" + name.replace("_", "-"))  # both wordings render
            return
        assert SearchSpace.from_dict(made.to_dict()).to_dict() == made.to_dict()
        for name in made.names:
            made.describe(name)

    space()


SWEEP = {
    "kind": "cnnfruit-sweep", "version": 1, "swept": ["lr", "hidden"], "fixed": {"epochs": 2}, "seeds": [0, 1],
    "seconds": 3.5, "interrupted": False, "validation_vs_test": {}, "rows": [{"params": {"lr": 0.001}}],
    "runs": [{"trial": n, "params": {"lr": lr, "hidden": hidden}, "seed": n % 2, "val_split": "block",
              "outcome": outcome, "epochs": 2, "val_accuracy": 0.5 + n / 20, "val_loss": 0.4, "best_val_loss": 0.3,
              "test_accuracy": 0.6, "seconds": 1.0, "folder": f"runs/trial-{n:04d}", "error": None}
             for n, (lr, hidden, outcome) in enumerate([(1e-3, [841, 29], "finished"), (1e-2, [16], "finished"),
                                                        (1e-4, [16], "pruned")])],
}


@st.composite
def mutated_sweep_reports(draw):
    if draw(st.integers(0, 9)) == 0:
        text = json.dumps(SWEEP).encode()
        return text[:draw(st.integers(0, len(text)))] + draw(st.binary(max_size=8))
    value = SWEEP
    odd = st.sampled_from([1e308, float("nan"), float("inf"), -1, 2, 10**30, "$x^$", "\n", "x" * 2000, [[1]], {},
                           None, True, [], "lr", ["lr"] * 3, list(SETTING_NAMES)])
    for _ in range(draw(st.integers(1, 3))):
        place = draw(st.sampled_from(list(paths_in(value))[1:]))
        value = replaced(value, place, draw(odd) if draw(st.integers(0, 3)) else draw(json_values))
    return json.dumps(value).encode()


def test_mutated_sweep_reports_plot_or_are_refused(tmp_path):
    from cnnfruit.sweep.report import SweepReport

    path = tmp_path / "sweep.json"

    @settings(BOUNDED, max_examples=40)
    @given(mutated_sweep_reports())
    def plot(blob):
        path.write_bytes(blob)
        try:
            report = SweepReport.load(str(path))
        except CnnfruitError:
            return
        if any(run["outcome"] == "finished" for run in report.runs):
            plots.sweep_figure(report).savefig(io.BytesIO(), format="png", dpi=20)

    plot()


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A finished sweep of two tiny runs, whose folder each study.db example starts from."""
    pytest.importorskip("optuna", reason="the sweep extra is not installed")
    from helpers import write_image_folder
    from cnnfruit.sweep.space import SearchSpace
    from cnnfruit.sweep.study import Sweep

    root = tmp_path_factory.mktemp("fuzz-sweep")
    data = str(write_image_folder(root / "data", train=6, test=2))
    space = SearchSpace.from_values(kernels=2, kernel_size=5, hidden=(6,), epochs=1, lr=[1e-3, 1e-2])
    Sweep(space, root / "s", seeds=(0,), data=data, pruner=None).run()
    return root / "s", data


@st.composite
def mutated_databases(draw, study):
    data = bytearray(study)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "zero a page"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 12))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif kind == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    else:
        page = draw(st.integers(0, len(data) // 4096))
        data[page * 4096:(page + 1) * 4096] = bytes(min(4096, len(data) - page * 4096))
    return bytes(data)


def test_mutated_study_databases_resume_or_are_refused(finished_sweep, tmp_path):
    """Each mutation of a finished sweep's study.db: --resume's plan and the sweep's own opening,
    recovery and report (with its stop already set, so no run is trained) work or say why."""
    import shutil
    import threading

    from cnnfruit.cli.sweep import _stored_plan
    from cnnfruit.sweep.study import Sweep

    folder, data = finished_sweep
    study = (folder / "study.db").read_bytes()
    stop = threading.Event()
    stop.set()
    outcomes = {"works": 0, "refused": 0}

    @settings(BOUNDED, max_examples=25)
    @given(mutated_databases(study))
    def resume(blob):
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(folder, copy)
        (copy / "study.db").write_bytes(blob)
        try:
            space, seeds, trials, source, pruner = _stored_plan(str(copy))
            Sweep(space, copy, seeds=seeds, trials=trials, pruner=pruner, data=data).run(stop=stop)
        except CnnfruitError:
            outcomes["refused"] += 1
            return
        outcomes["works"] += 1

    resume()
    assert outcomes["refused"] and outcomes["works"], outcomes


# ---- the API's arguments

ODD_IMAGES = st.sampled_from([
    None, 3, "", "missing.png", b"bytes.png", [], [None], ["missing.png", np.zeros((32, 32, 3), np.uint8)],
    [np.zeros((32, 32, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], np.zeros((32, 32, 3), np.uint8),
    np.zeros((2, 32, 32, 3), np.float32), np.zeros((2, 32, 32), np.uint8), np.zeros((0, 32, 32, 3), np.uint8),
    np.asfortranarray(np.full((3, 32, 32, 3), 7, np.uint8)), np.full((1, 32, 32, 3), 255, np.uint8)[:, ::-1],
    np.zeros((2, 32, 32, 4), np.uint8), np.array(["a.png", "b.png"]), {"a": 1}, 1.5])
ODD_NUMBERS = st.sampled_from([0, 1, -1, 2, 10**12, 0.5, -0.0, float("nan"), float("inf"), True, None, "8", "0.5",
                               [1], np.int64(3), np.float32(0.5)])


def count(images):
    """A label count for images: theirs where they have one, else 1 (evaluate must refuse a mismatch)."""
    try:
        return len(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else 1
    except TypeError:
        return 1


def test_the_classifier_takes_any_argument_and_answers_or_says_why():
    from cnnfruit.nn.architecture import Architecture, init_parameters
    from cnnfruit.inference.classifier import Classifier
    from cnnfruit.data.datasets import Split

    arch = Architecture(in_channels=1, kernels=2, kernel_size=5, hidden=(6,), classes=3)
    clf = Classifier(arch, init_parameters(arch, np.random.default_rng(0)), ["a", "b", "c"])

    @settings(BOUNDED, max_examples=150)
    @given(ODD_IMAGES, ODD_NUMBERS, ODD_NUMBERS, st.sampled_from(["none", "flip", "rotate", "spin", None, 1]))
    def call(images, batch_size, confidence, tta):
        for method in (lambda: clf.predict_proba(images, batch_size=batch_size, tta=tta),
                       lambda: clf.predict(images, batch_size=batch_size, tta=tta, min_confidence=confidence),
                       lambda: clf.predict_files(images, batch_size=batch_size, tta=tta),
                       lambda: clf.evaluate(Split(images, np.zeros(count(images), np.int64), []),
                                            batch_size=batch_size, tta=tta),
                       lambda: clf.feature_maps(images),
                       lambda: clf.decide(images, confidence)):
            try:
                method()
            except CnnfruitError:
                pass

    call()
