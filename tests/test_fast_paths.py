"""The fast paths against the plain ones: the fused dense backward + SGD, and the thread count."""
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnfruit.nn import kernels
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.nn.network import Network

import naive
from helpers import relu_like

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fused(x, dout, w, b, lr):
    """Runs kernels.dense_backward_sgd on copies; returns (dx, w, b)."""
    w, b = w.copy(), b.copy()
    dx = np.full(x.shape, np.nan, x.dtype)  # every entry must be written
    scratch = np.empty((-(-x.shape[1] // kernels.ROW_BLOCK), w.shape[1]), x.dtype)
    cols = np.empty(w.shape[1], np.int64)
    live = np.empty(x.shape[0], np.int64)
    kernels.dense_backward_sgd(dx, w, b, scratch, cols, live, x, dout, x.dtype.type(lr))
    return dx, w, b


def sparse_dout(rng, N, O, live, dtype):
    """dout (N, O) with only `live` non-zero columns, as behind dead ReLU units."""
    dout = np.zeros((N, O), dtype)
    columns = rng.choice(O, size=live, replace=False)
    dout[:, columns] = rng.standard_normal((N, live))
    return dout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,I,O", [(1, 70, 9), (3, 100, 40), (5, 33, 130), (9, 65, 17)])
@pytest.mark.parametrize("live", ["all", "few", "none"])
def test_fused_dense_backward_sgd_matches_the_unfused_math(rng, dtype, N, I, O, live):
    x = relu_like(rng, (N, I), dtype)
    w, b = rng.standard_normal((I, O)).astype(dtype), rng.standard_normal(O).astype(dtype)
    count = {"all": O, "few": max(1, O // 10), "none": 0}[live]
    dout = sparse_dout(rng, N, O, count, dtype)
    if N > 1:
        dout[1] = 0  # an image the softmax is already sure of: it adds nothing
    lr = 0.01
    dx, w_new, b_new = fused(x, dout, w, b, lr)
    wide = [a.astype(np.float64) for a in (x, dout, w, b)]
    expected = naive.dense_backward_sgd(*wide, lr)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for got, want in zip((dx, w_new, b_new), expected):
        np.testing.assert_allclose(got, want, **tol)
    assert np.array_equal(dx == 0, (x == 0) | (dout == 0).all(axis=1, keepdims=True))
    if count == 0:
        assert np.array_equal(w_new, w) and np.array_equal(b_new, b)


@pytest.mark.parametrize("N", [1, 4])
def test_fused_update_is_bit_identical_to_backward_then_sgd(rng, N):
    """Same order of operations as dense_backward + relu_backward + sgd_update: same bits."""
    I, O = 90, 50
    x = relu_like(rng, (N, I), np.float32)
    w, b = rng.standard_normal((I, O)).astype(np.float32), rng.standard_normal(O).astype(np.float32)
    dout = rng.standard_normal((N, O)).astype(np.float32)
    lr = np.float32(1e-3)
    dx, w_new, b_new = fused(x, dout, w, b, lr)
    dx_plain, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    kernels.dense_backward(dx_plain, dw, db, x, dout, w)
    dx_masked = np.empty_like(x)
    kernels.relu_backward(dx_masked, dx_plain, x)
    w_plain, b_plain = w.copy(), b.copy()
    kernels.sgd_update(w_plain.reshape(-1), dw.reshape(-1), lr)
    kernels.sgd_update(b_plain, db, lr)
    assert np.array_equal(w_new, w_plain)
    assert np.array_equal(b_new, b_plain)
    np.testing.assert_allclose(dx, dx_masked, rtol=1e-5, atol=1e-5)


TRAIN_A_FEW_STEPS = """
import sys
import numpy as np
import cnnfruit
data = cnnfruit.load_embedded()
small = cnnfruit.Dataset(data.name, data.class_names, data.train.subset(np.arange(40)), data.test.subset(np.arange(4)))
config = cnnfruit.TrainConfig(lr=1e-6, epochs=1, batch_size=int(sys.argv[1]), kernels=4, hidden=(48, 12), seed=3,
                              val_fraction=0)
np.savez(sys.argv[2], **cnnfruit.fit(small, config).classifier.params)
"""


@pytest.mark.parametrize("batch", [1, 16])
def test_training_is_bit_identical_with_one_or_two_threads(tmp_path, batch):
    results = []
    for threads in ("1", "2"):
        out = tmp_path / f"params-{threads}.npz"
        env = {**os.environ, "NUMBA_NUM_THREADS": threads, "PYTHONPATH": ROOT}
        subprocess.run([sys.executable, "-c", TRAIN_A_FEW_STEPS, str(batch), str(out)], env=env, check=True, cwd=ROOT)
        with np.load(out, allow_pickle=False) as saved:
            results.append({name: saved[name] for name in saved.files})
    assert results[0].keys() == results[1].keys()
    for name in results[0]:
        assert np.array_equal(results[0][name], results[1][name]), name


def test_blas_and_kernel_dense_paths_agree(rng, monkeypatch):
    from cnnfruit.nn import dispatch

    arch = Architecture(in_channels=1, image_size=9, kernels=3, kernel_size=3, hidden=(20, 6), classes=3)
    params = init_parameters(arch, rng)
    x = (rng.random((10, 1, 9, 9)) * 255).astype(np.float32)
    labels = rng.integers(0, 3, 10)
    results = []
    for threshold in (1, 10_000):  # every product through BLAS, then none
        monkeypatch.setattr(dispatch, "BLAS_MIN_BATCH", threshold)
        net = Network(arch, {k: v.copy() for k, v in params.items()})
        logits = net.forward(x).copy()
        net.loss(labels)
        results.append((logits, {k: v.copy() for k, v in net.backward().items()}))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-3)
    for name in params:
        np.testing.assert_allclose(results[0][1][name], results[1][1][name], rtol=1e-4, atol=1e-3, err_msg=name)


def _twin_cases(rng):
    """(parallel kernel, serial twin, output arrays, input arrays) on small random data."""
    f32 = np.float32
    x4 = rng.standard_normal((3, 2, 9, 9)).astype(f32)
    w4 = rng.standard_normal((4, 2, 3, 3)).astype(f32)
    b4 = rng.standard_normal(4).astype(f32)
    dconv = np.maximum(rng.standard_normal((3, 4, 7, 7)), 0).astype(f32)
    act = np.maximum(rng.standard_normal((3, 70)), 0).astype(f32)
    dact = rng.standard_normal((3, 70)).astype(f32)
    w2 = rng.standard_normal((70, 40)).astype(f32)
    b2 = rng.standard_normal(40).astype(f32)
    dout = rng.standard_normal((3, 40)).astype(f32)
    partial = np.zeros((kernels.ROW_CHUNKS, 3, 40), f32)
    scratch = np.zeros((-(-70 // kernels.ROW_BLOCK), 40), f32)
    return [
        (kernels.conv_relu_forward, kernels.conv_relu_forward_serial, [np.empty((3, 4, 7, 7), f32)], [x4, w4, b4]),
        (kernels.conv_backward_lanes, kernels.conv_backward_lanes_serial, [np.empty_like(w4), np.empty_like(b4)],
         [x4, dconv]),
        (kernels.relu_backward, kernels.relu_backward_serial, [np.empty_like(dact)], [dact, act]),
        (kernels.dense_forward, kernels.dense_forward_serial, [np.empty((3, 40), f32), partial], [act, w2, b2, True]),
        (kernels.dense_backward, kernels.dense_backward_serial,
         [np.empty_like(act), np.empty_like(w2), np.empty_like(b2)], [act, dout, w2]),
        (kernels.dense_backward_sgd, kernels.dense_backward_sgd_serial,
         [np.empty_like(act), w2.copy(), b2.copy(), scratch, np.zeros(40, np.int64), np.zeros(3, np.int64)],
         [act, dout, f32(1e-3)]),
        (kernels.sgd_update, kernels.sgd_update_serial, [w2.reshape(-1)[:120].copy()], [dout.reshape(-1), f32(0.1)]),
        (kernels.conv_backward_input, kernels.conv_backward_input_serial, [np.empty_like(x4)], [dconv, w4]),
    ]


def test_serial_twins_match_their_parallel_kernels_bit_for_bit(rng):
    """Small work runs on one thread (dispatch.sized); it must give exactly what the threads give."""
    for parallel, serial, outputs, inputs in _twin_cases(rng):
        copies = [o.copy() for o in outputs]
        parallel(*outputs, *inputs)
        serial(*copies, *inputs)
        for a, b in zip(outputs, copies):
            assert np.array_equal(a, b), parallel.py_func.__name__


def test_sized_picks_the_serial_twin_for_small_work():
    from cnnfruit.nn.dispatch import PARALLEL_MIN_WORK, sized

    assert sized(kernels.dense_forward, PARALLEL_MIN_WORK) is kernels.dense_forward
    assert sized(kernels.dense_forward, PARALLEL_MIN_WORK - 1) is kernels.dense_forward_serial


def test_a_kernel_without_a_twin_is_an_error_not_a_fall_back():
    from cnnfruit.nn.dispatch import sized

    with pytest.raises(KeyError):
        sized(kernels.adam_update, 10)


def test_every_twin_the_dispatcher_knows_is_tested_against_its_kernel(rng):
    from cnnfruit.nn.dispatch import SERIAL_TWINS

    tested = {parallel: serial for parallel, serial, _, _ in _twin_cases(rng)}
    assert tested == SERIAL_TWINS


def test_nonzero_columns_of_a_matrix_and_of_its_transpose():
    dout = np.zeros((4, 5), np.float32)
    dout[1, 3] = 2.0
    dout[3, 0] = -1.0
    index = np.full(5, -1, np.int64)
    assert kernels.nonzero_columns(index, dout.T) == 2 and index[:2].tolist() == [1, 3]
    assert kernels.nonzero_columns(index, dout) == 2 and index[:2].tolist() == [0, 3]
