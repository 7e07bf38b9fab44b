"""Backprop checked against centred finite differences, in float64, for any architecture.

The report derives every gradient by hand; this checks the derivation as the code runs it:
Network.backward against (L(p + eps) - L(p - eps)) / (2 eps) of the summed loss, computed by
Network's own forward pass. Both sides use the same kernels, so what it checks is the backward
arithmetic, not the forward one (tests/test_kernels.py holds the forward kernels to numpy).
"""
from dataclasses import dataclass

import numpy as np

from cnnfruit.nn import memory
from cnnfruit.nn.architecture import init_parameters
from cnnfruit.nn.network import Network
from cnnfruit.threads import compute_lock


@dataclass
class ParameterCheck:
    name: str
    shape: tuple
    checked: int  # entries compared (all of them, or a random sample of a large parameter)
    relative_error: float
    max_abs_difference: float


def relative_error(a, b):
    """||a - b|| / (||a|| + ||b||) over a whole array (0 when both are zero).

    A norm-based ratio rather than a per-entry one: entries that are zero up to rounding (behind a
    ReLU, say) would turn rounding noise into large per-entry ratios.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


def check_gradients(arch, seed=0, images=2, max_entries=300, eps=1e-6, dropout=0.0, class_weights=None,
                    label_smoothing=0.0):
    """Compare backprop and finite differences for every parameter of a random float64 network.

    Inputs and labels are random (standard normal pixels), biases small and non-zero so that
    every gradient is exercised at a generic point. Parameters with more than max_entries
    entries are checked on a random sample of them. The training options apply as in training:
    dropout at that rate (the same masks at every evaluation), class_weights (M numbers) and
    label_smoothing in the loss. Returns a list of ParameterCheck.
    """
    memory.check_gradient_check(arch, images)  # float64 weights, gradients and their copy, before numpy's MemoryError
    with compute_lock():  # one unit of work (threads.py): its kernels never run beside another thread's
        return _check_gradients(arch, seed, images, max_entries, eps, dropout, class_weights, label_smoothing)


def _check_gradients(arch, seed, images, max_entries, eps, dropout, class_weights, label_smoothing):
    rng = np.random.default_rng(seed)
    # he whatever the training default: under a zero logit layer (he-zero) every gradient below it
    # is zero, and comparing zeros with zeros would check nothing.
    params = init_parameters(arch, rng, dtype=np.float64, scheme="he")
    for name, value in params.items():
        if name.endswith("_b"):
            value[:] = 0.1 * rng.standard_normal(value.shape)
    x = rng.standard_normal((images, arch.in_channels, arch.image_size, arch.image_size))
    labels = rng.integers(0, arch.classes, images)
    network = Network(arch, params)
    network.dropout = dropout
    weights = None if class_weights is None else np.asarray(class_weights, dtype=np.float64)

    def summed_loss():
        network.forward(x, np.random.default_rng(seed) if dropout else None)
        return float(network.loss(labels, weights, label_smoothing).sum())

    summed_loss()
    analytic = {name: grad.copy() for name, grad in network.backward().items()}
    results = []
    for name, value in params.items():
        flat = value.reshape(-1)
        if flat.size > max_entries:
            entries = np.sort(rng.choice(flat.size, max_entries, replace=False))
        else:
            entries = np.arange(flat.size)
        numeric = np.empty(len(entries))
        for slot, t in enumerate(entries):
            saved = flat[t]
            flat[t] = saved + eps
            plus = summed_loss()
            flat[t] = saved - eps
            minus = summed_loss()
            flat[t] = saved
            numeric[slot] = (plus - minus) / (2 * eps)
        backprop = analytic[name].reshape(-1)[entries]
        results.append(ParameterCheck(
            name, value.shape, len(entries), relative_error(backprop, numeric),
            float(np.abs(backprop - numeric).max()),
        ))
    return results
