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
import types

import numba
import numpy as np

# Fast-math flags in one place. nnan/ninf are left out so that NaN and inf checks stay honest;
# reassoc lets LLVM vectorise reductions (the same order on every run, whatever the threads).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# Without reassoc, for kernels whose serial twin must sum in exactly the parallel kernel's order:
# LLVM may vectorise one reduction differently in the two compiles (seen on AMD Zen 4 with
# conv_backward's sum over images and pixels, which then differed in the last bit).
FASTMATH_ORDERED = FASTMATH - {"reassoc"}

# The small-batch dense forward splits its input rows into this many fixed slices, each summed
# apart and then added in order: enough slices for any thread count up to it, and a fixed order.
ROW_CHUNKS = 16
# The fused dense backward splits its input rows into blocks of this many: enough blocks to
# share out, few enough that each block's scratch row of dw is reused many times.
ROW_BLOCK = 32

# Softmax probabilities below this are flushed to 0. On raw pixels the softmax saturates: exp(-90)
# is a float32 subnormal, and subnormals flowing back through the dense layers made late epochs of
# the report's recipe about 2x slower, since x86 handles them in microcode (docs/performance.md,
# "Subnormals"). A gradient of 1e-30 moves no float32 weight at any sane learning rate, and an
# exact 0 lets the fused backward skip the image altogether.
PROBABILITY_FLOOR = 1e-30

njit_parallel = numba.njit(parallel=True, cache=True, fastmath=FASTMATH)
njit_serial = numba.njit(cache=True, fastmath=FASTMATH)
njit_parallel_ordered = numba.njit(parallel=True, cache=True, fastmath=FASTMATH_ORDERED)


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


@njit_parallel_ordered
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
def dense_forward(out, partial, x, w, b, relu):
    """out (N, O) = x (N, I) @ w (I, O) + b (O,), then ReLU if relu; for a few images (small N).

    Streams w once, row after row (a column-blocked walk would stride across a new page per row),
    in ROW_CHUNKS fixed slices of rows: slice c sums its rows into partial[c] (ROW_CHUNKS, >= N,
    O), then the slices are added in order, so the sums do not depend on the thread count.
    Inputs that are exactly zero (most ReLU outputs) are skipped: their row of w is never read.
    """
    N, I = x.shape
    O = w.shape[1]
    chunks = partial.shape[0]
    size = (I + chunks - 1) // chunks
    for c in numba.prange(chunks):
        part = partial[c]
        for n in range(N):
            for j in range(O):
                part[n, j] = 0
        for i in range(c * size, min((c + 1) * size, I)):
            for n in range(N):
                xi = x[n, i]
                if xi != 0:
                    for j in range(O):
                        part[n, j] += xi * w[i, j]
    for n in range(N):
        for j in range(O):
            out[n, j] = b[j]
        for c in range(chunks):
            for j in range(O):
                out[n, j] += partial[c, n, j]
        if relu:
            for j in range(O):
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


@njit_serial
def nonzero_columns(cols, dout):
    """Writes into cols the indices j where some row of dout (N, O) is non-zero; returns how many.

    After a ReLU, and once the softmax saturates, most of a dense layer's output gradient is
    exactly zero: those columns of w get no update and add nothing to dx.
    """
    N, O = dout.shape
    count = 0
    for j in range(O):
        for n in range(N):
            if dout[n, j] != 0:
                cols[count] = j
                count += 1
                break
    return count


