"""Which implementation runs each layer's arithmetic at which size: Numba kernel, serial twin or BLAS.

Every size-dependent choice lives here, so model.py writes only the layer maths. Each function
takes the same preallocated arrays as the kernel it stands for. The choices depend on the shapes
alone, never on the thread count, so a run's numbers do not depend on how many cores it gets.
The measurements behind each threshold are in docs/performance.md ("Dispatch thresholds").
"""
import numpy as np

from . import kernels

# From this many images per batch on, the dense forward products go to BLAS (numpy's matmul);
# below it the streaming kernel, which skips the zero inputs behind the ReLU, wins.
BLAS_MIN_BATCH = 8

# Wide BLAS products are cut into this many fixed column slices, one sgemm each on a pool of
# Python threads (numpy releases the GIL): both cores work while OpenBLAS itself runs on one
# thread (see threads.py), and the slices do not depend on how many threads run them.
MATMUL_SLICES = 2
MATMUL_MIN_COLUMNS = 256

# Work, in multiply-adds, below which a kernel runs on the calling thread alone: waking the
# worker threads costs more than sharing out a few thousand multiply-adds.
PARALLEL_MIN_WORK = 1_000_000

SERIAL_TWINS = {
    kernels.conv_relu_forward: kernels.conv_relu_forward_serial,
    kernels.conv_backward: kernels.conv_backward_serial,
    kernels.relu_backward: kernels.relu_backward_serial,
    kernels.dense_forward: kernels.dense_forward_serial,
    kernels.dense_backward: kernels.dense_backward_serial,
    kernels.dense_backward_sgd: kernels.dense_backward_sgd_serial,
    kernels.sgd_update: kernels.sgd_update_serial,
    kernels.conv_backward_input: kernels.conv_backward_input_serial,
    kernels.conv_backward_lanes: kernels.conv_backward_lanes_serial,
}

_pool = None


def sized(kernel, work):
    """The parallel kernel for `work` multiply-adds or more, else its serial twin.

    A kernel dispatched by size must have a twin: a missing one is a KeyError, which the tests
    catch for every kernel routed through here, rather than a silent fall back to threads.
    """
    return kernel if work >= PARALLEL_MIN_WORK else SERIAL_TWINS[kernel]


def split_matmul(a, b, out):
    """out = a @ b; for wide b, as MATMUL_SLICES fixed column slices computed side by side."""
    global _pool
    columns = b.shape[1]
    if columns < MATMUL_MIN_COLUMNS:
        np.matmul(a, b, out=out)
        return
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(MATMUL_SLICES, thread_name_prefix="cnnfruit-matmul")
    edges = [columns * k // MATMUL_SLICES for k in range(MATMUL_SLICES + 1)]
    jobs = [_pool.submit(np.matmul, a, b[:, lo:hi], out=out[:, lo:hi]) for lo, hi in zip(edges[:-1], edges[1:])]
    for job in jobs:
        job.result()


# ---- scratch buffers, shaped for the kernels that use them


def dense_forward_scratch(batch, fan_out, dtype):
    """Row-slice partial sums of kernels.dense_forward, for batches that stay in the kernel."""
    return np.zeros((kernels.ROW_CHUNKS, min(batch, BLAS_MIN_BATCH), fan_out), dtype)


def dense_backward_sgd_scratch(fan_in, fan_out, dtype):
    """kernels.dense_backward_sgd's dw row per row block, and its list of non-zero columns."""
    blocks = -(-fan_in // kernels.ROW_BLOCK)
    return np.zeros((blocks, fan_out), dtype), np.zeros(fan_out, np.int64)


# ---- the layers


def conv_work(x, w):
    """Multiply-adds of the conv layer (forward, or the kernel gradient) for the batch x."""
    N, C, H, _ = x.shape
    K, _, S, _ = w.shape
    return N * K * (H - S + 1) ** 2 * C * S * S


def conv_relu_forward(out, x, w, b):
    sized(kernels.conv_relu_forward, conv_work(x, w))(out, x, w, b)


def conv_backward(dw, db, x, dout):
    """The lanes kernel: vectorised in a fixed order and skipping zero rows, 5-8x conv_backward."""
    sized(kernels.conv_backward_lanes, conv_work(x, dw))(dw, db, x, dout)


def conv_backward_input(dx, dout, w):
    """The conv layer's input gradient (saliency maps only; training never computes it)."""
    sized(kernels.conv_backward_input, conv_work(dx, w))(dx, dout, w)


def dense_forward(out, x, w, b, relu, scratch):
    """out = x @ w + b, then ReLU if relu; BLAS for batches of BLAS_MIN_BATCH or more."""
    if len(x) >= BLAS_MIN_BATCH:
        split_matmul(x, w, out)
        out += b
        if relu:
            np.maximum(out, 0, out=out)
    else:
        sized(kernels.dense_forward, x.size * len(b))(out, scratch, x, w, b, relu)


def dense_backward(dx, dw, db, x, dout, w):
    if len(x) >= BLAS_MIN_BATCH:
        np.matmul(dout, w.T, out=dx)
        np.matmul(x.T, dout, out=dw)
        np.sum(dout, axis=0, out=db)
    else:
        sized(kernels.dense_backward, x.size * len(db))(dx, dw, db, x, dout, w)


def relu_backward(dpre, dact, act):
    sized(kernels.relu_backward, act.size)(dpre, dact, act)


def dense_backward_sgd(dx, w, b, scratch, live, x, dout, lr):
    """The dense backward fused with the SGD update; scratch from dense_backward_sgd_scratch."""
    rows, cols = scratch
    sized(kernels.dense_backward_sgd, len(x) * w.size)(dx, w, b, rows, cols, live, x, dout, lr)


def sgd_update(param, grad, lr):
    sized(kernels.sgd_update, param.size)(param, grad, lr)


def softmax_cross_entropy(probs, dlogits, losses, logits, labels):
    kernels.softmax_cross_entropy(probs, dlogits, losses, logits, labels)
