"""kernels.conv_backward_lanes against tests/naive.py, and its serial twin bit for bit."""
import numpy as np
import pytest

from cnnfruit.nn import dispatch
from cnnfruit.nn import kernels

import naive
from helpers import relu_like

# (N, C, H, K, S), as in test_kernels.py
CONV_SHAPES = [(1, 1, 8, 2, 3), (3, 1, 10, 4, 4), (2, 3, 9, 3, 2), (2, 2, 7, 5, 7), (1, 1, 6, 1, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,H,K,S", CONV_SHAPES)
def test_conv_backward_lanes(rng, dtype, N, C, H, K, S):
    P = H - S + 1
    x = rng.standard_normal((N, C, H, H)).astype(dtype)
    dout = relu_like(rng, (N, K, P, P), dtype)
    dout[0, :, P // 2] = 0  # a row with no gradient, skipped
    if N > 1:
        dout[1] = 0  # an image with no gradient
    dw, db = np.full((K, C, S, S), np.nan, dtype), np.full(K, np.nan, dtype)
    kernels.conv_backward_lanes(dw, db, x, dout)
    expected_dw, expected_db = naive.conv_backward(x.astype(np.float64), dout, S)
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-10}
    np.testing.assert_allclose(dw, expected_dw, **tol)
    np.testing.assert_allclose(db, expected_db, **tol)


def test_conv_backward_lanes_twin_gives_the_same_bits(rng):
    x = (rng.random((5, 2, 12, 12)) * 255).astype(np.float32)
    dout = relu_like(rng, (5, 3, 9, 9), np.float32)
    results = []
    for kernel in (kernels.conv_backward_lanes, kernels.conv_backward_lanes_serial):
        dw, db = np.empty((3, 2, 4, 4), np.float32), np.empty(3, np.float32)
        kernel(dw, db, x, dout)
        results.append(dw.tobytes() + db.tobytes())
    assert results[0] == results[1]


def test_dispatch_routes_the_conv_backward_to_the_lanes():
    assert dispatch.SERIAL_TWINS[kernels.conv_backward_lanes] is kernels.conv_backward_lanes_serial