@njit_parallel
def dense_backward_sgd(dx, w, b, scratch, cols, live, x, dout, lr):
    """Backward pass of out = x @ w + b fused with the SGD update w -= lr * dw, b -= lr * db.

    x (N, I) is a ReLU output, so dx (N, I) comes out already masked by that ReLU: dx[n, i] =
    (dout @ w.T)[n, i] where x[n, i] > 0, else 0. Each row of w is read once and written once
    (the unfused path reads it for dx, writes dw, then reads both and writes w again); dx uses
    the row before its update. Rows i where x[:, i] is all zero, and columns j where dout[:, j]
    is all zero, are neither read nor written; images whose dout row is all zero (the softmax
    saturates on most images at lr 1e-6 on raw pixels) add nothing and get dx = 0. scratch
    (ceil(I / ROW_BLOCK), O) holds each row block's dw row; cols (O,) the non-zero columns,
    live (N,) the images with a non-zero dout row. Parallel over row blocks: each owns its dx
    columns, its rows of w and its scratch row. The sums run in the order of dense_backward, so
    with every column non-zero the update is bit-identical to dense_backward + sgd_update.
    """
    N, I = x.shape
    O = w.shape[1]
    zero = np.zeros(1, dx.dtype)[0]
    count = nonzero_columns(cols, dout)
    images = nonzero_columns(live, dout.T)  # the images whose gradient row is not all zero
    full = 8 * count > O  # mostly non-zero: contiguous loops beat gathering through cols
    blocks = (I + ROW_BLOCK - 1) // ROW_BLOCK
    for block in numba.prange(blocks):
        g = scratch[block]
        for i in range(block * ROW_BLOCK, min((block + 1) * ROW_BLOCK, I)):
            for n in range(N):
                dx[n, i] = zero
            active = False
            for m in range(images):
                n = live[m]
                xi = x[n, i]
                active = active or xi != 0
                if xi > 0:
                    acc = zero
                    if full:
                        for j in range(O):
                            acc += dout[n, j] * w[i, j]
                    else:
                        for t in range(count):
                            acc += dout[n, cols[t]] * w[i, cols[t]]
                    dx[n, i] = acc
            if not active:
                continue
            if full:
                for j in range(O):
                    g[j] = zero
                for m in range(images):
                    n = live[m]
                    xi = x[n, i]
                    if xi != 0:
                        for j in range(O):
                            g[j] += xi * dout[n, j]
                for j in range(O):
                    w[i, j] -= lr * g[j]
            else:
                for t in range(count):
                    g[t] = zero
                for m in range(images):
                    n = live[m]
                    xi = x[n, i]
                    if xi != 0:
                        for t in range(count):
                            g[t] += xi * dout[n, cols[t]]
                for t in range(count):
                    w[i, cols[t]] -= lr * g[t]
    for t in range(count):
        j = cols[t]
        db = zero
        for n in range(N):
            db += dout[n, j]
        b[j] -= lr * db


# ----------------------------------------------------------------------------------------------
# softmax + cross-entropy


@njit_serial
def softmax_row(probs, logits):
    """probs (M,) = the softmax of logits (M,), probabilities below PROBABILITY_FLOOR set to 0;
    returns (peak, total): the row's largest logit and sum_m exp(logits[m] - peak), for the loss."""
    zero = np.zeros(1, probs.dtype)[0]
    peak = logits[0]
    for m in range(1, logits.shape[0]):
        peak = max(peak, logits[m])
    total = zero
    for m in range(logits.shape[0]):
        probs[m] = np.exp(logits[m] - peak)
        total += probs[m]
    for m in range(logits.shape[0]):
        probs[m] /= total
        if probs[m] < PROBABILITY_FLOOR:
            probs[m] = zero
    return peak, total


@njit_serial
def softmax_cross_entropy(probs, dlogits, losses, logits, labels):
    """Per-image loss, softmax probabilities and the gradient softmax - onehot; all (N, M) / (N,).

    Subtracts the row maximum first, so raw-pixel logits in the hundreds do not overflow, and
    takes the loss as logsumexp - logit[label], which never evaluates log(0). Probabilities below
    PROBABILITY_FLOOR are set to exactly 0 (see there).
    """
    N, M = logits.shape
    for n in range(N):
        peak, total = softmax_row(probs[n], logits[n])
        for m in range(M):
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


# ----------------------------------------------------------------------------------------------
# serial twins: the same kernels compiled without threads


def serial_twin(kernel):
    """`kernel` compiled without threads (its prange runs as range), for work too small to share.

    The twin is a copy of the Python function under its own name, so that Numba's on-disk cache,
    which keys files by function name and bytecode but not by compile flags, keeps the two apart.
    """
    py_func = kernel.py_func
    twin = types.FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + "_serial",
                              py_func.__defaults__, py_func.__closure__)
    twin.__qualname__ = py_func.__qualname__ + "_serial"
    twin.__doc__ = py_func.__doc__
    return numba.njit(cache=True, fastmath=kernel.targetoptions["fastmath"])(twin)


