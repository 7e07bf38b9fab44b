"""Backprop against centred finite differences in float64: each layer, then the whole network."""
import numpy as np
import pytest

from cnnfruit.nn import kernels
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.config import INIT_SCHEMES
from cnnfruit.nn.gradcheck import relative_error
from cnnfruit.nn.network import Network

import naive

LIMIT = 1e-6


def conv_case(rng, N, C, H, K, S):
    """Random float64 conv inputs x, w, b, an upstream gradient, and f() = relu(conv(x)) computed
    into out by the kernel (run once here), for numerical_gradient to perturb x, w or b under."""
    P = H - S + 1
    x = rng.standard_normal((N, C, H, H))
    w, b = rng.standard_normal((K, C, S, S)), rng.standard_normal(K)
    upstream = rng.standard_normal((N, K, P, P))
    out = np.empty((N, K, P, P))

    def f():
        kernels.conv_relu_forward(out, x, w, b)
        return out.copy()

    f()
    return x, w, b, upstream, out, f


def test_conv_kernel_and_bias_gradient(rng):
    x, w, b, upstream, out, f = conv_case(rng, N=2, C=2, H=7, K=3, S=3)
    dpre = upstream * (out > 0)  # the ReLU mask, fused into the forward kernel
    dw, db = np.empty_like(w), np.empty_like(b)
    kernels.conv_backward_lanes(dw, db, x, dpre)
    assert relative_error(dw, naive.numerical_gradient(f, w, upstream)) < LIMIT
    assert relative_error(db, naive.numerical_gradient(f, b, upstream)) < LIMIT


def test_dense_gradients(rng):
    N, I, O = 3, 11, 7
    x, w, b = rng.standard_normal((N, I)), rng.standard_normal((I, O)), rng.standard_normal(O)
    upstream = rng.standard_normal((N, O))
    out = np.empty((N, O))

    def f():
        kernels.dense_forward(out, np.empty((kernels.ROW_CHUNKS, N, O)), x, w, b, False)
        return out.copy()

    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    kernels.dense_backward(dx, dw, db, x, upstream, w)
    for analytic, variable in ((dx, x), (dw, w), (db, b)):
        assert relative_error(analytic, naive.numerical_gradient(f, variable, upstream)) < LIMIT


def test_relu_gradient(rng):
    pre = rng.standard_normal((4, 9))
    upstream = rng.standard_normal((4, 9))
    dpre = np.empty_like(pre)
    kernels.relu_backward(dpre, upstream, np.maximum(pre, 0))
    numeric = naive.numerical_gradient(lambda: np.maximum(pre, 0), pre, upstream)
    assert relative_error(dpre, numeric) < LIMIT


def test_softmax_cross_entropy_gradient(rng):
    logits = rng.standard_normal((5, 3)) * 3
    labels = rng.integers(0, 3, 5)
    probs, dlogits, losses = np.empty_like(logits), np.empty_like(logits), np.empty(5)

    def f():
        kernels.softmax_cross_entropy(probs, np.empty_like(logits), losses, logits, labels)
        return losses.sum()

    kernels.softmax_cross_entropy(probs, dlogits, losses, logits, labels)
    assert relative_error(dlogits, naive.numerical_gradient(f, logits)) < LIMIT


@pytest.mark.parametrize(
    "arch",
    [
        Architecture(in_channels=1, image_size=8, kernels=3, kernel_size=3, hidden=(6, 4), classes=3),
        Architecture(in_channels=3, image_size=7, kernels=2, kernel_size=4, hidden=(5,), classes=4),
    ],
)
@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_whole_network_gradient(rng, arch, scheme):
    params = init_parameters(arch, rng, dtype=np.float64, scheme=scheme)
    for name in params:  # non-zero biases, so their gradients are exercised at a generic point
        if name.endswith("_b"):
            params[name][:] = rng.standard_normal(params[name].shape) * 0.1
    x = rng.standard_normal((3, arch.in_channels, arch.image_size, arch.image_size))
    labels = rng.integers(0, arch.classes, 3)
    network = Network(arch, params)
    network.forward(x)
    network.loss(labels)
    grads = network.backward()
    layers = len(arch.dense_widths)
    for name, param in params.items():
        numeric = naive.numerical_gradient(lambda: naive.network_loss(params, x, labels, layers), param)
        if scheme == "he-zero" and not name.startswith(f"dense{layers - 1}"):
            # Below a zero logit layer the loss does not depend on the parameter at all.
            assert not grads[name].any() and not numeric.any(), name
            continue
        assert np.abs(grads[name]).max() > 0, name
        assert relative_error(grads[name], numeric) < LIMIT, name


def test_conv_input_gradient(rng):
    """The saliency path's kernel: d(sum(upstream * relu(conv(x)))) / dx by finite differences."""
    x, w, b, upstream, out, f = conv_case(rng, N=2, C=3, H=7, K=4, S=3)
    dx = np.empty_like(x)
    kernels.conv_backward_input(dx, upstream * (out > 0), w)
    assert relative_error(dx, naive.numerical_gradient(f, x, upstream)) < LIMIT


def test_whole_network_input_gradient(rng):
    """Network.input_gradient of the summed loss against finite differences on the input pixels."""
    arch = Architecture(in_channels=3, image_size=8, kernels=3, kernel_size=3, hidden=(6,), classes=3)
    params = init_parameters(arch, rng, dtype=np.float64)
    x = rng.standard_normal((2, 3, 8, 8))
    labels = np.array([0, 2])
    network = Network(arch, params)
    network.forward(x)
    network.loss(labels)
    dx = network.input_gradient(network.dlogits.copy())
    numeric = naive.numerical_gradient(lambda: naive.network_loss(params, x, labels, 2), x)
    assert np.abs(dx).max() > 0
    assert relative_error(dx, numeric) < LIMIT
