"""The new training objectives and regularisers against plain numpy and finite differences.

Class-weighted, label-smoothed softmax cross-entropy and inverted dropout: each kernel against
its reference in tests/naive.py (float32 and float64), its gradient against centred differences
in float64, and the whole network's gradients with all of them at once.
"""
import numpy as np
import pytest

from cnnfruit.nn import dispatch
from cnnfruit.nn import kernels
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.nn.gradcheck import relative_error
from cnnfruit.nn.network import Network
from cnnfruit.nn.optimizers import make_optimizer

import naive

LIMIT = 1e-6
CASES = [  # (class weights, label smoothing)
    ((1.0, 1.0, 1.0, 1.0), 0.0),
    ((0.5, 2.0, 1.0, 3.0), 0.0),
    ((1.0, 1.0, 1.0, 1.0), 0.1),
    ((0.7, 1.3, 2.0, 0.4), 0.25),
]


def weighted_loss(logits, labels, weights, smoothing):
    """The kernel through dispatch, on fresh outputs: (probs, losses, dlogits)."""
    probs, dlogits, losses = np.empty_like(logits), np.empty_like(logits), np.empty(len(logits), logits.dtype)
    dispatch.weighted_softmax_cross_entropy(probs, dlogits, losses, logits, labels,
                                            np.asarray(weights, logits.dtype), smoothing)
    return probs, losses, dlogits


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weights, smoothing", CASES)
def test_weighted_smoothed_cross_entropy_matches_numpy(rng, dtype, weights, smoothing):
    logits = (rng.standard_normal((6, 4)) * 5).astype(dtype)
    labels = rng.integers(0, 4, 6)
    got = weighted_loss(logits, labels, weights, smoothing)
    want = naive.weighted_softmax_cross_entropy(logits.astype(np.float64), labels, weights, smoothing)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    for a, b, name in zip(got, want, ("probs", "losses", "dlogits")):
        np.testing.assert_allclose(a, b, err_msg=name, **tol)


@pytest.mark.parametrize("weights, smoothing", CASES)
def test_weighted_smoothed_cross_entropy_gradient(rng, weights, smoothing):
    logits = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, 5)
    _, _, dlogits = weighted_loss(logits, labels, weights, smoothing)
    numeric = naive.numerical_gradient(lambda: weighted_loss(logits, labels, weights, smoothing)[1].sum(), logits)
    assert np.abs(dlogits).max() > 0
    assert relative_error(dlogits, numeric) < LIMIT


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_with_unit_weights_and_no_smoothing_it_is_the_plain_kernel(rng, dtype):
    """The same probabilities and gradient bit for bit; the loss sums its target terms in another
    order under fast-math, so it may differ in the last bit (training never uses this kernel for
    unweighted, unsmoothed runs)."""
    logits = (rng.standard_normal((7, 3)) * 40).astype(dtype)  # some probabilities below the floor
    labels = rng.integers(0, 3, 7)
    plain = [np.empty_like(logits), np.empty_like(logits), np.empty(7, dtype)]
    kernels.softmax_cross_entropy(*plain, logits, labels)
    probs, losses, dlogits = weighted_loss(logits, labels, (1, 1, 1), 0.0)
    assert np.array_equal(probs, plain[0]) and np.array_equal(dlogits, plain[1])
    np.testing.assert_allclose(losses, plain[2], rtol=4 * np.finfo(dtype).eps)


def test_class_weights_scale_each_image_and_smoothing_bounds_the_loss_below(rng):
    logits = np.array([[30.0, 0.0, 0.0], [0.0, 30.0, 0.0]])  # confident and right
    labels = np.array([0, 1])
    _, losses, dlogits = weighted_loss(logits, labels, (2.0, 0.5, 1.0), 0.0)
    _, unit, unit_d = weighted_loss(logits, labels, (1.0, 1.0, 1.0), 0.0)
    np.testing.assert_allclose(losses, unit * [2.0, 0.5])
    np.testing.assert_allclose(dlogits, unit_d * [[2.0], [0.5]])
    _, smoothed, smoothed_d = weighted_loss(logits, labels, (1.0, 1.0, 1.0), 0.3)
    assert (smoothed > 0.3).all()  # smoothed, a confident right answer costs something,
    assert (smoothed_d[[0, 1], [0, 1]] > 0).all()  # and descent lowers the label's logit
    assert (smoothed_d[:, 2] < 0).all()  # and raises the others'


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
def test_dropout_forward_matches_numpy(rng, dtype, rate):
    act = np.maximum(rng.standard_normal((5, 37)), 0).astype(dtype)
    draws = rng.random((5, 37))
    want = naive.dropout_forward(act.astype(np.float64), draws, rate)
    got = act.copy()
    dispatch.dropout_forward(got, draws, rate)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-15)
    assert np.array_equal(got == 0, (act == 0) | (draws < rate))
    if rate == 0:
        assert np.array_equal(got, act)


