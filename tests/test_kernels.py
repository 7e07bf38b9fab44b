"""Every kernel against its plain-numpy reference in tests/naive.py, on small random shapes."""
import numpy as np
import pytest

from cnnfruit.nn import kernels

import naive
from helpers import relu_like

DTYPES = [np.float32, np.float64]
# (N, C, H, K, S): batch, channels, image side, kernels, kernel side; includes non-default sizes.
CONV_SHAPES = [(1, 1, 8, 2, 3), (3, 1, 10, 4, 4), (2, 3, 9, 3, 2), (2, 2, 7, 5, 7), (1, 1, 6, 1, 1)]
DENSE_SHAPES = [(1, 5, 3), (4, 130, 70), (3, 64, 129), (7, 1, 2)]


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-10}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C,H,K,S", CONV_SHAPES)
def test_conv_relu_forward(rng, dtype, N, C, H, K, S):
    x = (rng.standard_normal((N, C, H, H)) * 100).astype(dtype)
    w = rng.standard_normal((K, C, S, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) * 50
    out = np.empty((N, K, H - S + 1, H - S + 1), dtype)
    kernels.conv_relu_forward(out, x, w, b)
    expected = naive.conv_relu_forward(x, w, b)
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-3)
    assert (out == 0).any() and (out > 0).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C,H,K,S", CONV_SHAPES)
def test_conv_backward_input(rng, dtype, N, C, H, K, S):
    P = H - S + 1
    dout = relu_like(rng, (N, K, P, P), dtype)
    w = rng.standard_normal((K, C, S, S)).astype(dtype)
    dx = np.full((N, C, H, H), np.nan, dtype)  # every entry must be written, borders included
    kernels.conv_backward_input(dx, dout, w)
    np.testing.assert_allclose(dx, naive.conv_backward_input(dout, w, H), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_keeps_upstream(rng, dtype):
    act = relu_like(rng, (3, 17), dtype)
    dact = rng.standard_normal((3, 17)).astype(dtype)
    before = dact.copy()
    dpre = np.empty_like(dact)
    kernels.relu_backward(dpre, dact, act)
    np.testing.assert_array_equal(dpre, naive.relu_backward(dact, act))
    np.testing.assert_array_equal(dact, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("N,I,O", DENSE_SHAPES)
def test_dense_forward(rng, dtype, relu, N, I, O):
    x = relu_like(rng, (N, I), dtype)
    w = rng.standard_normal((I, O)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    out = np.empty((N, O), dtype)
    kernels.dense_forward(out, np.empty((kernels.ROW_CHUNKS, N, O), dtype), x, w, b, relu)
    np.testing.assert_allclose(out, naive.dense_forward(x, w, b, relu), **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,I,O", DENSE_SHAPES)
def test_dense_backward(rng, dtype, N, I, O):
    x = relu_like(rng, (N, I), dtype)
    w = rng.standard_normal((I, O)).astype(dtype)
    dout = rng.standard_normal((N, O)).astype(dtype)
    dx, dw, db = np.empty((N, I), dtype), np.empty((I, O), dtype), np.empty(O, dtype)
    kernels.dense_backward(dx, dw, db, x, dout, w)
    for got, expected in zip((dx, dw, db), naive.dense_backward(x, dout, w)):
        np.testing.assert_allclose(got, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 500.0])
def test_softmax_cross_entropy(rng, dtype, scale):
    logits = (rng.standard_normal((6, 4)) * scale).astype(dtype)
    labels = rng.integers(0, 4, 6)
    probs, dlogits, losses = np.empty_like(logits), np.empty_like(logits), np.empty(6, dtype)
    kernels.softmax_cross_entropy(probs, dlogits, losses, logits, labels)
    expected_probs, expected_losses, expected_dlogits = naive.softmax_cross_entropy(logits.astype(np.float64), labels)
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(probs, expected_probs, **tolerance(dtype))
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)
    np.testing.assert_allclose(dlogits, expected_dlogits, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update(rng, dtype):
    param = rng.standard_normal(1000).astype(dtype)
    grad = rng.standard_normal(1000).astype(dtype)
    expected = param - dtype(0.01) * grad
    kernels.sgd_update(param, grad, dtype(0.01))
    np.testing.assert_allclose(param, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturated_softmax_gives_exact_zeros_not_subnormals(dtype):
    logits = np.array([[0.0, -95.0, -200.0], [30.0, 0.0, -80.0]], dtype=dtype)
    labels = np.array([0, 0])
    probs, dlogits, losses = np.empty_like(logits), np.empty_like(logits), np.empty(2, dtype)
    kernels.softmax_cross_entropy(probs, dlogits, losses, logits, labels)
    tiny = np.finfo(dtype).tiny
    assert not ((dlogits != 0) & (np.abs(dlogits) < 1e-30)).any()
    assert probs[0, 1] == 0 and probs[0, 2] == 0 and probs[1, 2] == 0
    assert probs[1, 1] == pytest.approx(np.exp(-30.0), rel=1e-5)  # above the floor: kept
    assert not ((np.abs(probs) > 0) & (np.abs(probs) < tiny)).any()
    np.testing.assert_allclose(losses, naive.softmax_cross_entropy(logits.astype(np.float64), labels)[1], atol=1e-6)
