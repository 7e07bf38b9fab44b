"""The matrix products of the tiled dense layers: numpy's OpenBLAS, or Intel MKL where it is faster.

Every tile of tiled.py is one single-threaded sgemm call. By default that is numpy's matmul
(OpenBLAS). With the optional extra `pip install cnnfruit[mkl]`, MKL's cblas_sgemm is loaded
from its wheel through ctypes (which releases the GIL during the call, as numpy does), and each
kind of product of each layer shape goes to whichever library a short calibration measures
faster on this machine: about 3 timed calls of each on the product's whole-tile shape, made
once and remembered in the cache folder (gemm.json), so that every later run makes the same
choice and therefore computes the same bits. On Intel CPUs MKL usually wins; on AMD CPUs it
takes slower code paths and OpenBLAS usually wins (docs/performance.md has both).

MKL runs sequentially (one thread per call, as OpenBLAS does here) and in its Conditional
Numerical Reproducibility mode (MKL_CBWR=AUTO unless the environment sets MKL_CBWR), under
which a call returns the same bits from run to run whatever the alignment of its arrays. Since
tile edges come from the shapes alone, results do not depend on the thread count with either
library; they do depend on the library, the CPU and its code path.

CNNFRUIT_GEMM pins the choice: `openblas`, `mkl` (every float32 tile product; an error if MKL
cannot be loaded) or `auto` (the default). float64 products always use numpy.
"""
import ctypes
import glob
import json
import os
import re
import sys
import time

import numpy as np

from cnnfruit.errors import CnnfruitError

CHOICE_VARIABLE = "CNNFRUIT_GEMM"
CHOICES = ("auto", "openblas", "mkl")
KINDS = ("forward", "input_gradient", "weight_gradient")
CALIBRATION_FILE = "gemm.json"
CALIBRATION_RUNS = 3
# Products smaller than this many multiply-adds are left to OpenBLAS without a calibration: the
# ctypes call alone costs microseconds, as much as such a product (both measured on the AMD
# EPYC: MKL 2.4-5.8x slower on the report's two small layers).
MIN_CALIBRATED_WORK = 1_000_000
# MKL is chosen only when it is this much faster than OpenBLAS: a near tie is left to the default
# library, so that timing noise does not decide which bits a run computes.
MKL_MARGIN = 0.95


class GemmError(CnnfruitError):
    """CNNFRUIT_GEMM is not a choice, or asks for an MKL that cannot be loaded."""


def numpy_product(a, b, out):
    np.matmul(a, b, out=out)


