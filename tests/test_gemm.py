"""gemm.py: which library computes the tile products, and MKL's products where MKL is installed."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnfruit.errors import CnnfruitError
from cnnfruit.nn import gemm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKL_PATH = gemm.find_mkl()
needs_mkl = pytest.mark.skipif(MKL_PATH is None, reason="MKL is not installed (pip install .[mkl])")


class FakeMKL:
    """Stands in for MKL: numpy's product under another name, with a made-up speed."""

    version = "Fake MKL 1.0 Product Build 1"
    name = "MKL 1.0"

    def product(self, a, b, out):
        np.matmul(a, b, out=out)


class Timed(gemm.Products):
    """Products whose calibration reads made-up seconds instead of timing."""

    seconds = {"openblas": 2.0, "mkl": 1.0}

    def _measure(self, product, a, b, out):
        self.measured = getattr(self, "measured", 0) + 1
        return self.seconds["openblas" if product is gemm.numpy_product else "mkl"]


def test_openblas_alone_without_mkl_or_when_pinned(tmp_path):
    products = gemm.Products(choice="openblas", folder=str(tmp_path))
    assert products.mkl is None
    assert products.function("forward", 4, 5, 6, np.float32) is gemm.numpy_product
    assert "pinned by CNNFRUIT_GEMM=openblas" in products.describe()
    assert not os.listdir(tmp_path)


def test_a_bad_choice_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(gemm.CHOICE_VARIABLE, "atlas")
    with pytest.raises(CnnfruitError, match="CNNFRUIT_GEMM must be one of auto, openblas, mkl, got 'atlas'"):
        gemm.Products()


def test_calibration_picks_the_faster_library_once_and_remembers_it(tmp_path):
    fake = FakeMKL()
    products = Timed(choice="auto", folder=str(tmp_path), mkl=fake)
    assert products.function("forward", 80, 300, 200, np.float32) == fake.product
    assert products.function("forward", 80, 300, 200, np.float32) == fake.product
    assert products.measured == 2  # one calibration: each library timed once
    assert products.function("forward", 80, 300, 200, np.float64) is gemm.numpy_product  # MKL serves float32 only
    saved = json.loads((tmp_path / gemm.CALIBRATION_FILE).read_text())
    assert saved["choices"] == {"forward 80x300x200": "mkl"} and saved["machine"].endswith(fake.version)
    again = Timed(choice="auto", folder=str(tmp_path), mkl=fake)
    again.seconds = {"openblas": 1.0, "mkl": 2.0}  # the remembered choice stands: the same bits as before
    assert again.function("forward", 80, 300, 200, np.float32) == fake.product and not hasattr(again, "measured")
    assert again.function("weight_gradient", 300, 80, 200, np.float32) is gemm.numpy_product
    assert "MKL faster for 1: forward 80x300x200" in again.describe()


def test_a_near_tie_stays_with_openblas(tmp_path):
    products = Timed(choice="auto", folder=str(tmp_path), mkl=FakeMKL())
    products.seconds = {"openblas": 1.0, "mkl": 0.97}
    assert products.function("input_gradient", 80, 200, 300, np.float32) is gemm.numpy_product


def test_small_products_are_not_calibrated(tmp_path):
    products = Timed(choice="auto", folder=str(tmp_path), mkl=FakeMKL())
    assert products.function("forward", 8, 30, 20, np.float32) is gemm.numpy_product
    assert not hasattr(products, "measured")


def test_without_a_cache_folder_nothing_is_calibrated(tmp_path):
    products = Timed(choice="auto", folder="", mkl=FakeMKL())
    products.folder = None
    assert products.function("forward", 80, 300, 200, np.float32) is gemm.numpy_product
    assert not hasattr(products, "measured")


def test_a_calibration_for_another_machine_is_not_used(tmp_path):
    (tmp_path / gemm.CALIBRATION_FILE).write_text(json.dumps({"machine": "another CPU", "choices": {
        "forward 80x300x200": "mkl"}}))
    products = Timed(choice="auto", folder=str(tmp_path), mkl=FakeMKL())
    products.seconds = {"openblas": 1.0, "mkl": 2.0}
    assert products.function("forward", 80, 300, 200, np.float32) is gemm.numpy_product


