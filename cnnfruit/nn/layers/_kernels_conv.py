"""Tile kernels of the conv layer's products (conv.ConvProducts).

Serial and GIL-free like kernels.py's tile kernels (njit_tile): many run at once, one image each,
on the tile pool's threads, and every sum runs in the order it is written. Shape letters as in
kernels.py, with Q the output width (P x Q output maps) and CSS = C * S * S the taps of a window;
`before` is the zero padding above and left of the input (conv.Conv.pads).

Each image's input is first copied into padded planes, one flat row-major (H + pad) x Wp map per
channel, so that every copy is a run of Q values with no bounds to check. Every loop indexes a
slice by its own loop variable: an index like `start + j` could be negative for all Numba knows,
and its wraparound check kept the copies from vectorising (im2col of 32 channels of 32 x 32: 138
us per image that way, as long as a third of the layer's products; 32 us through slices).
"""
import numpy as np

from cnnfruit.nn.kernels.blas import NO_TRANS, ROW_MAJOR, TRANS, gemm
from cnnfruit.nn.kernels.jit import njit_tile


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
def im2col(cols, xp, S, Wp, P, Q):
    """cols (CSS, >= P * Q): row (c, p, q) holds, at column i * Q + j, the padded input xp[c] at (i + p,
    j + q), for the P x Q outputs; each output row's Q values are one run of the padded plane."""
    C = xp.shape[0]
    for c in range(C):
        plane = xp[c]
        for p in range(S):
            for q in range(S):
                row = cols[(c * S + p) * S + q]
                for i in range(P):
                    start = (i + p) * Wp + q
                    source, target = plane[start:start + Q], row[i * Q:(i + 1) * Q]
                    for j in range(Q):
                        target[j] = source[j]


@njit_tile
def bias_relu_copy(out, product, b):
    """out (K, P, Q) = relu(product[k, i * Q + j] + b[k]): one image's maps from its product (K, >= P * Q)."""
    K, P, Q = out.shape
    for k in range(K):
        bias = b[k]
        for i in range(P):
            source, target = product[k, i * Q:(i + 1) * Q], out[k, i]
            for j in range(Q):
                value = source[j] + bias
                target[j] = value if value > 0 else 0


@njit_tile
def copy_maps(target, dout):
    """target[k, i * Q + j] = dout[k, i, j]: one image's gradient (K, P, Q) into a (K, >= P * Q) buffer."""
    K, P, Q = dout.shape
    for k in range(K):
        for i in range(P):
            source, row = dout[k, i], target[k, i * Q:(i + 1) * Q]
            for j in range(Q):
                row[j] = source[j]


@njit_tile
def col2im(dxp, dcols, S, Wp, P, Q):
    """dxp (C, >= (H + pad) * Wp): the gradient of the padded planes, each value of the columns'
    gradient dcols (CSS, >= P * Q) added back where im2col took it from, tap after tap."""
    C, size = dxp.shape
    for c in range(C):
        for t in range(size):
            dxp[c, t] = 0
    for c in range(C):
        plane = dxp[c]
        for p in range(S):
            for q in range(S):
                row = dcols[(c * S + p) * S + q]
                for i in range(P):
                    start = (i + p) * Wp + q
                    target, source = plane[start:start + Q], row[i * Q:(i + 1) * Q]
                    for j in range(Q):
                        target[j] += source[j]


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


# ---- whole tiles, calling numpy's gemm themselves (kernels/blas.py): no GIL from start to end


@njit_tile
def forward_image(out, x, w2, b, padded, cols, product, S, before, Wp, gemm_at, one_zero):
    """One image's maps out (K, P, Q) = relu(w2 (K, CSS) @ its columns + b). padded, cols and product
    are the worker's buffers, gemm_at the address of numpy's gemm (kernels/blas.py), and one_zero
    holds 1 and 0 in the arrays' float type (gemm's alpha and beta)."""
    K, P, Q = out.shape
    taps, pixels, ld = w2.shape[1], P * Q, cols.shape[1]
    pad_into(padded, x, before, Wp)
    im2col(cols, padded, S, Wp, P, Q)
    gemm(gemm_at, ROW_MAJOR, NO_TRANS, NO_TRANS, K, pixels, taps, one_zero[0], w2.ctypes.data, taps,
         cols.ctypes.data, ld, one_zero[1], product.ctypes.data, ld)
    bias_relu_copy(out, product, b)


@njit_tile
def backward_images(partial_w, partial_b, dx, dout, x, w2, first_image, last_image, padded, dpadded, cols, d, dw_t,
                    S, before, Wp, input_gradient, relu_input, gemm_at, one_zero):
    """Images first_image..last_image - 1 of one tile: their weight gradient summed image after image
    into partial_w (CSS, K) (as w^T), their bias gradient into partial_b (K,), and, if input_gradient,
    each image's input gradient into dx (masked by x > 0 if relu_input). The other arguments are the
    worker's buffers, as in forward_image."""
    K, P, Q = dout.shape[1:]
    taps, pixels, ld = w2.shape[1], P * Q, cols.shape[1]
    for n in range(first_image, last_image):
        first = n == first_image
        pad_into(padded, x[n], before, Wp)
        im2col(cols, padded, S, Wp, P, Q)
        copy_maps(d, dout[n])
        product = partial_w if first else dw_t
        gemm(gemm_at, ROW_MAJOR, NO_TRANS, TRANS, taps, K, pixels, one_zero[0], cols.ctypes.data, ld, d.ctypes.data, ld,
             one_zero[1], product.ctypes.data, K)
        if not first:
            add_into(partial_w, product)
        add_row_sums(partial_b, d[:, :pixels], first)
        if input_gradient:  # the columns are no longer needed: their gradient takes their place
            gemm(gemm_at, ROW_MAJOR, TRANS, NO_TRANS, taps, pixels, K, one_zero[0], w2.ctypes.data, taps,
                 d.ctypes.data, ld, one_zero[1], cols.ctypes.data, ld)
            col2im(dpadded, cols, S, Wp, P, Q)
            crop_mask(dx[n], dpadded, before, Wp, x[n], relu_input)