conv_relu_forward_serial = serial_twin(conv_relu_forward)
conv_backward_serial = serial_twin(conv_backward)
relu_backward_serial = serial_twin(relu_backward)
dense_forward_serial = serial_twin(dense_forward)
dense_backward_serial = serial_twin(dense_backward)
dense_backward_sgd_serial = serial_twin(dense_backward_sgd)
sgd_update_serial = serial_twin(sgd_update)


# ----------------------------------------------------------------------------------------------
# explanations: the conv layer's input gradient (training never needs it: the image has no weights)


@njit_parallel_ordered
def conv_backward_input(dx, dout, w):
    """Gradient of the conv layer with respect to its input image, for saliency maps.

    dout (N, K, P, P) is the gradient of the pre-activation (already ReLU-masked), w (K, C, S, S).
    dx[n, c, i+p, j+q] gets w[k, c, p, q] * dout[n, k, i, j] summed over k, p, q, i, j: each
    output pixel hands its gradient back to the S x S window it was computed from. Parallel over
    (n, c): each owns the image plane dx[n, c], and adds into it in the same order, k then p, q.
    """
    N, C, H, _ = dx.shape
    K, _, S, _ = w.shape
    P = H - S + 1
    for nc in numba.prange(N * C):
        n, c = nc // C, nc % C
        for y in range(H):
            for x in range(H):
                dx[n, c, y, x] = 0
        for k in range(K):
            for p in range(S):
                for q in range(S):
                    weight = w[k, c, p, q]
                    for i in range(P):
                        for j in range(P):
                            dx[n, c, i + p, j + q] += weight * dout[n, k, i, j]


conv_backward_input_serial = serial_twin(conv_backward_input)


# tile kernels: serial and GIL-free, each run on one tile of a product by a worker of tiled.py
#
# Many of these run at once on Python threads, so they release the GIL (nogil) and never use
# prange. Their flags leave out reassoc: a sum here runs in the order it is written, in whatever
# compile (each array layout gets its own), so no result hangs on how LLVM vectorised one copy.
# error_model "numpy" (as parallel kernels have): x / 0 gives inf instead of raising, which
# drops the per-element zero check that otherwise keeps a loop with a division from vectorising.

FASTMATH_TILE = FASTMATH - {"reassoc"}
njit_tile = numba.njit(cache=True, nogil=True, fastmath=FASTMATH_TILE, error_model="numpy")


@njit_tile
def bias_relu(out, b, relu):
    """out (N, O) += b (O,), then ReLU if relu; out may be a column slice of a wider array."""
    N, O = out.shape
    for n in range(N):
        for j in range(O):
            value = out[n, j] + b[j]
            out[n, j] = value if (value > 0 or not relu) else 0


@njit_tile
def gather_rows(dst, src, index, count):
    """dst[m] = src[index[m]] for m < count; dst (>= count, D), src (N, D)."""
    D = src.shape[1]
    for m in range(count):
        n = index[m]
        for d in range(D):
            dst[m, d] = src[n, d]


@njit_tile
def gather_columns(dst, src, cols, count):
    """dst[:, t] = src[:, cols[t]] for t < count; dst (N, >= count), src (N, O)."""
    N = src.shape[0]
    for n in range(N):
        for t in range(count):
            dst[n, t] = src[n, cols[t]]


@njit_tile
def live_column_sums(db, dout_live, count):
    """db (O,) = the first `count` rows of dout_live summed, row after row in order."""
    O = db.shape[0]
    for j in range(O):
        db[j] = 0
    for m in range(count):
        for j in range(O):
            db[j] += dout_live[m, j]


@njit_tile
def any_nonzero(a):
    """True if some entry of the 2-D array a is not zero."""
    N, D = a.shape
    for n in range(N):
        for d in range(D):
            if a[n, d] != 0:
                return True
    return False