def test_summary_names_the_library(monkeypatch):
    from click.testing import CliRunner
    from cnnfruit.cli import main

    monkeypatch.setattr(gemm, "_products", gemm.Products(choice="openblas"))
    result = CliRunner().invoke(main, ["summary"])
    assert result.exit_code == 0 and "Matrix products: " in result.output and "pinned by CNNFRUIT_GEMM" in result.output
    result = CliRunner().invoke(main, ["summary", "--json"])
    assert json.loads(result.output)["matrix_products"].startswith("matrix products: ")


def layouts(rng):
    """(a, b, out) as the tiles pass them: column slices, transposed row slices, gathered blocks."""
    x = rng.standard_normal((9, 40)).astype(np.float32)
    w = rng.standard_normal((40, 30)).astype(np.float32)
    dout = rng.standard_normal((9, 30)).astype(np.float32)
    out = np.full((9, 30), np.nan, np.float32)
    dx = np.full((9, 40), np.nan, np.float32)
    g = np.full((40, 30), np.nan, np.float32)
    return [
        (x, w[:, 7:19], out[:, 7:19]),  # forward tile
        (dout, w[10:25].T, dx[:, 10:25]),  # input gradient tile
        (x[:, 10:25].T, dout, g[:15]),  # weight gradient tile
        (dout[:4, :11], np.ascontiguousarray(w[:6, :11]).T, dx[:4, :6]),  # gathered block
        (x[:1], w, out[:1]),  # one row
        (x[:, :1], w[:1], out),  # inner dimension 1
        (x[:, ::2], w[::2], out),  # neither unit stride: copied
    ]


@needs_mkl
def test_mkl_products_against_float64(rng):
    mkl = gemm.MKL(MKL_PATH)
    assert "Math Kernel Library" in mkl.version
    for a, b, out in layouts(rng):
        mkl.product(a, b, out)
        expected = a.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


@needs_mkl
def test_mkl_repeats_its_bits(rng):
    mkl = gemm.MKL(MKL_PATH)
    a, b = rng.standard_normal((64, 700)).astype(np.float32), rng.standard_normal((700, 90)).astype(np.float32)
    first, second = np.empty((64, 90), np.float32), np.empty((70, 91), np.float32)[3:67, 1:]  # another alignment
    mkl.product(a, b, first)
    mkl.product(np.ascontiguousarray(a), b.copy(), second)
    assert np.array_equal(first, second)


TRAIN_A_FEW_STEPS = """
import sys
import numpy as np
import cnnfruit
from cnnfruit.nn import gemm
data = cnnfruit.load_embedded()
small = cnnfruit.Dataset(data.name, data.class_names, data.train.subset(np.arange(64)), data.test.subset(np.arange(4)))
config = cnnfruit.TrainConfig(lr=1e-6, epochs=1, batch_size=32, kernels=4, hidden=(48, 12), seed=3, val_fraction=0,
                              optimizer=sys.argv[3])
np.savez(sys.argv[2], **cnnfruit.fit(small, config).classifier.params)
print(gemm.products().describe())
"""


@needs_mkl
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_on_mkl_is_bit_identical_with_one_or_two_threads(tmp_path, optimizer):
    results = {}
    for library, threads in (("mkl", "1"), ("mkl", "2"), ("openblas", "2")):
        out = tmp_path / f"{library}-{threads}.npz"
        env = {**os.environ, "NUMBA_NUM_THREADS": threads, "PYTHONPATH": ROOT, gemm.CHOICE_VARIABLE: library}
        run = subprocess.run([sys.executable, "-c", TRAIN_A_FEW_STEPS, "32", str(out), optimizer], env=env, check=True,
                             cwd=ROOT, capture_output=True, text=True)
        assert ("MKL" in run.stdout) == (library == "mkl"), run.stdout
        with np.load(out) as saved:
            results[library, threads] = {name: saved[name] for name in saved.files}
    for name, value in results["mkl", "1"].items():
        assert np.array_equal(value, results["mkl", "2"][name]), name
        np.testing.assert_allclose(value, results["openblas", "2"][name], rtol=1e-3, atol=1e-5, err_msg=name)
