"""Optimizers against plain-numpy references over a few steps, and their state save/restore."""
import numpy as np
import pytest

from cnnfruit.nn import kernels
from cnnfruit import checkpoint
from cnnfruit.config import OPTIMIZERS, TrainConfig
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.nn.optimizers import UPDATE_RULES, make_optimizer
from cnnfruit.training.loop import TrainingLoop

from helpers import TINY_SETTINGS

DTYPES = [np.float32, np.float64]
STEPS = 4


def reference_sgd(params, grads_per_step, lr, weight_decay, **_):
    params = {k: v.astype(np.float64) for k, v in params.items()}
    for grads in grads_per_step:
        for k in params:
            params[k] -= lr * (grads[k] + weight_decay * params[k])
    return params


def reference_momentum(params, grads_per_step, lr, weight_decay, momentum, **_):
    params = {k: v.astype(np.float64) for k, v in params.items()}
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    for grads in grads_per_step:
        for k in params:
            velocity[k] = momentum * velocity[k] + grads[k] + weight_decay * params[k]
            params[k] -= lr * velocity[k]
    return params


def reference_adam(params, grads_per_step, lr, weight_decay, beta1, beta2, eps, **_):
    params = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t, grads in enumerate(grads_per_step, start=1):
        for k in params:
            g = grads[k] + weight_decay * params[k]
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g**2
            m_hat, v_hat = m[k] / (1 - beta1**t), v[k] / (1 - beta2**t)
            params[k] -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


REFERENCES = {"sgd": reference_sgd, "momentum": reference_momentum, "adam": reference_adam}
SETTINGS = {"lr": 0.05, "momentum": 0.8, "beta1": 0.85, "beta2": 0.99, "eps": 1e-6}


def problem(rng, dtype):
    params = {"conv_w": rng.standard_normal((2, 1, 3, 3)).astype(dtype), "dense0_b": rng.standard_normal(7).astype(dtype)}
    grads = [{k: rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()} for _ in range(STEPS)]
    return params, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_optimizer_matches_reference(rng, name, weight_decay, dtype):
    params, grads_per_step = problem(rng, dtype)
    initial = {k: v.copy() for k, v in params.items()}
    expected = REFERENCES[name](params, grads_per_step, weight_decay=weight_decay, **SETTINGS)
    optimizer = make_optimizer(name, params, weight_decay=weight_decay, **SETTINGS)
    for grads in grads_per_step:
        optimizer.step(params, grads)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for k in params:
        assert params[k].dtype == dtype
        np.testing.assert_allclose(params[k], expected[k], **tol)
        assert not np.allclose(params[k], initial[k])


def test_adam_counts_steps_and_keeps_named_state(rng):
    params, grads_per_step = problem(rng, np.float64)
    optimizer = make_optimizer("adam", params, **SETTINGS)
    assert sorted(optimizer.state) == ["conv_w.m", "conv_w.v", "dense0_b.m", "dense0_b.v", "step"]
    for grads in grads_per_step:
        optimizer.step(params, grads)
    assert int(optimizer.state["step"]) == STEPS


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_restored_state_continues_exactly(rng, name):
    """Two steps, save the state, restore it into a fresh optimizer: the next steps are identical."""
    params, grads_per_step = problem(rng, np.float64)
    straight = make_optimizer(name, params, **SETTINGS)
    for grads in grads_per_step[:2]:
        straight.step(params, grads)
    saved_params = {k: v.copy() for k, v in params.items()}
    saved_state = {k: v.copy() for k, v in straight.state.items()}
    for grads in grads_per_step[2:]:
        straight.step(params, grads)

    resumed = make_optimizer(name, saved_params, **SETTINGS)
    resumed.load_state(saved_state)
    for grads in grads_per_step[2:]:
        resumed.step(saved_params, grads)
    for k in params:
        np.testing.assert_array_equal(saved_params[k], params[k])


def test_load_state_refuses_another_optimizers_state(rng):
    params, _ = problem(rng, np.float64)
    momentum = make_optimizer("momentum", params, **SETTINGS)
    adam = make_optimizer("adam", params, **SETTINGS)
    with pytest.raises(CnnfruitError, match="does not fit"):
        adam.load_state(momentum.state)


def test_only_plain_sgd_is_fusable(rng):
    params, _ = problem(rng, np.float64)
    assert make_optimizer("sgd", params, lr=0.1).fusable
    assert not make_optimizer("sgd", params, lr=0.1, weight_decay=0.01).fusable
    assert not make_optimizer("momentum", params, lr=0.1).fusable
    assert not make_optimizer("adam", params, lr=0.1).fusable


@pytest.mark.parametrize("settings, message", [
    ({"lr": 0.0}, "lr must be a positive number, got 0.0"),
    ({"weight_decay": -1.0}, "weight_decay must be zero or positive, got -1.0"),
    ({"beta1": 1.0}, "beta1 must be in [0, 1), got 1.0"), ({"eps": 0.0}, "eps must be a positive number, got 0.0"),
    ({"momentum": -0.1}, "momentum must be in [0, 1), got -0.1"),
])
def test_bad_optimizer_settings_are_refused_by_the_config(settings, message):
    with pytest.raises(SettingError) as caught:
        TrainConfig(optimizer="adam", **settings)
    assert str(caught.value) == message


def test_every_optimizer_the_config_offers_has_an_update_rule():
    assert set(UPDATE_RULES) == set(OPTIMIZERS)


@pytest.mark.parametrize("dtype", DTYPES)
def test_momentum_kernel_on_a_long_vector(rng, dtype):
    """Many more entries than threads: every chunk of the parallel loop is updated."""
    n = 10_001
    param, velocity, grad = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    expected_velocity = dtype(0.9) * velocity + grad
    expected = param - dtype(0.01) * expected_velocity
    kernels.momentum_update(param, velocity, grad, dtype(0.01), dtype(0.9), dtype(0.0))
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-14, "atol": 1e-14}
    np.testing.assert_allclose(velocity, expected_velocity, **tol)
    np.testing.assert_allclose(param, expected, **tol)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_checkpoint_carries_optimizer_state_back(synthetic_dataset, tmp_path, name):
    loop = TrainingLoop.start(synthetic_dataset, TrainConfig(optimizer=name, lr=1e-3, batch_size=8, **TINY_SETTINGS))
    loop.run_epoch()
    path = str(tmp_path / "model.npz")
    checkpoint.save(path, loop.checkpoint())
    loaded = checkpoint.load(path)
    assert loaded.optimizer == name
    restored = make_optimizer(name, loaded.params, lr=1e-3)
    restored.load_state(loaded.optimizer_state)
    assert set(restored.state) == set(loop.optimizer.state)
    for key, value in loop.optimizer.state.items():
        assert np.any(value != 0), key
        np.testing.assert_array_equal(restored.state[key], value)
