"""The network at work: forward and backward passes through the kernels, on preallocated buffers.

See architecture.py for the layers and the shape letters of kernels.py for the dimensions.
"""
import numpy as np

from . import kernels

# From this many images per batch on, the dense forward products go to BLAS (numpy's matmul).
# Measured (forward seconds per epoch, shared 2-core machine): at batch 32 the numba kernel took
# 0.34 s, OpenBLAS with one thread 0.23 s, OpenBLAS with two threads 6-7 s (its threads spin and
# fight numba's; the CLI therefore runs OpenBLAS on one thread). Below 8 images the kernel, which
# skips the zero inputs behind the ReLU, streams the weights once and wins.
BLAS_MIN_BATCH = 8


# Wide BLAS products are cut into this many fixed column slices, one sgemm each, run on a pool of
# Python threads (numpy releases the GIL): both cores work while OpenBLAS itself stays on one
# thread, and the slices do not depend on how many threads run them.
MATMUL_SLICES = 2
MATMUL_MIN_COLUMNS = 256
_pool = None


def split_matmul(a, b, out):
    """out = a @ b; for wide b, as MATMUL_SLICES column slices computed side by side."""
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


# Work, in multiply-adds, below which a kernel runs on the calling thread alone. Each parallel
# region wakes the worker threads (a futex round trip each); a batch-1 step opens a dozen, most of
# them over a few thousand multiply-adds. Measured on the report's recipe (batch 1, seed 0, seconds
# per epoch): every kernel parallel 5.0-5.8; only the first dense layer parallel 2.7-3.2; the conv
# layer's 108k multiply-adds parallel as well 3.8-4.9.
PARALLEL_MIN_WORK = 1_000_000

_SERIAL_TWIN = {
    kernels.conv_relu_forward: kernels.conv_relu_forward_serial,
    kernels.conv_backward: kernels.conv_backward_serial,
    kernels.relu_backward: kernels.relu_backward_serial,
    kernels.dense_forward: kernels.dense_forward_serial,
    kernels.dense_backward: kernels.dense_backward_serial,
    kernels.dense_backward_sgd: kernels.dense_backward_sgd_serial,
    kernels.sgd_update: kernels.sgd_update_serial,
}


def sized(kernel, work):
    """The parallel kernel for `work` multiply-adds or more, else its serial twin (if it has one)."""
    return kernel if work >= PARALLEL_MIN_WORK else _SERIAL_TWIN.get(kernel, kernel)


