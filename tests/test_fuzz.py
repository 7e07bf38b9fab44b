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