class MKL:
    """cblas_sgemm from libmkl_rt, sequential and in reproducibility mode."""

    ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
    INTERFACE_LP64, THREADING_SEQUENTIAL, CBWR_AUTO = 0, 1, 2

    def __init__(self, path):
        lib = ctypes.CDLL(path)
        lib.MKL_Set_Interface_Layer(self.INTERFACE_LP64)
        lib.MKL_Set_Threading_Layer(self.THREADING_SEQUENTIAL)
        if "MKL_CBWR" not in os.environ and lib.MKL_CBWR_Set(self.CBWR_AUTO) != 0:
            raise GemmError(f"MKL at {path} refused its reproducibility mode (MKL_CBWR_Set)")
        text = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(text, len(text))
        self.path = path
        self.version = text.value.decode(errors="replace").strip()
        number = re.search(r"Version ([0-9.]+)", self.version)
        self.name = f"MKL {number.group(1)}" if number else "MKL"
        c_int, pointer = ctypes.c_int, ctypes.c_void_p
        self._sgemm = lib.cblas_sgemm
        self._sgemm.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, ctypes.c_float, pointer, c_int,
                                pointer, c_int, ctypes.c_float, pointer, c_int]
        self._sgemm.restype = None

    @staticmethod
    def _operand(a):
        """(transpose flag, leading dimension, array) for a 2-D float32 view, copied if need be."""
        rows, cols = a.shape
        if a.strides[1] == 4 and (rows == 1 or a.strides[0] >= 4 * max(cols, 1)):
            return MKL.NO_TRANS, max(a.strides[0] // 4, cols, 1), a
        if a.strides[0] == 4 and (cols == 1 or a.strides[1] >= 4 * max(rows, 1)):
            return MKL.TRANS, max(a.strides[1] // 4, rows, 1), a
        a = np.ascontiguousarray(a)
        return MKL.NO_TRANS, max(cols, 1), a

    def product(self, a, b, out):
        """out (M, N) = a (M, K) @ b (K, N), all float32; out needs unit stride along its rows."""
        M, K = a.shape
        N = b.shape[1]
        if out.shape != (M, N) or b.shape[0] != K or out.strides[1] != 4 or not out.flags.writeable:
            raise ValueError(f"MKL product of {a.shape} and {b.shape} into {out.shape} (strides {out.strides})")
        if M == 0 or N == 0:
            return
        if K == 0:
            out[...] = 0
            return
        trans_a, lda, a = self._operand(a)
        trans_b, ldb, b = self._operand(b)
        ldc = max(out.strides[0] // 4, N) if M > 1 else N
        self._sgemm(self.ROW_MAJOR, trans_a, trans_b, M, N, K, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, 0.0,
                    out.ctypes.data, ldc)


def find_mkl():
    """The path of libmkl_rt from the `mkl` wheel (or the system), or None."""
    candidates = []
    try:
        from importlib import metadata

        files = metadata.distribution("mkl").files or []
        candidates += [str(f.locate()) for f in files if os.path.basename(str(f)).startswith("libmkl_rt.so")]
    except Exception:  # not installed, or metadata without a file list
        pass
    candidates += sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")), reverse=True)
    import ctypes.util

    found = ctypes.util.find_library("mkl_rt")
    if found:
        candidates.append(found)
    return next((c for c in candidates if os.path.exists(c) or not os.path.isabs(c)), None)


def cache_folder():
    """Where the calibration is kept: the cache folder of data/cache.py's rule, or None when off."""
    variable = os.environ.get("CNNFRUIT_CACHE_DIR", "")
    if variable.strip().lower() == "off":
        return None
    if variable:
        return os.path.abspath(os.path.expanduser(variable))
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return os.path.join(xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache"), "cnnfruit")


def machine_fingerprint(mkl):
    """What a calibration holds for: the CPU model, the thread-independent library versions."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} | numpy {np.__version__} | {mkl.version}"


class Products:
    """Which library computes each kind of tile product, per layer shape and batch.

    `function(kind, M, K, N, dtype)` returns the product function for tiles of an (M, K) @ (K, N)
    product, calibrating once if both libraries are there and the choice is `auto`.
    """

    def __init__(self, choice=None, folder=None, mkl=None, timer=time.thread_time):
        """choice, folder and mkl default to CNNFRUIT_GEMM, the cache folder and the installed MKL."""
        choice = (choice or os.environ.get(CHOICE_VARIABLE) or "auto").strip().lower()
        if choice not in CHOICES:
            raise GemmError(f"{CHOICE_VARIABLE} must be one of {', '.join(CHOICES)}, got {choice!r}")
        self.choice = choice
        self.timer = timer
        self.mkl = None
        self.mkl_error = None
        if choice != "openblas":
            try:
                if mkl is None:
                    path = find_mkl()
                    mkl = MKL(path) if path else None
                self.mkl = mkl
            except (OSError, AttributeError, GemmError) as err:
                self.mkl_error = f"{type(err).__name__}: {err}"
        if choice == "mkl" and self.mkl is None:
            raise GemmError(f"{CHOICE_VARIABLE}=mkl but MKL cannot be loaded ({self.mkl_error or 'libmkl_rt not found'}); "
                            "install it with pip install cnnfruit[mkl]")
        self.folder = folder if folder is not None else cache_folder()
        self.choices = {}  # key -> "openblas" | "mkl", this process's
        self._saved = None

    def key(self, kind, M, K, N):
        return f"{kind} {M}x{K}x{N}"

    def function(self, kind, M, K, N, dtype):
        if self.mkl is None or dtype != np.float32 or self.choice == "openblas":
            return numpy_product
        if self.choice == "mkl":
            return self.mkl.product
        key = self.key(kind, M, K, N)
        library = self.choices.get(key)
        if library is None:
            library = self.choices[key] = self._saved_choices().get(key) or self._calibrate(key, M, K, N)
        return self.mkl.product if library == "mkl" else numpy_product

    def _path(self):
        return os.path.join(self.folder, CALIBRATION_FILE) if self.folder else None

    def _saved_choices(self):
        if self._saved is None:
            self._saved = {}
            path = self._path()
            try:
                with open(path) as f:
                    saved = json.load(f)
                if saved.get("machine") == machine_fingerprint(self.mkl):
                    self._saved = dict(saved.get("choices", {}))
            except (OSError, TypeError, ValueError, AttributeError):
                pass
        return self._saved

    def _calibrate(self, key, M, K, N):
        """Time both libraries on fresh (M, K) @ (K, N) float32 arrays; remember the faster one.

        Without a cache folder no calibration is made: OpenBLAS then serves, so that two runs can
        never choose differently; nor for products under MIN_CALIBRATED_WORK.
        """
        path = self._path()
        if path is None or M * K * N < MIN_CALIBRATED_WORK:
            return "openblas"
        rng = np.random.default_rng(0)
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        out = np.empty((M, N), np.float32)
        seconds = {name: self._measure(product, a, b, out)
                   for name, product in (("openblas", numpy_product), ("mkl", self.mkl.product))}
        library = "mkl" if seconds["mkl"] < MKL_MARGIN * seconds["openblas"] else "openblas"
        self._saved_choices()[key] = library
        self._save(path, key, seconds)
        return library

    def _measure(self, product, a, b, out):
        """The best of CALIBRATION_RUNS timed calls, after one untimed (first touch, set-up).

        Timed in this thread's CPU time: both libraries run one call on the calling thread, and
        CPU time leaves out the waits that other processes on a shared machine cause.
        """
        product(a, b, out)
        best = float("inf")
        for _ in range(CALIBRATION_RUNS):
            started = self.timer()
            product(a, b, out)
            best = min(best, self.timer() - started)
        return best

    def _save(self, path, key, seconds):
        from cnnfruit.files import write_text_atomically

        measured = {key: {name: round(s * 1e3, 4) for name, s in seconds.items()}}
        try:
            with open(path) as f:
                old = json.load(f)
            if old.get("machine") == machine_fingerprint(self.mkl):
                measured = {**old.get("milliseconds", {}), **measured}
        except (OSError, TypeError, ValueError, AttributeError):
            pass
        text = json.dumps({"machine": machine_fingerprint(self.mkl), "choices": self._saved_choices(),
                           "milliseconds": measured}, indent=1, sort_keys=True)
        try:
            os.makedirs(self.folder, exist_ok=True)
            write_text_atomically(path, text + "\n")
        except OSError:
            pass  # a read-only cache: this process keeps its choices, the next calibrates again

    def describe(self):
        """One line for `summary` and the bench: the libraries, and what each product measured uses."""
        openblas = openblas_version()
        if self.mkl is None:
            why = ("pinned by CNNFRUIT_GEMM=openblas" if self.choice == "openblas" else
                   f"MKL not loaded: {self.mkl_error}" if self.mkl_error else "MKL not installed")
            return f"matrix products: {openblas} (numpy), one thread per tile; {why}"
        if self.choice == "mkl":
            return f"matrix products: {self.mkl.name}, one thread per tile (CNNFRUIT_GEMM=mkl)"
        chosen = {**self._saved_choices(), **self.choices}
        mkl_keys = sorted(k for k, v in chosen.items() if v == "mkl")
        return (f"matrix products: {openblas} (numpy) or {self.mkl.name}, one thread per tile, "
                f"each product by calibration ({len(chosen)} measured on this machine, MKL faster for "
                f"{len(mkl_keys)}{': ' + ', '.join(mkl_keys) if mkl_keys else ''})")


def openblas_version():
    """numpy's BLAS and its version, as numpy reports them."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', 'BLAS')} {blas.get('version', '')}".strip()
    except Exception:  # an older numpy or another build: the name is enough
        return "numpy's BLAS"


_products = None


def products():
    """The process's Products, made on first use (after CNNFRUIT_GEMM is read)."""
    global _products
    if _products is None:
        _products = Products()
    return _products
