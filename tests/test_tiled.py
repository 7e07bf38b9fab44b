"""The tiled products (cnnfruit/nn/tiled.py) and their tile kernels against tests/naive.py, and their bits.

A tiled result must not depend on how many workers ran the tiles: the pool is run with 1 and 2
workers in this process, and whole training steps in fresh processes with NUMBA_NUM_THREADS=1
and 2 (the default pool has as many workers), compared byte for byte.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnfruit.nn import kernels
from cnnfruit.nn import tiled
from cnnfruit.nn.optimizers import make_optimizer

import naive
from helpers import relu_like

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = [np.float32, np.float64]


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(params=["whole-tiles", "live-blocks"])
def small_tiles(request, monkeypatch):
    """Tiles of a few rows and columns, so that tiny test shapes are cut into many of them; the
    backward runs every tile whole, or gathers the live block of every tile."""
    monkeypatch.setattr(tiled, "COLUMN_TILE", 8)
    monkeypatch.setattr(tiled, "TILE_ROWS", 6)
    monkeypatch.setattr(tiled, "GATHER_BELOW", 0.0 if request.param == "whole-tiles" else 1.01)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def pool(request):
    pool = tiled.TilePool(request.param)
    yield pool
    pool.close()


# ---- tile kernels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
def test_bias_relu_on_a_column_slice(rng, dtype, relu):
    out = rng.standard_normal((4, 10)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    expected = out.copy()
    expected[:, 3:7] = naive.dense_forward(out[:, 3:7], np.eye(4, dtype=dtype), b, relu)
    kernels.bias_relu(out[:, 3:7], b, relu)
    np.testing.assert_allclose(out, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gathers_and_live_sums(rng, dtype):
    src = rng.standard_normal((6, 5)).astype(dtype)
    index = np.array([0, 2, 5, 0, 0, 0])
    rows = np.full((6, 5), np.nan, dtype)
    kernels.gather_rows(rows, src, index, 3)
    np.testing.assert_array_equal(rows[:3], src[[0, 2, 5]])
    cols = np.array([1, 4, 0, 0, 0])
    picked = np.full((6, 5), np.nan, dtype)
    kernels.gather_columns(picked, src, cols, 2)
    np.testing.assert_array_equal(picked[:, :2], src[:, [1, 4]])
    db = np.full(5, np.nan, dtype)
    kernels.live_column_sums(db, src, 4)
    np.testing.assert_allclose(db, src[:4].sum(axis=0), **tolerance(dtype))
    kernels.live_column_sums(db, src, 0)
    np.testing.assert_array_equal(db, np.zeros(5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_mask_scatter(rng, dtype):
    N, L, I = 5, 3, 9
    live = np.array([0, 2, 3, 0, 0])
    dx_live = rng.standard_normal((L, I)).astype(dtype)
    x_live = relu_like(rng, (L, I), dtype)
    dx = np.full((N, I), np.nan, dtype)
    kernels.relu_mask_scatter(dx[:, 2:7], dx_live[:, 2:7], x_live[:, 2:7], live, L)
    expected = np.zeros((N, 5), dtype)
    expected[live[:L]] = naive.relu_backward(dx_live[:, 2:7], x_live[:, 2:7])
    np.testing.assert_array_equal(dx[:, 2:7], expected)
    assert np.isnan(dx[:, :2]).all() and np.isnan(dx[:, 7:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sgd_tile(rng, dtype, weight_decay):
    param, grad = (rng.standard_normal(50).astype(dtype) for _ in range(2))
    expected = naive.sgd_update(param.astype(np.float64), grad, 0.01, weight_decay)
    kernels.sgd_tile(param, grad, dtype(0.01), dtype(weight_decay))
    np.testing.assert_allclose(param, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_gathered_tile(rng, dtype):
    w = rng.standard_normal((6, 7)).astype(dtype)
    grad = rng.standard_normal((2, 7)).astype(dtype)
    rows, cols = np.array([1, 4]), np.array([1, 5, 6, 0, 0, 0, 0])
    full = np.zeros((6, 7))
    full[np.ix_(rows, cols[:3])] = grad[:, :3]
    expected = naive.sgd_update(w.astype(np.float64), full, 0.5)
    kernels.sgd_gathered_tile(w, grad[:, :3], rows, cols, 3, dtype(0.5))
    np.testing.assert_allclose(w, expected, **tolerance(dtype))


def test_live_rows_by_tile():
    x = np.zeros((3, 10), np.float32)
    x[0, [1, 7]] = 1.0
    x[2, [2, 7, 9]] = 2.0  # image 2 is not live: only the first 2 count
    rows, starts = np.full(10, -1), np.full(4, -1)
    total = kernels.live_rows_by_tile(rows, starts, x, 2, np.array([0, 4, 8, 10]))
    assert total == 2 and rows[:2].tolist() == [1, 7] and starts.tolist() == [0, 1, 2, 2]


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_scatter_a_live_block(rng, dtype):
    N, I, O, r0 = 4, 12, 6, 3
    w = rng.standard_normal((I, O)).astype(dtype)
    x_live = relu_like(rng, (2, I), dtype)
    rows, cols = np.array([4, 6, 7]), np.array([0, 2, 5, 0, 0, 0])
    wg, xg = np.full((3, O), np.nan, dtype), np.full((2, 3), np.nan, dtype)
    kernels.gather_tile(wg, xg, w, x_live, rows, cols, 3, 2)
    np.testing.assert_array_equal(wg[:, :3], w[np.ix_(rows, cols[:3])])
    np.testing.assert_array_equal(xg, x_live[:, rows])
    dxg = rng.standard_normal((2, 3)).astype(dtype)
    dx = np.full((N, 6), np.nan, dtype)  # the row tile r0..r0+6 of an (N, I) gradient
    live = np.array([1, 3, 0, 0])
    kernels.scatter_dx_tile(dx, dxg, xg, live, 2, rows, r0)
    expected = np.zeros((N, 6), dtype)
    expected[np.ix_(live[:2], rows - r0)] = naive.relu_backward(dxg, xg)
    np.testing.assert_array_equal(dx, expected)
    g = rng.standard_normal((3, O)).astype(dtype)
    gd = np.full((6, O), np.nan, dtype)
    kernels.scatter_gradient_tile(gd, g, rows, r0, cols, 3)
    expected = np.zeros((6, O), dtype)
    expected[np.ix_(rows - r0, cols[:3])] = g[:, :3]
    np.testing.assert_array_equal(gd, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_momentum_tile(rng, dtype, weight_decay):
    param, velocity, grad = (rng.standard_normal(40).astype(dtype) for _ in range(3))
    expected = naive.momentum_update(*(a.astype(np.float64) for a in (param, velocity, grad)), 0.05, 0.9, weight_decay)
    kernels.momentum_tile(param, velocity, grad, dtype(0.05), dtype(0.9), dtype(weight_decay))
    for got, want in zip((param, velocity), expected):
        np.testing.assert_allclose(got, want, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_tile(rng, dtype, weight_decay):
    param, m, grad = (rng.standard_normal(40).astype(dtype) for _ in range(3))
    v = rng.random(40).astype(dtype)
    step, (lr, b1, b2, eps) = 3, (0.01, 0.9, 0.99, 1e-6)
    expected = naive.adam_update(*(a.astype(np.float64) for a in (param, m, v, grad)), lr, b1, b2, eps, weight_decay, step)
    kernels.adam_tile(param, m, v, grad, *(dtype(s) for s in (lr, b1, b2, eps, weight_decay)),
                      dtype(1 - b1**step), dtype(1 - b2**step))
    for got, want in zip((param, m, v), expected):
        np.testing.assert_allclose(got, want, **tolerance(dtype))


# ---- the tiled products


def test_edges_cover_the_shape_and_depend_on_it_alone():
    assert tiled.column_edges(841) == [0, 210, 420, 630, 841]
    assert tiled.column_edges(29) == [0, 29]
    edges = tiled.row_edges(6728)
    assert edges[0] == 0 and edges[-1] == 6728 and len(edges) == 26 + 1
    assert max(np.diff(edges)) - min(np.diff(edges)) <= 1
    assert tiled.row_edges(40) == [0, 40]


def test_pool_runs_every_tile_once(pool):
    seen = []
    pool.run(lambda t, worker: seen.append((t, worker)), 23)
    assert sorted(t for t, _ in seen) == list(range(23))
    assert all(0 <= worker < pool.workers for _, worker in seen)


def test_pool_passes_a_tile_error_on():
    pool = tiled.TilePool(2)

    def tile(t, worker):
        if t == 3:
            raise RuntimeError("tile 3")

    with pytest.raises(RuntimeError, match="tile 3"):
        pool.run(tile, 8)
    pool.close()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("N,I,O", [(1, 5, 3), (9, 30, 37), (4, 17, 8)])
def test_dense_forward(rng, small_tiles, pool, dtype, relu, N, I, O):
    x = relu_like(rng, (N, I), dtype)
    w, b = rng.standard_normal((I, O)).astype(dtype), rng.standard_normal(O).astype(dtype)
    out = np.full((N, O), np.nan, dtype)
    tiled.dense_forward(pool, out, x, w, b, relu)
    np.testing.assert_allclose(out, naive.dense_forward(x.astype(np.float64), w, b, relu), **tolerance(dtype))


def backward_problem(rng, dtype, N, I, O, live_columns, dead_images=(1,), dead_rows=slice(0, 0)):
    """x (N, I) after a ReLU, dout (N, O) with dead images and columns, w, b, dx of NaN."""
    x = relu_like(rng, (N, I), dtype)
    x[:, dead_rows] = 0  # inputs that are zero for every image: whole tiles of w may rest
    dout = np.zeros((N, O), dtype)
    columns = rng.choice(O, size=live_columns, replace=False)
    dout[:, columns] = rng.standard_normal((N, live_columns))
    dout[[n for n in dead_images if n < N]] = 0
    w, b = rng.standard_normal((I, O)).astype(dtype), rng.standard_normal(O).astype(dtype)
    return x, dout, w, b


def run_backward(pool, x, dout, w, optimizer, name="w"):
    """tiled.DenseBackward on copies after optimizer.begin_step(); returns (dx, db, w, count)."""
    w = w.copy()
    optimizer_params = {name: w}
    opt = optimizer(optimizer_params)
    opt.begin_step()
    dx = np.full(x.shape, np.nan, x.dtype)
    db = np.full(w.shape[1], np.nan, x.dtype)
    backward = tiled.DenseBackward(*w.shape, len(x), x.dtype, pool.workers)
    count = backward.run(pool, dx, db, x, dout, w, opt.tile_update(name, w))
    return dx, db, w, count, opt


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,I,O,live", [(1, 20, 9, 9), (5, 40, 30, 30), (6, 33, 40, 4), (3, 24, 12, 0)])
def test_dense_backward_with_sgd(rng, small_tiles, pool, dtype, N, I, O, live):
    x, dout, w, _ = backward_problem(rng, dtype, N, I, O, live, dead_rows=slice(8, 16))
    dx, db, w_new, count, _ = run_backward(pool, x, dout, w, lambda p: make_optimizer("sgd", p, lr=0.01))
    expected_dx, dw, expected_db = naive.dense_backward_masked(*(a.astype(np.float64) for a in (x, dout, w)))
    np.testing.assert_allclose(dx, expected_dx, **tolerance(dtype))
    np.testing.assert_allclose(db, expected_db, **tolerance(dtype))
    np.testing.assert_allclose(w_new, naive.sgd_update(w.astype(np.float64), dw, 0.01), **tolerance(dtype))
    assert count == (dout != 0).any(axis=1).sum()
    if live == 0:
        assert np.array_equal(w_new, w) and not dx.any()


OPTIMIZERS = {
    "sgd-decay": (lambda p: make_optimizer("sgd", p, lr=0.01, weight_decay=0.1),
                  lambda w, dw: naive.sgd_update(w, dw, 0.01, 0.1)),
    "momentum": (lambda p: make_optimizer("momentum", p, lr=0.01, momentum=0.9, weight_decay=0.1),
                 lambda w, dw: naive.momentum_update(w, np.zeros_like(w), dw, 0.01, 0.9, 0.1)[0]),
    "adam": (lambda p: make_optimizer("adam", p, lr=0.01, beta1=0.9, beta2=0.99, eps=1e-6, weight_decay=0.1),
             lambda w, dw: naive.adam_update(w, 0 * w, 0 * w, dw, 0.01, 0.9, 0.99, 1e-6, 0.1, 1)[0]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("N,I,O,live", [(5, 40, 30, 30), (6, 33, 40, 4), (3, 24, 12, 0)])
def test_dense_backward_with_every_optimizer(rng, small_tiles, pool, dtype, optimizer, N, I, O, live):
    """Optimizers that move weights with a zero gradient (decay, momentum) update every tile."""
    make, update = OPTIMIZERS[optimizer]
    x, dout, w, _ = backward_problem(rng, dtype, N, I, O, live, dead_rows=slice(8, 16))
    dx, db, w_new, _, _ = run_backward(pool, x, dout, w, make)
    expected_dx, dw, expected_db = naive.dense_backward_masked(*(a.astype(np.float64) for a in (x, dout, w)))
    np.testing.assert_allclose(dx, expected_dx, **tolerance(dtype))
    np.testing.assert_allclose(db, expected_db, **tolerance(dtype))
    np.testing.assert_allclose(w_new, update(w.astype(np.float64), dw), **tolerance(dtype))


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_one_and_two_workers_give_the_same_bits(rng, small_tiles, optimizer):
    x, dout, w, b = backward_problem(rng, np.float32, 7, 50, 45, 20, dead_images=(2, 5), dead_rows=slice(4, 12))
    results = []
    for workers in (1, 2):
        pool = tiled.TilePool(workers)
        out = np.empty((7, 45), np.float32)
        tiled.dense_forward(pool, out, x, w, b, True)
        dx, db, w_new, _, opt = run_backward(pool, x, dout, w, lambda p: make_optimizer(optimizer, p, lr=0.01))
        results.append([out, dx, db, w_new, *opt.state.values()])
        pool.close()
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


def test_buffers_too_small_are_refused(rng):
    backward = tiled.DenseBackward(10, 4, 2, np.float32, 1)
    x = relu_like(rng, (3, 10), np.float32)
    opt = make_optimizer("sgd", {"w": np.zeros((10, 4), np.float32)}, lr=0.1)
    with pytest.raises(ValueError, match="smaller than this batch"):
        backward.run(tiled.TilePool(1), np.empty_like(x), np.empty(4, np.float32), x, np.ones((3, 4), np.float32),
                     np.zeros((10, 4), np.float32), opt.tile_update("w", np.zeros((10, 4), np.float32)))


# ---- whole training steps in fresh processes: NUMBA_NUM_THREADS sets the pool's workers too

TRAIN_STEPS = """
import sys
import numpy as np
from cnnfruit.nn import dispatch
from cnnfruit.nn import tiled
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.nn.network import Network
from cnnfruit.nn.optimizers import make_optimizer
tiled.COLUMN_TILE, tiled.TILE_ROWS, tiled.GATHER_BELOW = 16, 8, float(sys.argv[3])  # many small tiles
dispatch.TILED_MIN_WORK, dispatch.TILED_SGD_MIN_BATCH, dispatch.BLAS_MIN_BATCH = 1, 1, 8  # all tiled
rng = np.random.default_rng(5)
arch = Architecture(image_size=12, kernels=3, kernel_size=3, hidden=(40, 9), classes=3)
net = Network(arch, init_parameters(arch, rng))
optimizer = make_optimizer(sys.argv[1], net.params, lr=1e-3)
x = (rng.random((24, 1, 12, 12)) * 255).astype(np.float32)
labels = rng.integers(0, 3, 24)
assert dispatch.dense_backward_path(12, 300, 40, optimizer) == "tiled"
for step in range(4):
    chunk = slice(12 * (step % 2), 12 * (step % 2 + 1))
    net.forward(x[chunk])
    net.loss(labels[chunk])
    net.backward_step(optimizer)