def test_dropout_keeps_the_expected_output(rng):
    act = np.ones((200, 500))
    dispatch.dropout_forward(act, rng.random(act.shape), 0.3)
    assert abs((act == 0).mean() - 0.3) < 0.01
    assert abs(act.mean() - 1) < 0.01


def dropout_draws(arch, seed, images):
    """The draws a network with these hidden layers takes from default_rng(seed), layer by layer."""
    rng = np.random.default_rng(seed)
    return [rng.random((images, width)) for _, width in arch.dense_widths[:-1]]


@pytest.mark.parametrize("arch", [
    Architecture(in_channels=1, image_size=8, kernels=3, kernel_size=3, hidden=(9, 6), classes=4),
    Architecture(in_channels=3, image_size=7, kernels=2, kernel_size=4, hidden=(10,), classes=4),
])
@pytest.mark.parametrize("rate, weights, smoothing", [
    (0.3, None, 0.0),
    (0.0, (0.5, 2.0, 1.0, 3.0), 0.1),
    (0.4, (0.5, 2.0, 1.0, 3.0), 0.1),
])
def test_whole_network_gradient_with_dropout_weights_and_smoothing(rng, arch, rate, weights, smoothing):
    params = init_parameters(arch, rng, dtype=np.float64)
    for name in params:
        if name.endswith("_b"):
            params[name][:] = rng.standard_normal(params[name].shape) * 0.1
    x = rng.standard_normal((3, arch.in_channels, arch.image_size, arch.image_size))
    labels = rng.integers(0, arch.classes, 3)
    network = Network(arch, params)
    network.dropout = rate
    class_weights = None if weights is None else np.array(weights)
    network.forward(x, np.random.default_rng(7))
    network.loss(labels, class_weights, smoothing)
    grads = network.backward()
    draws = dropout_draws(arch, 7, len(x))
    layers = len(arch.dense_widths)
    for name, param in params.items():
        numeric = naive.numerical_gradient(
            lambda: naive.network_loss_trained(params, x, labels, layers, draws, rate, class_weights, smoothing), param)
        assert np.abs(grads[name]).max() > 0, name
        assert relative_error(grads[name], numeric) < LIMIT, name


@pytest.mark.parametrize("optimizer, path", [("sgd", "fused_sgd"), ("sgd", "tiled"), ("sgd", "plain"),
                                             ("adam", "tiled"), ("adam", "plain")])
def test_every_fused_backward_step_handles_dropout_as_backward_then_step(rng, monkeypatch, optimizer, path):
    """Network.backward_step, on each of dispatch's paths for the dense layers, against
    Network.backward followed by the optimizer's step, with half the hidden units dropped."""
    arch = Architecture(in_channels=1, image_size=9, kernels=3, kernel_size=3, hidden=(20, 6), classes=3)
    params = init_parameters(arch, rng, dtype=np.float64)
    x = rng.random((4, 1, 9, 9))
    labels = rng.integers(0, 3, 4)
    monkeypatch.setattr(dispatch, "dense_backward_path", lambda *shape_and_optimizer: path)
    updated = []
    for fused in (False, True):
        network = Network(arch, {k: v.copy() for k, v in params.items()})
        network.dropout = 0.5
        rule = make_optimizer(optimizer, network.params, lr=1e-2)
        network.forward(x, np.random.default_rng(3))
        network.loss(labels)
        if fused:
            network.backward_step(rule)
        else:
            rule.step(network.params, network.backward())
        updated.append(network.params)
    for name in params:
        assert not np.array_equal(updated[0][name], params[name]), name
        np.testing.assert_allclose(updated[1][name], updated[0][name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_dropout_acts_only_with_a_generator_so_evaluation_never_drops(rng):
    arch = Architecture(in_channels=1, image_size=8, kernels=2, kernel_size=3, hidden=(12,), classes=3)
    network = Network(arch, init_parameters(arch, rng))
    x = rng.random((5, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 5)
    before = network.predict_proba(x), network.evaluate(x, labels)[0]
    network.dropout = 0.5
    assert np.array_equal(network.predict_proba(x), before[0]) and network.evaluate(x, labels)[0] == before[1]
    trained = network.forward(x, np.random.default_rng(0)).copy()
    assert not np.array_equal(trained, network.forward(x))
