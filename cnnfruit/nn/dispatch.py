"""Which implementation runs each layer's arithmetic at which size: Numba kernel, serial twin or BLAS.

Every size-dependent choice lives here, so network.py writes only the layer maths. Each function
takes the same preallocated arrays as the kernel it stands for. The choices depend on the shapes
alone, never on the thread count, so a run's numbers do not depend on how many cores it gets.
The measurements behind each threshold are in docs/performance.md ("Dispatch thresholds").
"""
from types import SimpleNamespace

import numpy as np

from cnnfruit.nn import kernels
from cnnfruit.nn import tiled

# From this many images per batch on, the dense forward products go to BLAS (numpy's matmul);
# below it the streaming kernel, which skips the zero inputs behind the ReLU, wins (one thread,
# s of CPU per epoch, kernel vs 4 sgemm column tiles: batch 8 0.42-0.44 vs 0.56-0.61, batch 12
# 0.38-0.39 vs 0.40-0.41, batch 16 0.33-0.36 vs 0.31).
BLAS_MIN_BATCH = 16

# Scoring (predict, evaluate, validation) runs the network on blocks of a fixed number of images,
# the same for every call on one network (inference_rows). OpenBLAS picks its sgemm kernel by the
# product's shape (on the report's network, the 841 -> 29 layer rounds differently below 48 rows
# than above), so one block shape makes an image's probabilities independent of its batch and its
# neighbours. Bigger blocks pay where a dense product dominates: every sgemm call packs all of w,
# so the report's 6728 x 841 weights are packed once per block (2 threads, the 496 test photos in
# batches of 256: 10,370 images/s on blocks of 64, 14,026 on blocks of 256). A lone image pays for
# the whole block, so blocks grow only while one stays under INFERENCE_BLOCK_FLOPS of forward work
# (about 15 ms at this machine's sgemm peak): 256 images of the report's network, 64 of the
# VGG-style stack, whose per-image conv products gain nothing from bigger blocks.
INFERENCE_ROWS = (64, 128, 256)
INFERENCE_BLOCK_FLOPS = 3.2e9


def inference_rows(arch):
    """Images per scoring block of this network: the most of INFERENCE_ROWS under the FLOP budget."""
    per_image = sum(cost.forward_flops for cost in arch.layer_costs())
    fitting = [rows for rows in INFERENCE_ROWS if rows * per_image <= INFERENCE_BLOCK_FLOPS]
    return max(fitting, default=INFERENCE_ROWS[0])

# From TILED_MIN_BATCH images and this many multiply-adds per product on, a dense layer's
# backward runs tiled (tiled.DenseBackward): sgemm tiles on every core over each tile's live
# block, the optimizer's update folded in tile by tile. Plain SGD keeps the Numba fused kernel
# below TILED_SGD_MIN_BATCH images: it skips zero inputs one by one, which pays off on few images
# (docs/performance.md, "Tiled products").
TILED_MIN_BATCH = 8
TILED_MIN_WORK = 1_000_000
TILED_SGD_MIN_BATCH = 32

# Work, in multiply-adds, below which a kernel runs on the calling thread alone: waking the
# worker threads costs more than sharing out a few thousand multiply-adds.
PARALLEL_MIN_WORK = 1_000_000

SERIAL_TWINS = {
    kernels.conv_relu_forward: kernels.conv_relu_forward_serial,
    kernels.relu_backward: kernels.relu_backward_serial,
    kernels.dense_forward: kernels.dense_forward_serial,
    kernels.dense_backward: kernels.dense_backward_serial,
    kernels.dense_backward_sgd: kernels.dense_backward_sgd_serial,
    kernels.sgd_update: kernels.sgd_update_serial,
    kernels.conv_backward_input: kernels.conv_backward_input_serial,
    kernels.conv_backward_lanes: kernels.conv_backward_lanes_serial,
}


