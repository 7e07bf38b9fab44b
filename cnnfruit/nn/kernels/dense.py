"""The dense (fully connected) layer, out = x @ w + b with w stored (I, O), and the ReLU and
dropout behind it: the Numba kernels for a few images. Bigger batches run as BLAS tiles
(tiled.py, with the tile kernels of tiles.py); dispatch.py chooses."""
import numpy as np

from cnnfruit.nn.kernels.jit import njit_parallel, njit_serial, numba, serial_twin

# The small-batch dense forward splits its input rows into this many fixed slices, each summed
# apart and then added in order: enough slices for any thread count up to it, and a fixed order.
ROW_CHUNKS = 16
# The fused dense backward splits its input rows into blocks of this many: enough blocks to
# share out, few enough that each block's scratch row of dw is reused many times.
ROW_BLOCK = 32


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


dense_forward_serial = serial_twin(dense_forward)


@njit_parallel
def relu_backward(dpre, dact, act):
    """dpre = dact where the ReLU was active (act > 0), else 0; all (N, D).

    Writes a new array: the upstream gradient dact is left untouched.
    """
    N, D = act.shape
    for n in numba.prange(N):
        for d in range(D):
            dpre[n, d] = dact[n, d] if act[n, d] > 0 else 0


relu_backward_serial = serial_twin(relu_backward)


@njit_parallel
def dense_backward(dx, dw, db, x, dout, w):
    """Gradients of out = x @ w + b given dout (N, O).

    dx (N, I) = dout @ w.T, dw (I, O) = x.T @ dout, db (O,) = dout summed over N.
    Parallel over the input index i: each i owns dx[:, i] and dw[i, :].
    """
    N, I = x.shape
    O = w.shape[1]
    zero = np.zeros(1, dx.dtype)[0]  # a zero of the array's own dtype: float32 sums stay float32
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


dense_backward_serial = serial_twin(dense_backward)


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


dense_backward_sgd_serial = serial_twin(dense_backward_sgd)


@njit_serial
def dropout_forward(act, draws, rate, scale):
    """Inverted dropout, in place: act[n, d] *= scale where draws[n, d] >= rate, else act[n, d] = 0.

    act (N, D) is a hidden layer's ReLU output, draws (N, D) uniform numbers in [0, 1), scale =
    1 / (1 - rate), so that each unit's expected output is what it is without dropout. The
    backward pass needs no mask: a dropped unit's output is 0, so the ReLU's mask (act > 0)
    already blocks its gradient, and every kept unit's gradient is multiplied by scale. Serial:
    it touches N * D numbers, too few to share out.
    """
    N, D = act.shape
    for n in range(N):
        for d in range(D):
            if draws[n, d] >= rate:
                act[n, d] *= scale
            else:
                act[n, d] = 0
