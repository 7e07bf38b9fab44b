"""Deterministic tiled products: wide dense-layer products cut into tiles, run on a few threads.

Every product here is cut into tiles whose edges depend on the shapes alone, never on how many
threads run them. A tile is one single-threaded BLAS call (numpy's matmul) or a serial Numba
kernel compiled without the GIL (kernels/tiles.py); no two tiles write the same element
and no sum crosses a tile edge. A pool of Python threads hands the tiles out as they come (numpy
and those kernels release the GIL), so both cores work and the result is the same bits with one
worker or many.

OpenBLAS must run on one thread: its sums change with its own thread count (tests/
test_determinism.py), and two workers each calling a threaded OpenBLAS would also fight over the
cores. threads.py holds it there (configure_threads, one_blas_thread).

    forward:   out (N, O) = relu(x (N, I) @ w (I, O) + b)      tiles: column slices of w and out
    backward:  for each row tile [r0, r1) of w (I, O), on its live block: the images whose dout
               row is not all zero, the rows (inputs) that some of them use, the columns (units)
               where some of them has a non-zero gradient, gathered into per-worker buffers:
                 dx[:, r0:r1] = (dout @ w[r0:r1].T) where x > 0, else 0     one sgemm + a mask
                 g            = x[:, r0:r1].T @ dout                        one sgemm, in scratch
                 w[r0:r1]     updated from g by the optimizer's tile kernel, while g is in cache
               dx uses each row of w before its update; db = dout summed over the images.
"""
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cnnfruit.nn import kernels

# Forward tiles are equal column slices of w, about this wide at most: the 841-unit layer gets 4,
# which share out evenly over two workers; wider tiles re-read x fewer times (one thread, batch
# 256: 2 tiles 32.0 ms, 4 tiles 34.6, 7 tiles 35.8, one sgemm 31.0).
COLUMN_TILE = 256
# Backward tiles are row slices of w of about this many rows: a tile's live block (below) of the
# 841-unit layer stays within a core's 1 MiB L2 from its gather to its update, and the 26 tiles
# of the 6728-row layer keep both workers busy to the end.
TILE_ROWS = 256
# A tile whose live block (live rows x live columns) is at least this share of the whole tile
# runs its products on the whole tile. Not measured at the crossover: the gather copies the block
# of w once, about 1/(2L) of the block's multiply-adds for L live images, so it pays for itself
# well before this share; the margin keeps nearly-full tiles from copying for a few percent.
GATHER_BELOW = 0.85