np.savez(sys.argv[2], **net.params, **{"state." + k: v for k, v in optimizer.state.items()})
"""


@pytest.mark.parametrize("gather_below", ["0", "1.01"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_training_steps_are_bit_identical_with_one_or_two_threads(tmp_path, optimizer, gather_below):
    results = []
    for threads in ("1", "2"):
        out = tmp_path / f"{threads}.npz"
        env = {**os.environ, "NUMBA_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": ROOT}
        subprocess.run([sys.executable, "-c", TRAIN_STEPS, optimizer, str(out), gather_below], env=env, check=True, cwd=ROOT)
        with np.load(out, allow_pickle=False) as saved:
            results.append({name: saved[name].tobytes() for name in saved.files})
    assert results[0] == results[1]


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_resume_through_the_tiled_path_equals_a_straight_run(tmp_path, image_folder, optimizer):
    """17 images in batches of 8: two steps an epoch go through tiled.DenseBackward (96 hidden
    units: 1568 x 96 x 8 multiply-adds, above dispatch.TILED_MIN_WORK), with the optimizer state."""
    from cnnfruit.nn import dispatch
    from helpers import assert_same_model, cli

    assert dispatch.dense_backward_path(8, 2 * 28 * 28, 96, make_optimizer(optimizer, {}, lr=1e-4)) == "tiled"
    flags = ["--hidden", "96", "--kernels", "2", "--kernel-size", "5", "-q", "--batch-size", "8",
             "--optimizer", optimizer, "--lr", "1e-4"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli("train", "--data", image_folder, *flags, "--epochs", 2, "--out", straight).exit_code == 0
    assert cli("train", "--data", image_folder, *flags, "--epochs", 1, "--out", split).exit_code == 0
    result = cli("train", "--resume", split / "model.npz", "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert_same_model(straight / "model.npz", split / "model.npz")