def sized(kernel, work):
    """The parallel kernel for `work` multiply-adds or more, else its serial twin.

    A kernel dispatched by size must have a twin: a missing one is a KeyError, which the tests
    catch for every kernel routed through here, rather than a silent fall back to threads.
    """
    return kernel if work >= PARALLEL_MIN_WORK else SERIAL_TWINS[kernel]


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
    """The kernel reads each input plane as one flat run: x must be C-ordered (a copy if not)."""
    sized(kernels.conv_relu_forward, conv_work(x, w))(out, np.ascontiguousarray(x), w, b)


def conv_backward(dw, db, x, dout):
    """The lanes kernel: vectorised in a fixed order, skipping zero rows of dout."""
    sized(kernels.conv_backward_lanes, conv_work(x, dw))(dw, db, x, dout)


def conv_backward_input(dx, dout, w):
    """The conv layer's input gradient (saliency maps only; training never computes it)."""
    sized(kernels.conv_backward_input, conv_work(dx, w))(dx, dout, w)


def dense_forward(out, x, w, b, relu, scratch):
    """out = x @ w + b, then ReLU if relu; BLAS column tiles for batches of BLAS_MIN_BATCH or more."""
    if len(x) >= BLAS_MIN_BATCH:
        tiled.dense_forward(tiled.default_pool(), out, x, w, b, relu)
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


def dense_backward_path(batch, fan_in, fan_out, optimizer):
    """How one dense layer's backward and update run: "tiled", "fused_sgd" or "plain".

    "tiled": tiled.DenseBackward, sgemm tiles with any optimizer's update folded in. "fused_sgd":
    kernels.dense_backward_sgd (plain SGD only), which streams each row of w once and skips zero
    inputs, columns and images. "plain": dense_backward, then optimizer.update.
    """
    if batch >= TILED_MIN_BATCH and batch * fan_in * fan_out >= TILED_MIN_WORK:
        if not (optimizer.fusable and batch < TILED_SGD_MIN_BATCH):
            return "tiled"
    if optimizer.fusable:
        return "fused_sgd"
    return "plain"


class DenseStepBuffers:
    """Scratch of one dense layer's backward step; the tiled backward's buffers are made on first use."""

    def __init__(self, fan_in, fan_out, capacity, dtype):
        self.shape, self.capacity, self.dtype = (fan_in, fan_out), capacity, dtype
        self.sgd = dense_backward_sgd_scratch(fan_in, fan_out, dtype)
        self.live = np.zeros(capacity, np.int64)
        self._tiled = None

    def tiled(self, pool):
        if self._tiled is None:
            self._tiled = tiled.DenseBackward(*self.shape, self.capacity, self.dtype, pool.workers)
        return self._tiled


def dense_backward_step(dx, dact, dw, db, w, b, x, dout, optimizer, w_name, b_name, buffers):
    """The backward of out = x @ w + b fused with the optimizer's update of w and b.

    dx (N, I) gets the gradient before the ReLU that made x (dact: scratch for the one after it);
    dw and db are the layer's gradient arrays (filled on the "plain" path; the tiled one fills db
    only). optimizer.begin_step() must have been called for this step. buffers: this layer's
    DenseStepBuffers.
    """
    path = dense_backward_path(len(x), *w.shape, optimizer)
    if path == "tiled":
        pool = tiled.default_pool()
        buffers.tiled(pool).run(pool, dx, db, x, dout, w, optimizer.tile_update(w_name, w))
        optimizer.update(b_name, b, db)
    elif path == "fused_sgd":
        dense_backward_sgd(dx, w, b, buffers.sgd, buffers.live[:len(x)], x, dout, w.dtype.type(optimizer.lr))
    else:
        dense_backward(dact, dw, db, x, dout, w)
        relu_backward(dx, dact, x)
        optimizer.update(w_name, w, dw)
        optimizer.update(b_name, b, db)


def sgd_update(param, grad, lr):
    sized(kernels.sgd_update, param.size)(param, grad, lr)


