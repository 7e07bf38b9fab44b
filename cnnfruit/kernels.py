"""The Numba kernels: every hot loop of a training step, arrays in, preallocated outputs written.

Shape letters, fixed for the whole package:
    N  images in a batch            C  input channels (1 grey, 3 rgb)
    H  image side (square images)   K  conv kernels     S  kernel side
    P  conv output side, H - S + 1  F  flattened features, K * P * P
    I  dense input width            O  dense output width   (M classes at the last layer)

Conventions (as in llm.c): outputs come first in a signature, gradients carry a `d` prefix, and
every `prange` runs over a dimension whose slice of the output one iteration owns alone, so no two
threads write the same element and no sum depends on how the work is split. Results are therefore
identical for any NUMBA_NUM_THREADS. Every kernel works for float32 and float64 (tests use both).
"""
import numba
import numpy as np

# Fast-math flags in one place. nnan/ninf are left out so that NaN and inf checks stay honest;
# reassoc lets LLVM vectorise reductions (the same order on every run, whatever the threads).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Dense layers split their output columns into blocks of this many, so that even a single image
# gives each thread several independent, cache-friendly pieces of work.
COLUMN_BLOCK = 64

njit_parallel = numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
njit_serial = numba.njit(cache=True, fastmath=FASTMATH)


# ----------------------------------------------------------------------------------------------
# convolution (valid, stride 1) fused with bias and ReLU


@njit_parallel
def conv_relu_forward(out, x, w, b):
    """out (N, K, P, P) = relu(conv(x (N, C, H, H), w (K, C, S, S)) + b (K,))."""
    N, C, H, _ = x.shape
    K, _, S, _ = w.shape
    P = H - S + 1
    for nk in numba.prange(N * K):
        n, k = nk // K, nk % K
        for i in range(P):
            for j in range(P):
                out[n, k, i, j] = b[k]
        for c in range(C):
            for p in range(S):
                for q in range(S):
                    weight = w[k, c, p, q]
                    for i in range(P):
                        for j in range(P):
                            out[n, k, i, j] += weight * x[n, c, i + p, j + q]
        for i in range(P):
            for j in range(P):
                if out[n, k, i, j] < 0:
                    out[n, k, i, j] = 0


@njit_parallel
def conv_backward(dw, db, x, dout):
    """Kernel and bias gradients of the conv layer; the input image needs no gradient.

    dout (N, K, P, P) is the gradient of the pre-activation (already ReLU-masked).
    dw[k, c, p, q] = sum over n, i, j of x[n, c, i+p, j+q] * dout[n, k, i, j];
    db[k] = sum over n, i, j of dout[n, k, i, j]. Parallel over k: each k owns dw[k] and db[k].
    """
    N, C, H, _ = x.shape
    K, _, S, _ = dw.shape
    P = H - S + 1
    zero = np.zeros(1, dw.dtype)[0]  # a zero of the array's own dtype: float32 sums stay float32
    for k in numba.prange(K):
        bias_sum = zero
        for n in range(N):
            for i in range(P):
                for j in range(P):
                    bias_sum += dout[n, k, i, j]
        db[k] = bias_sum
        for c in range(C):
            for p in range(S):
                for q in range(S):
                    acc = zero
                    for n in range(N):
                        for i in range(P):
                            for j in range(P):
                                acc += x[n, c, i + p, j + q] * dout[n, k, i, j]
                    dw[k, c, p, q] = acc


# ----------------------------------------------------------------------------------------------
# ReLU


@njit_parallel
def relu_backward(dpre, dact, act):
    """dpre = dact where the ReLU was active (act > 0), else 0; all (N, D).

    Writes a new array: the upstream gradient dact is left untouched.
    """
    N, D = act.shape
    for n in numba.prange(N):
        for d in range(D):
            dpre[n, d] = dact[n, d] if act[n, d] > 0 else 0


