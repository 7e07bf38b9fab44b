"""Optimizer updates on flat 1-D views of a parameter and its gradient.

Each rule comes twice: a parallel kernel for a whole big parameter, and a tile kernel (serial,
GIL-free) for one row tile of a weight matrix, which tiled.py runs while the tile's gradient is
still in cache, and which also serves small parameters.
"""
import numpy as np

from cnnfruit.nn.kernels.jit import njit_parallel, njit_tile, numba, serial_twin


@njit_parallel
def sgd_update(param, grad, lr):
    """param -= lr * grad."""
    for t in numba.prange(param.shape[0]):
        param[t] -= lr * grad[t]


sgd_update_serial = serial_twin(sgd_update)


@njit_parallel
def sgd_decay_update(param, grad, lr, weight_decay):
    """param -= lr * (grad + weight_decay * param): SGD on the loss plus weight_decay / 2 * ||param||^2."""
    for t in numba.prange(param.shape[0]):
        param[t] -= lr * (grad[t] + weight_decay * param[t])


@njit_tile
def sgd_tile(param, grad, lr, weight_decay):
    """param -= lr * (grad + weight_decay * param), on 1-D views of one tile."""
    for t in range(param.shape[0]):
        param[t] -= lr * (grad[t] + weight_decay * param[t])


@njit_tile
def sgd_gathered_tile(w, g, rows, cols, ncols, lr):
    """w[rows[r], cols[t]] -= lr * g[r, t] for t < ncols: plain SGD on the live block of a tile."""
    for r in range(rows.shape[0]):
        i = rows[r]
        for t in range(ncols):
            w[i, cols[t]] -= lr * g[r, t]


@njit_parallel
def momentum_update(param, velocity, grad, lr, momentum, weight_decay):
    """Heavy-ball momentum, as PyTorch's SGD(momentum, dampening=0) writes it:

    g = grad + weight_decay * param;  velocity = momentum * velocity + g;  param -= lr * velocity.
    """
    for t in numba.prange(param.shape[0]):
        g = grad[t] + weight_decay * param[t]
        velocity[t] = momentum * velocity[t] + g
        param[t] -= lr * velocity[t]


@njit_tile
def momentum_tile(param, velocity, grad, lr, momentum, weight_decay):
    """momentum_update on one tile (1-D views): one read and one write of each array."""
    for t in range(param.shape[0]):
        g = grad[t] + weight_decay * param[t]
        velocity[t] = momentum * velocity[t] + g
        param[t] -= lr * velocity[t]


@njit_parallel
def adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, correction1, correction2):
    """Adam (Kingma and Ba) with L2 weight decay added to the gradient, as torch.optim.Adam does.

    m and v are the running first and second moments; correction1 = 1 - beta1**step and
    correction2 = 1 - beta2**step undo their bias towards zero in the first steps.
    """
    for t in numba.prange(param.shape[0]):
        g = grad[t] + weight_decay * param[t]
        m[t] = beta1 * m[t] + (1 - beta1) * g
        v[t] = beta2 * v[t] + (1 - beta2) * g * g
        m_hat = m[t] / correction1
        v_hat = v[t] / correction2
        param[t] -= lr * m_hat / (np.sqrt(v_hat) + eps)


@njit_tile
def adam_tile(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, correction1, correction2):
    """Adam as adam_update, on one tile (1-D views): one read and one write of each array.

    Written as torch.optim.Adam does it, param -= (lr / correction1) * m / (sqrt(v) /
    sqrt(correction2) + eps), with every constant in the arrays' own dtype: a bare `1 - beta1`
    would be float64 in Numba, and float64 arithmetic in the loop. It may differ from
    adam_update in the last bit.
    """
    one = np.ones(1, param.dtype)[0]
    keep1, keep2 = one - beta1, one - beta2
    step_size = lr / correction1
    root2 = np.sqrt(correction2)
    for t in range(param.shape[0]):
        g = grad[t] + weight_decay * param[t]
        m[t] = beta1 * m[t] + keep1 * g
        v[t] = beta2 * v[t] + keep2 * g * g
        param[t] -= step_size * m[t] / (np.sqrt(v[t]) / root2 + eps)