# The other updates on one flat parameter: the parallel kernel for big ones, else the serial tile
# kernel (the same formula; Adam's may differ from adam_update in the last bit).


def sgd_decay_update(param, grad, lr, weight_decay):
    if param.size >= PARALLEL_MIN_WORK:
        kernels.sgd_decay_update(param, grad, lr, weight_decay)
    else:
        kernels.sgd_tile(param, grad, lr, weight_decay)


def momentum_update(param, velocity, grad, lr, momentum, weight_decay):
    kernel = kernels.momentum_update if param.size >= PARALLEL_MIN_WORK else kernels.momentum_tile
    kernel(param, velocity, grad, lr, momentum, weight_decay)


def adam_update(param, m, v, grad, *settings):
    """settings: lr, beta1, beta2, eps, weight_decay, correction1, correction2 (see kernels)."""
    kernel = kernels.adam_update if param.size >= PARALLEL_MIN_WORK else kernels.adam_tile
    kernel(param, m, v, grad, *settings)


def softmax_cross_entropy(probs, dlogits, losses, logits, labels):
    kernels.softmax_cross_entropy(probs, dlogits, losses, logits, labels)


def weighted_softmax_cross_entropy(probs, dlogits, losses, logits, labels, weights, smoothing):
    """The loss with class weights (M,) and label smoothing; see kernels.weighted_softmax_cross_entropy."""
    M = logits.shape[1]
    on_target, off_target = probs.dtype.type(1 - smoothing + smoothing / M), probs.dtype.type(smoothing / M)
    kernels.weighted_softmax_cross_entropy(probs, dlogits, losses, logits, labels, weights, on_target, off_target)


def dropout_forward(act, draws, rate):
    """Inverted dropout of act (N, D) at `rate` with uniform draws (N, D); see kernels.dropout_forward."""
    kernels.dropout_forward(act, draws, rate, act.dtype.type(1 / (1 - rate)))


# ---- how many pieces of work each product offers the threads, from the shapes alone


def dense_plan(batch, fan_in, fan_out, fusable):
    """Per product of one dense layer at this batch: (how it runs, units of work for the threads).

    fusable: plain SGD (optimizer.fusable). A unit is a tile, a prange iteration or one call; work
    under PARALLEL_MIN_WORK runs on one thread, as one unit. The numbers follow the choices of
    dense_forward and dense_backward_step above and the tile edges of tiled.py.
    """
    work = batch * fan_in * fan_out
    if batch >= BLAS_MIN_BATCH:
        forward = ("sgemm tiles", tiled.plan(batch, fan_in, fan_out)["forward"])
    else:
        forward = ("kernel", kernels.ROW_CHUNKS if work >= PARALLEL_MIN_WORK else 1)
    path = dense_backward_path(batch, fan_in, fan_out, SimpleNamespace(fusable=fusable))
    if path == "tiled":
        backward = ("sgemm tiles", tiled.plan(batch, fan_in, fan_out)["backward"])
    elif path == "fused_sgd":
        backward = ("fused kernel", -(-fan_in // kernels.ROW_BLOCK) if work >= PARALLEL_MIN_WORK else 1)
    elif batch >= BLAS_MIN_BATCH:
        backward = ("sgemm calls", 1)
    else:
        backward = ("kernel", fan_in if work >= PARALLEL_MIN_WORK else 1)
    return {"forward": forward, "backward": backward, "multiply_adds": work}


def conv_plan(batch, channels, side, kernels_, kernel_size):
    """The conv layer's (how, units) per product at this batch, as dense_plan's."""
    work = batch * kernels_ * (side - kernel_size + 1) ** 2 * channels * kernel_size**2
    parallel = work >= PARALLEL_MIN_WORK
    return {"forward": ("kernel", batch * kernels_ if parallel else 1),
            "backward": ("kernel", kernels_ * channels * kernel_size if parallel else 1), "multiply_adds": work}