# ----------------------------------------------------------------------------------------------
# dense (fully connected) layer: out = x @ w + b with w stored (I, O)


@njit_parallel
def dense_forward(out, x, w, b, relu):
    """out (N, O) = x (N, I) @ w (I, O) + b (O,), then ReLU if relu.

    Inputs that are exactly zero (most ReLU outputs) are skipped: their row of w is never read.
    """
    N, I = x.shape
    O = w.shape[1]
    blocks = (O + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    for t in numba.prange(N * blocks):
        n, block = t // blocks, t % blocks
        j0 = block * COLUMN_BLOCK
        j1 = min(j0 + COLUMN_BLOCK, O)
        for j in range(j0, j1):
            out[n, j] = b[j]
        for i in range(I):
            xi = x[n, i]
            if xi != 0:
                for j in range(j0, j1):
                    out[n, j] += xi * w[i, j]
        if relu:
            for j in range(j0, j1):
                if out[n, j] < 0:
                    out[n, j] = 0


@njit_parallel
def dense_backward(dx, dw, db, x, dout, w):
    """Gradients of out = x @ w + b given dout (N, O).

    dx (N, I) = dout @ w.T, dw (I, O) = x.T @ dout, db (O,) = dout summed over N.
    Parallel over the input index i: each i owns dx[:, i] and dw[i, :].
    """
    N, I = x.shape
    O = w.shape[1]
    zero = np.zeros(1, dx.dtype)[0]
    for i in numba.prange(I):
        for n in range(N):
            acc = zero
            for j in range(O):
                acc += dout[n, j] * w[i, j]
            dx[n, i] = acc
        for j in range(O):
            dw[i, j] = 0
        for n in range(N):
            xi = x[n, i]
            if xi != 0:
                for j in range(O):
                    dw[i, j] += xi * dout[n, j]
    for j in range(O):
        db[j] = 0
    for n in range(N):
        for j in range(O):
            db[j] += dout[n, j]


# ----------------------------------------------------------------------------------------------
# softmax + cross-entropy


@njit_serial
def softmax_cross_entropy(probs, dlogits, losses, logits, labels):
    """Per-image loss, softmax probabilities and the gradient softmax - onehot; all (N, M) / (N,).

    Subtracts the row maximum first, so raw-pixel logits in the hundreds do not overflow, and
    takes the loss as logsumexp - logit[label], which never evaluates log(0).
    """
    N, M = logits.shape
    zero = np.zeros(1, probs.dtype)[0]
    for n in range(N):
        peak = logits[n, 0]
        for m in range(1, M):
            peak = max(peak, logits[n, m])
        total = zero
        for m in range(M):
            probs[n, m] = np.exp(logits[n, m] - peak)
            total += probs[n, m]
        for m in range(M):
            probs[n, m] /= total
            dlogits[n, m] = probs[n, m]
        dlogits[n, labels[n]] -= 1
        losses[n] = np.log(total) - (logits[n, labels[n]] - peak)


# ----------------------------------------------------------------------------------------------
# parameter updates (flat 1-D views of each parameter and its gradient)


@njit_parallel
def sgd_update(param, grad, lr):
    """param -= lr * grad."""
    for t in numba.prange(param.shape[0]):
        param[t] -= lr * grad[t]


@njit_parallel
def sgd_decay_update(param, grad, lr, weight_decay):
    """param -= lr * (grad + weight_decay * param): SGD on the loss plus weight_decay / 2 * ||param||^2."""
    for t in numba.prange(param.shape[0]):
        param[t] -= lr * (grad[t] + weight_decay * param[t])


@njit_parallel
def momentum_update(param, velocity, grad, lr, momentum, weight_decay):
    """Heavy-ball momentum, as PyTorch's SGD(momentum, dampening=0) writes it:

    g = grad + weight_decay * param;  velocity = momentum * velocity + g;  param -= lr * velocity.
    """
    for t in numba.prange(param.shape[0]):
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
