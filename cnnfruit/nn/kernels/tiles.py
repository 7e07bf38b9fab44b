"""Tile kernels: serial and GIL-free, each run on one tile of a dense product by a worker of
tiled.py, between and around its BLAS calls (njit_tile in jit.py says why they are compiled so)."""
from cnnfruit.nn.kernels.jit import njit_tile


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
