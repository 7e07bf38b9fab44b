"""Same flags and seed, same model.npz bit for bit: on a rerun and whatever NUMBA_NUM_THREADS is."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers import TINY, assert_same_model, cli, saved_arrays

ROOT = Path(__file__).resolve().parents[1]


def train_in_process(data, out, threads, *flags, env=None, tiny=TINY):
    """A fresh interpreter, so NUMBA_NUM_THREADS (and any BLAS setting in env) really takes effect."""
    env = {**(os.environ if env is None else env), "NUMBA_NUM_THREADS": str(threads)}
    args = ["train", "--data", data, *tiny, "--epochs", 2, "--seed", 3, "--out", out, *flags]
    result = subprocess.run([sys.executable, "-m", "cnnfruit", *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out / "model.npz"


def test_reruns_and_thread_counts_give_identical_models(tmp_path, image_folder):
    # 17 training images in batches of 16: the first step sends the dense layers to BLAS
    # (dispatch.BLAS_MIN_BATCH), the last one (1 image) runs them in the Numba kernels.
    flags = ["--batch-size", 16]
    first = train_in_process(image_folder, tmp_path / "first", 2, *flags)
    again = train_in_process(image_folder, tmp_path / "again", 2, *flags)
    one_thread = train_in_process(image_folder, tmp_path / "one", 1, *flags)
    assert_same_model(first, again)
    assert_same_model(first, one_thread)


def test_blas_threads_do_not_change_the_model(tmp_path, make_image_folder):
    """OpenBLAS gives other float32 sums with 2 threads than with 1 for products like these (50
    images a batch, 3364 features, 64 units): checked by hand on the 2-core test machine, where
    the unset default is 2 threads. The CLI pins one BLAS thread unless the user sets it."""
    data = make_image_folder(tmp_path / "data", train=24)
    wide = ["--hidden", "64", "--kernels", "4", "--kernel-size", "4", "-q", "--batch-size", "32"]
    unset = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    default = train_in_process(data, tmp_path / "default", 2, env=unset, tiny=wide)
    one = train_in_process(data, tmp_path / "one", 2, env={**unset, "OPENBLAS_NUM_THREADS": "1"}, tiny=wide)
    assert_same_model(default, one)


def test_another_seed_gives_another_model(tmp_path, image_folder):
    """The comparison above can fail: a different seed changes the weights."""
    for seed in (3, 4):
        assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--seed", seed, "--out", tmp_path / str(seed)).exit_code == 0
    first, other = (saved_arrays(tmp_path / str(seed) / "model.npz") for seed in (3, 4))
    assert not np.array_equal(first["param_conv_w"], other["param_conv_w"])


def test_an_images_probabilities_do_not_depend_on_its_batch_or_its_neighbours():
    """The report's own shapes, where OpenBLAS rounds the 841 -> 29 product differently below 48
    rows: one image alone, in batches of every size, and among other images, gets the same bits."""
    from cnnfruit.nn.architecture import Architecture, init_parameters
    from cnnfruit.nn.network import Network

    arch = Architecture()
    net = Network(arch, init_parameters(arch, np.random.default_rng(0), scheme="torch"))
    x = np.random.default_rng(1).standard_normal((150, 1, 32, 32)).astype(np.float32)
    alone = np.concatenate([net.predict_proba(x[i:i + 1]) for i in range(0, 150, 7)])
    for batch in (1, 15, 16, 47, 64, 100, 256):
        assert np.array_equal(net.predict_proba(x, batch)[::7], alone), batch
    shifted = net.predict_proba(np.concatenate([x[100:], x]))[50:]
    assert np.array_equal(shifted[::7], alone)