@njit_tile
def relu_mask_scatter(dx, dx_live, x_live, live, count):
    """dx (N, R) = dx_live (>= count, R) where x_live > 0, put back in row live[m]; other rows 0.

    dx, dx_live and x_live are the same column slice (one row tile of the weights) of (N, I),
    (L, I) and (L, I) arrays: rows of images with a zero output gradient get a zero gradient.
    """
    N, R = dx.shape
    m = 0
    for n in range(N):
        if m < count and live[m] == n:
            for i in range(R):
                dx[n, i] = dx_live[m, i] if x_live[m, i] > 0 else 0
            m += 1
        else:
            for i in range(R):
                dx[n, i] = 0


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


@njit_tile
def momentum_tile(param, velocity, grad, lr, momentum, weight_decay):
    """kernels.momentum_update on one tile (1-D views): one read and one write of each array."""
    for t in range(param.shape[0]):
        g = grad[t] + weight_decay * param[t]
        velocity[t] = momentum * velocity[t] + g
        param[t] -= lr * velocity[t]


@njit_tile
def adam_tile(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, correction1, correction2):
    """Adam as kernels.adam_update, on one tile (1-D views): one read and one write of each array.

    Written as torch.optim.Adam does it, param -= (lr / correction1) * m / (sqrt(v) /
    sqrt(correction2) + eps), with every constant in the arrays' own dtype: a bare `1 - beta1`
    would be float64 in Numba, and float64 arithmetic in the loop.
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


@njit_tile
def live_rows_by_tile(rows, starts, x_live, count, edges):
    """The inputs i of a dense layer that some live image uses, grouped by row tile of w.

    rows receives, in order, the i with x_live[:count, i] not all zero; starts (tiles + 1,) the
    position in rows where each row tile [edges[t], edges[t + 1]) begins. Returns how many rows.
    """
    total = 0
    for t in range(edges.shape[0] - 1):
        starts[t] = total
        for i in range(edges[t], edges[t + 1]):
            for m in range(count):
                if x_live[m, i] != 0:
                    rows[total] = i
                    total += 1
                    break
    starts[edges.shape[0] - 1] = total
    return total


@njit_tile
def gather_tile(wg, xg, w, x_live, rows, cols, ncols, count):
    """The live block of one row tile: wg[r, t] = w[rows[r], cols[t]], xg[m, r] = x_live[m, rows[r]]."""
    for r in range(rows.shape[0]):
        i = rows[r]
        for t in range(ncols):
            wg[r, t] = w[i, cols[t]]
    for m in range(count):
        for r in range(rows.shape[0]):
            xg[m, r] = x_live[m, rows[r]]


@njit_tile
def scatter_dx_tile(dx, dxg, xg, live, count, rows, r0):
    """dx (N, R): a row tile's input gradient from its live block dxg (count, len(rows)).

    dx[live[m], rows[r] - r0] = dxg[m, r] where the input xg[m, r] > 0 (the ReLU below); every
    other entry, of dead images, unused inputs or inactive units, is 0.
    """
    N, R = dx.shape
    for n in range(N):
        for i in range(R):
            dx[n, i] = 0
    for m in range(count):
        n = live[m]
        for r in range(rows.shape[0]):
            if xg[m, r] > 0:
                dx[n, rows[r] - r0] = dxg[m, r]


@njit_tile
def scatter_gradient_tile(gd, g, rows, r0, cols, ncols):
    """gd (R, O) = 0 but gd[rows[r] - r0, cols[t]] = g[r, t]: a live block's gradient spread out."""
    R, O = gd.shape
    for i in range(R):
        for j in range(O):
            gd[i, j] = 0
    for r in range(rows.shape[0]):
        i = rows[r] - r0
        for t in range(ncols):
            gd[i, cols[t]] = g[r, t]


# ----------------------------------------------------------------------------------------------
# conv backward in lanes: vectorised without reassoc, skipping zero rows of the output gradient


