"""Tile kernels of the conv layer's products (conv.ConvProducts).

Serial and GIL-free like kernels.py's tile kernels (njit_tile): many run at once, one image each,
on the tile pool's threads, and every sum runs in the order it is written. Shape letters as in
kernels.py, with Q the output width (P x Q output maps) and CSS = C * S * S the taps of a window;
`before` is the zero padding above and left of the input (conv.Conv.pads).

The products work on a "wide" grid (conv.ConvProducts): each padded input plane is one flat run
of Wp-wide rows, so the pixels a tap reads for all outputs are one contiguous run of L = P * Wp
values. im2col is then CSS copies of L values each, instead of CSS * P short ones (measured on
the 32 x 32 maps of 32 channels: 286 us for the short copies, as long as the product itself).
Every loop indexes a slice by its own loop variable: an index like `start + l` could be negative
for all Numba knows, and its wraparound check kept the copy from vectorising (138 us, against
19 us through a slice of the run).
"""
import numpy as np

from cnnfruit.nn.kernels import njit_tile


@njit_tile
def pad_into(xp, x, before, Wp):
    """One image x (C, H, W) into its padded planes xp (C, >= (H + pad) * Wp), each a flat row-major
    (H + pad) x Wp map, at row and column `before`; the border is left as it is (zeros)."""
    C, H, W = x.shape
    for c in range(C):
        for r in range(H):
            base = (r + before) * Wp + before
            target, source = xp[c, base:base + W], x[c, r]
            for col in range(W):
                target[col] = source[col]


@njit_tile
def im2col_wide(cols, xp, S, Wp):
    """cols (CSS, L): row (c, p, q) is the run of L padded pixels of plane c from (p, q) on, so that
    column l = i * Wp + j of the product w @ cols is the output (i, j) for j < Q; columns j >= Q
    wrap into the next row and are ignored."""
    L = cols.shape[1]
    C = xp.shape[0]
    for c in range(C):
        for p in range(S):
            for q in range(S):
                row = cols[(c * S + p) * S + q]
                start = p * Wp + q
                run = xp[c, start:start + L]
                for l in range(L):
                    row[l] = run[l]


@njit_tile
def crop_bias_relu(out, wide, b, Wp):
    """out (K, P, Q) = relu(wide[k, i * Wp + j] + b[k]): the output maps of one image from its product."""
    K, P, Q = out.shape
    for k in range(K):
        bias = b[k]
        for i in range(P):
            base = i * Wp
            source, target = wide[k, base:base + Q], out[k, i]
            for j in range(Q):
                value = source[j] + bias
                target[j] = value if value > 0 else 0


@njit_tile
def widen(wide, dout, Wp):
    """wide[k, i * Wp + j] = dout[k, i, j] (K, P, Q); the columns j >= Q are left as they are (zeros)."""
    K, P, Q = dout.shape
    for k in range(K):
        for i in range(P):
            base = i * Wp
            target, source = wide[k, base:base + Q], dout[k, i]
            for j in range(Q):
                target[j] = source[j]


@njit_tile
def col2im_wide(dxp, dcols, S, Wp):
    """dxp (C, >= (H + pad) * Wp): the gradient of the padded planes, each row of dcols (CSS, L)
    added back over the run of pixels im2col_wide took it from, tap after tap."""
    C, size = dxp.shape
    L = dcols.shape[1]
    for c in range(C):
        for t in range(size):
            dxp[c, t] = 0
    for c in range(C):
        for p in range(S):
            for q in range(S):
                row = dcols[(c * S + p) * S + q]
                start = p * Wp + q
                run = dxp[c, start:start + L]
                for l in range(L):
                    run[l] += row[l]


@njit_tile
def crop_mask(dx, dxp, before, Wp, x, relu_input):
    """dx (C, H, W) = the interior of the padded gradient dxp; 0 where x <= 0 if relu_input."""
    C, H, W = dx.shape
    for c in range(C):
        for r in range(H):
            base = (r + before) * Wp + before
            source, target, below = dxp[c, base:base + W], dx[c, r], x[c, r]
            for col in range(W):
                target[col] = source[col] if (below[col] > 0 or not relu_input) else 0


@njit_tile
def add_into(total, part):
    """total += part, both (R, D)."""
    R, D = total.shape
    for r in range(R):
        for d in range(D):
            total[r, d] += part[r, d]


LANES = 16  # running sums of add_row_sums: a loop without a reduction in it vectorises without reassoc


@njit_tile
def add_row_sums(db, d, first):
    """db[k] (+)= the sum of row k of d (K, PQ), in LANES running sums added in order at the end;
    db is overwritten when first."""
    K, pixels = d.shape
    lanes = np.zeros(LANES, d.dtype)
    whole = pixels - pixels % LANES
    for k in range(K):
        row = d[k]
        for lane in range(LANES):
            lanes[lane] = 0
        for start in range(0, whole, LANES):
            chunk = row[start:start + LANES]
            for lane in range(LANES):
                lanes[lane] += chunk[lane]
        total = lanes[0]
        for lane in range(1, LANES):
            total += lanes[lane]
        for j in range(whole, pixels):
            total += row[j]
        db[k] = total if first else db[k] + total


@njit_tile
def sum_tiles(out, partials):
    """out (D,) = partials[0] + partials[1] + ... (T, D), in that order."""
    T, D = partials.shape
    for d in range(D):
        out[d] = partials[0, d]
    for t in range(1, T):
        for d in range(D):
            out[d] += partials[t, d]