def column_edges(columns):
    """Edges of the forward's column tiles: equal slices, none wider than COLUMN_TILE."""
    tiles = -(-columns // COLUMN_TILE)
    return [columns * t // tiles for t in range(tiles + 1)]


def row_edges(rows):
    """Edges of the backward's row tiles: equal slices of about TILE_ROWS rows."""
    tiles = max(1, round(rows / TILE_ROWS))
    return [rows * t // tiles for t in range(tiles + 1)]


class TilePool:
    """`workers` threads that run the tiles of one product at a time; the caller is one of them."""

    def __init__(self, workers):
        if workers < 1:
            raise ValueError(f"a tile pool needs at least 1 worker, got {workers}")
        self.workers = workers
        self._helpers = ThreadPoolExecutor(workers - 1, thread_name_prefix="cnnfruit-tile") if workers > 1 else None

    def run(self, tile, count):
        """Calls tile(t, worker) for t in 0..count-1, each once, on any worker (0..workers-1).

        The tiles are taken in order from a shared counter, so a worker held up by other work on
        the machine simply takes fewer; `worker` indexes per-worker scratch buffers only.
        """
        if self._helpers is None or count < 2:
            for t in range(count):
                tile(t, 0)
            return
        counter = itertools.count()  # next() on it is atomic under the GIL

        def drain(worker):
            t = next(counter)
            while t < count:
                tile(t, worker)
                t = next(counter)

        helpers = [self._helpers.submit(drain, w) for w in range(1, min(self.workers, count))]
        try:
            drain(0)
        finally:
            for job in helpers:
                job.result()

    def close(self):
        if self._helpers is not None:
            self._helpers.shutdown()


_default_pool = None


def default_pool():
    """The shared pool, with as many workers as Numba uses threads (numba.get_num_threads())."""
    global _default_pool
    import numba

    workers = numba.get_num_threads()
    if _default_pool is None or _default_pool.workers != workers:
        if _default_pool is not None:
            _default_pool.close()
        _default_pool = TilePool(workers)
    return _default_pool


def dense_forward(pool, out, x, w, b, relu):
    """out (N, O) = x (N, I) @ w (I, O) + b (O,), then ReLU if relu; by column tiles of w."""
    edges = column_edges(w.shape[1])

    def tile(t, worker):
        lo, hi = edges[t], edges[t + 1]
        np.matmul(x, w[:, lo:hi], out=out[:, lo:hi])
        kernels.bias_relu(out[:, lo:hi], b[lo:hi], relu)

    pool.run(tile, len(edges) - 1)


class TileUpdate:
    """How the optimizer changes rows r0:r1 of one weight matrix, given their gradient g (R, O).

    `rows` is required; `sparse` says a zero gradient leaves the weights exactly as they are
    (plain SGD), which lets the backward leave out rows and columns whose gradient is zero and
    call `gathered` with the live block only. Subclasses live with the optimizers (optimizers.py).
    """

    sparse = False

    def rows(self, r0, r1, g):
        raise NotImplementedError

    def gathered(self, rows, cols, ncols, g):
        """Update w[rows[r], cols[t]] from g[r, t] (t < ncols); only where sparse is True."""
        raise NotImplementedError


class DenseBackward:
    """The tiled backward of one dense layer fused with its weight update, with its buffers.

    Buffers are sized for up to `capacity` images and one set of tile buffers per worker.
    Only the live block of each row tile enters the products: the images whose output gradient
    is not all zero, the columns (units) where some live image has a non-zero output gradient,
    and the rows (inputs) that some live image uses (a zero input adds nothing to w's gradient,
    and its input gradient is masked to 0 by the ReLU that made it).
    """

    def __init__(self, fan_in, fan_out, capacity, dtype, workers):
        self.edges = row_edges(fan_in)
        self._edges = np.array(self.edges, np.int64)
        rows = max(hi - lo for lo, hi in zip(self.edges[:-1], self.edges[1:]))
        self.live = np.zeros(capacity, np.int64)
        self.cols = np.zeros(fan_out, np.int64)
        self.rows = np.zeros(fan_in, np.int64)
        self.starts = np.zeros(len(self.edges), np.int64)
        self.x_live = np.zeros((capacity, fan_in), dtype)
        self.dout_live = np.zeros((capacity, fan_out), dtype)
        self.dout_cols = np.zeros((capacity, fan_out), dtype)
        self.dx_live = np.zeros((capacity, fan_in), dtype)
        # per worker: the live block of w, of x and of dx, its gradient, the gradient spread out
        self.wg = [np.zeros((rows, fan_out), dtype) for _ in range(workers)]
        self.xg = [np.zeros((capacity, rows), dtype) for _ in range(workers)]
        self.dxg = [np.zeros((capacity, rows), dtype) for _ in range(workers)]
        self.g = [np.zeros((rows, fan_out), dtype) for _ in range(workers)]
        self.gd = [np.zeros((rows, fan_out), dtype) for _ in range(workers)]
        self.capacity = capacity

    def run(self, pool, dx, db, x, dout, w, update):
        """dx (N, I) = ReLU-masked dout @ w.T; db (O,) = dout summed over N; w updated in place.

        x (N, I) is the layer's input, a ReLU output (hence the mask). Returns the number of live
        images (dout row not all zero); the others get dx = 0 and add nothing.
        """
        N, O = dout.shape
        if N > self.capacity or len(self.g) < pool.workers:
            raise ValueError("DenseBackward buffers are smaller than this batch or this pool")
        count = kernels.nonzero_columns(self.live, dout.T)
        if count == N:
            x_live, dout_live = x, dout
        else:
            x_live, dout_live = self.x_live[:count], self.dout_live[:count]
            kernels.gather_rows(x_live, x, self.live, count)
            kernels.gather_rows(dout_live, dout, self.live, count)
        kernels.live_column_sums(db, dout_live, count)
        ncols = kernels.nonzero_columns(self.cols, dout_live) if count else 0
        if ncols == O:
            dout_c = dout_live
        else:
            dout_c = self.dout_cols[:count, :ncols]
            kernels.gather_columns(dout_c, dout_live, self.cols, ncols)
        kernels.live_rows_by_tile(self.rows, self.starts, x_live, count, self._edges)
        live, rows, starts, cols, dx_live = self.live, self.rows, self.starts, self.cols, self.dx_live[:count]
        edges, sparse = self.edges, update.sparse

        def tile(t, worker):
            r0, r1 = edges[t], edges[t + 1]
            tile_rows = rows[starts[t]:starts[t + 1]]
            R = len(tile_rows)
            if R == 0 or ncols == 0:  # no live image, unit or input here: no gradient at all
                dx[:, r0:r1] = 0
                if not sparse:
                    g = self.gd[worker][:r1 - r0]
                    g[...] = 0
                    update.rows(r0, r1, g)
                return
            if R * ncols >= GATHER_BELOW * (r1 - r0) * O:
                np.matmul(dout_live, w[r0:r1].T, out=dx_live[:, r0:r1])
                kernels.relu_mask_scatter(dx[:, r0:r1], dx_live[:, r0:r1], x_live[:, r0:r1], live, count)
                g = self.g[worker][:r1 - r0]
                np.matmul(x_live[:, r0:r1].T, dout_live, out=g)
                update.rows(r0, r1, g)
                return
            wg, xg = self.wg[worker][:R, :ncols], self.xg[worker][:count, :R]
            kernels.gather_tile(wg, xg, w, x_live, tile_rows, cols, ncols, count)
            dxg = self.dxg[worker][:count, :R]
            np.matmul(dout_c, wg.T, out=dxg)
            kernels.scatter_dx_tile(dx[:, r0:r1], dxg, xg, live, count, tile_rows, r0)
            g = self.g[worker][:R, :ncols]
            np.matmul(xg.T, dout_c, out=g)
            if sparse:
                update.gathered(tile_rows, cols, ncols, g)
            else:
                gd = self.gd[worker][:r1 - r0]
                kernels.scatter_gradient_tile(gd, g, tile_rows, r0, cols, ncols)
                update.rows(r0, r1, gd)

        pool.run(tile, len(edges) - 1)
        return count