@njit_parallel_ordered
def conv_backward_lanes(dw, db, x, dout):
    """conv_backward's dw and db, summed in lanes: one running sum per output column j.

    For each kernel k, lane j of tap (c, p, q) adds x[n, c, i+p, j+q] * dout[n, k, i, j] over the
    images n and rows i; the P lanes are then added in order. The lane loop has no reduction in
    it, so it vectorises without reassoc and every compile (parallel, serial twin) sums alike;
    conv_backward's single running sum cannot vectorise without reassoc (measured 10-20x slower).
    Rows dout[n, k, i, :] that are all zero (a dead image, a ReLU that is off along the row) are
    skipped. Parallel over k: each k owns dw[k], db[k] and its lanes.
    """
    N, C, H, _ = x.shape
    K, _, S, _ = dw.shape
    P = H - S + 1
    taps = C * S * S
    for k in numba.prange(K):
        lanes = np.zeros((taps + 1, P), dw.dtype)  # the last row sums db
        for n in range(N):
            for i in range(P):
                d = dout[n, k, i]
                alive = False
                for j in range(P):
                    if d[j] != 0:
                        alive = True
                        break
                if not alive:
                    continue
                bias = lanes[taps]
                for j in range(P):
                    bias[j] += d[j]
                for c in range(C):
                    for p in range(S):
                        row = x[n, c, i + p]
                        for q in range(S):
                            lane = lanes[(c * S + p) * S + q]
                            for j in range(P):
                                lane[j] += row[j + q] * d[j]
        for c in range(C):
            for p in range(S):
                for q in range(S):
                    lane = lanes[(c * S + p) * S + q]
                    total = lane[0]
                    for j in range(1, P):
                        total += lane[j]
                    dw[k, c, p, q] = total
        total = lanes[taps, 0]
        for j in range(1, P):
            total += lanes[taps, j]
        db[k] = total


conv_backward_lanes_serial = serial_twin(conv_backward_lanes)


# ----------------------------------------------------------------------------------------------
# training objectives and regularisation (issue 13): weighted, smoothed cross-entropy; dropout
# Both are serial: they touch N * M or N * O numbers, far too few to share out.


@njit_serial
def weighted_softmax_cross_entropy(probs, dlogits, losses, logits, labels, weights, on_target, off_target):
    """softmax_cross_entropy with a weight per class and a smoothed target; (N, M), (N,), weights (M,).

    Image n's target is q[m] = on_target for m = labels[n] and off_target elsewhere (with label
    smoothing E: on_target = 1 - E + E / M, off_target = E / M; without: 1 and 0). With w =
    weights[labels[n]], its loss is w * -sum_m q[m] log probs[n, m] = w * (log(sum_m exp(logits[n,
    m] - peak)) - sum_m q[m] (logits[n, m] - peak)), which uses sum_m q[m] = 1 and never takes
    log(0), and its logit gradient dlogits[n] = w * (probs[n] - q). Probabilities below
    PROBABILITY_FLOOR are set to 0, as in softmax_cross_entropy.
    """
    N, M = logits.shape
    zero = np.zeros(1, probs.dtype)[0]
    for n in range(N):
        peak, total = softmax_row(probs[n], logits[n])
        label = labels[n]
        weight = weights[label]
        expected = zero  # sum_m q[m] * (logits[n, m] - peak)
        for m in range(M):
            target = on_target if m == label else off_target
            dlogits[n, m] = weight * (probs[n, m] - target)
            expected += target * (logits[n, m] - peak)
        losses[n] = weight * (np.log(total) - expected)


@njit_serial
def dropout_forward(act, draws, rate, scale):
    """Inverted dropout, in place: act[n, d] *= scale where draws[n, d] >= rate, else act[n, d] = 0.

    act (N, D) is a hidden layer's ReLU output, draws (N, D) uniform numbers in [0, 1), scale =
    1 / (1 - rate), so that each unit's expected output is what it is without dropout. The
    backward pass needs no mask: a dropped unit's output is 0, so the ReLU's mask (act > 0)
    already blocks its gradient, and every kept unit's gradient is multiplied by scale.
    """
    N, D = act.shape
    for n in range(N):
        for d in range(D):
            if draws[n, d] >= rate:
                act[n, d] *= scale
            else:
                act[n, d] = 0