class Network:
    """Parameters, their gradients and the activations of one batch size, all preallocated.

    `forward` fills the activations; `backward` (after `loss`) fills `grads`. Buffers are made
    once per batch size and reused, so a training step allocates nothing.
    """

    def __init__(self, arch, params):
        self.arch = arch
        self.params = params
        self.dtype = params["conv_w"].dtype
        self.grads = {name: np.zeros_like(p) for name, p in params.items()}
        # Per dense layer: the fused backward's dw rows (one per row block) and non-zero columns.
        self._scratch = [
            np.zeros((-(-fan_in // kernels.ROW_BLOCK), fan_out), self.dtype) for fan_in, fan_out in arch.dense_widths
        ]
        self._cols = [np.zeros(fan_out, np.int64) for _, fan_out in arch.dense_widths]
        self._batch = None
        self._capacity = 0

    @property
    def layers(self):
        return len(self.arch.dense_widths)

    def _workspace(self, batch):
        """Point the activation buffers at views of `batch` rows, growing them only when needed."""
        if self._batch == batch:
            return
        if batch > self._capacity:
            self._allocate(batch)
        self.conv_out = self._conv_out[:batch]
        self.dconv = self._dconv[:batch]
        self.acts = [a[:batch] for a in self._acts]
        self.dacts = [d[:batch] for d in self._dacts]
        self.dpres = [d[:batch] for d in self._dpres]
        self.probs = self._probs[:batch]
        self.losses = self._losses[:batch]
        self._batch = batch

    def _allocate(self, capacity):
        arch, dtype = self.arch, self.dtype
        P = arch.conv_side
        self._conv_out = np.zeros((capacity, arch.kernels, P, P), dtype)
        self._dconv = np.zeros_like(self._conv_out)
        # acts[0] is the flattened conv output; acts[l + 1] the output of dense layer l;
        # dpres[l] is the gradient before the ReLU that produced acts[l].
        self._acts = [self._conv_out.reshape(capacity, arch.features)]
        self._dacts = [np.zeros((capacity, arch.features), dtype)]
        self._dpres = [self._dconv.reshape(capacity, arch.features)]
        for _, fan_out in arch.dense_widths:
            self._acts.append(np.zeros((capacity, fan_out), dtype))
            self._dacts.append(np.zeros((capacity, fan_out), dtype))
            self._dpres.append(np.zeros((capacity, fan_out), dtype))
        # Row-slice partial sums of the small-batch dense forward (only used below BLAS_MIN_BATCH).
        rows = min(capacity, BLAS_MIN_BATCH)
        self._partials = [np.zeros((kernels.ROW_CHUNKS, rows, fan_out), dtype) for _, fan_out in arch.dense_widths]
        self._live = np.zeros(capacity, np.int64)  # images with a non-zero output gradient
        self._probs = np.zeros((capacity, arch.classes), dtype)
        self._losses = np.zeros(capacity, dtype)
        self._capacity = capacity
        self._batch = None

    def _conv_work(self, batch):
        """Multiply-adds of the conv layer (forward, or the kernel gradient) for `batch` images."""
        return batch * self.arch.features * self.arch.in_channels * self.arch.kernel_size**2

    def forward(self, x):
        """x (N, C, H, H) -> logits (N, M), a view into the workspace."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        self._workspace(x.shape[0])
        self.x = x
        p = self.params
        sized(kernels.conv_relu_forward, self._conv_work(len(x)))(self.conv_out, x, p["conv_w"], p["conv_b"])
        for layer in range(self.layers):
            relu = layer < self.layers - 1
            out, inp = self.acts[layer + 1], self.acts[layer]
            w, b = p[f"dense{layer}_w"], p[f"dense{layer}_b"]
            if len(x) >= BLAS_MIN_BATCH:
                split_matmul(inp, w, out)
                out += b
                if relu:
                    np.maximum(out, 0, out=out)
            else:
                sized(kernels.dense_forward, inp.size * len(b))(out, self._partials[layer], inp, w, b, relu)
        return self.acts[-1]

    def loss(self, labels):
        """Per-image cross-entropy (N,) of the last forward pass; also sets the logit gradient."""
        kernels.softmax_cross_entropy(self.probs, self.dpres[-1], self.losses, self.acts[-1], labels)
        return self.losses

    def backward(self):
        """Gradients of the SUM of the per-image losses into self.grads."""
        g, p = self.grads, self.params
        for layer in reversed(range(self.layers)):
            dx, dw, db = self.dacts[layer], g[f"dense{layer}_w"], g[f"dense{layer}_b"]
            x, dout, w = self.acts[layer], self.dpres[layer + 1], p[f"dense{layer}_w"]
            if len(x) >= BLAS_MIN_BATCH:
                np.matmul(dout, w.T, out=dx)
                np.matmul(x.T, dout, out=dw)
                np.sum(dout, axis=0, out=db)
            else:
                sized(kernels.dense_backward, x.size * len(db))(dx, dw, db, x, dout, w)
            sized(kernels.relu_backward, x.size)(self.dpres[layer], self.dacts[layer], self.acts[layer])
        sized(kernels.conv_backward, self._conv_work(len(self.x)))(g["conv_w"], g["conv_b"], self.x, self.dconv)
        return g

    def backward_sgd(self, lr):
        """Backward pass fused with plain SGD (params -= lr * grads), as backward + SGD.step would do.

        Each dense weight matrix is read once and written once, skipping the rows and columns
        whose gradient is zero (kernels.dense_backward_sgd); self.grads then holds only the conv
        layer's gradients.
        """
        p, g = self.params, self.grads
        lr = self.dtype.type(lr)
        for layer in reversed(range(self.layers)):
            w = p[f"dense{layer}_w"]
            sized(kernels.dense_backward_sgd, self.acts[layer].shape[0] * w.size)(
                self.dpres[layer], w, p[f"dense{layer}_b"], self._scratch[layer],
                self._cols[layer], self._live, self.acts[layer], self.dpres[layer + 1], lr,
            )
        sized(kernels.conv_backward, self._conv_work(len(self.x)))(g["conv_w"], g["conv_b"], self.x, self.dconv)
        for name in ("conv_w", "conv_b"):
            sized(kernels.sgd_update, p[name].size)(p[name].reshape(-1), g[name].reshape(-1), lr)

    def _scored_batches(self, x, labels, batch):
        """Forward pass and loss over x batch by batch; yields each batch's slice of x.

        After each yield self.probs and self.losses hold that batch's figures.
        """
        for start in range(0, len(x), batch):
            chunk = slice(start, start + batch)
            self.forward(x[chunk])
            self.loss(labels[chunk])
            yield chunk

    def predict_proba(self, x, batch=256):
        """Softmax probabilities (N, M) for inputs x."""
        out = np.empty((len(x), self.arch.classes), dtype=self.dtype)
        unknown = np.zeros(len(x), dtype=np.int64)  # the softmax needs a label; its loss is unused
        for chunk in self._scored_batches(x, unknown, batch):
            out[chunk] = self.probs
        return out

    def evaluate(self, x, labels, batch=256):
        """(mean per-image loss, accuracy, predictions) over a whole set."""
        losses = np.empty(len(x), dtype=np.float64)
        predictions = np.empty(len(x), dtype=np.int64)
        for chunk in self._scored_batches(x, labels, batch):
            losses[chunk] = self.losses
            predictions[chunk] = self.probs.argmax(axis=1)
        return float(losses.mean()), float((predictions == labels).mean()), predictions
