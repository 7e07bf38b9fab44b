"""Tile kernels of the conv layer's products (conv.ConvProducts) and of its padded direct path.

Serial and GIL-free like kernels.py's tile kernels (njit_tile): many run at once, one image each,
on the tile pool's threads, and every sum runs in the order it is written. Shape letters as in
kernels.py, with Q the output width (P x Q output maps) and CSS = C * S * S the taps of a window;
`before` is the zero padding above and left of the input (conv.Conv.pads).
"""
from cnnfruit.nn.kernels import njit_tile


@njit_tile
def im2col(cols, x, S, before, P, Q):
    """cols (CSS, P * Q): row (c, p, q) holds x[c, i + p - before, j + q - before] at column i * Q + j,
    0 outside the image x (C, H, W)."""
    C, H, W = x.shape
    for c in range(C):
        for p in range(S):
            for q in range(S):
                row = cols[(c * S + p) * S + q]
                lo = min(Q, max(0, before - q))  # the columns j whose input column j + q - before is in x
                hi = max(lo, min(Q, W + before - q))
                for i in range(P):
                    r = i + p - before
                    base = i * Q
                    if r < 0 or r >= H:
                        for j in range(Q):
                            row[base + j] = 0
                        continue
                    for j in range(lo):
                        row[base + j] = 0
                    shift = q - before
                    for j in range(lo, hi):
                        row[base + j] = x[c, r, j + shift]
                    for j in range(hi, Q):
                        row[base + j] = 0


@njit_tile
def im2col_t(cols_t, x, S, before, P, Q):
    """im2col transposed: cols_t (P * Q, CSS), so that dout (K, PQ) @ cols_t is a plain product."""
    C, H, W = x.shape
    for i in range(P):
        for j in range(Q):
            row = cols_t[i * Q + j]
            for c in range(C):
                for p in range(S):
                    r = i + p - before
                    t = (c * S + p) * S
                    if r < 0 or r >= H:
                        for q in range(S):
                            row[t + q] = 0
                        continue
                    for q in range(S):
                        column = j + q - before
                        row[t + q] = x[c, r, column] if 0 <= column < W else 0


@njit_tile
def col2im(dx, dcols, x, S, before, P, Q, relu_input):
    """dx (C, H, W) = the columns' gradients dcols (CSS, P * Q) added back where im2col took them,
    tap after tap; then 0 where x <= 0 if relu_input (x is a ReLU's output)."""
    C, H, W = dx.shape
    for c in range(C):
        for r in range(H):
            for col in range(W):
                dx[c, r, col] = 0
    for c in range(C):
        for p in range(S):
            for q in range(S):
                row = dcols[(c * S + p) * S + q]
                lo = min(Q, max(0, before - q))
                hi = max(lo, min(Q, W + before - q))
                shift = q - before
                for i in range(P):
                    r = i + p - before
                    if r < 0 or r >= H:
                        continue
                    base = i * Q
                    for j in range(lo, hi):
                        dx[c, r, j + shift] += row[base + j]
    if relu_input:
        for c in range(C):
            for r in range(H):
                for col in range(W):
                    if not x[c, r, col] > 0:
                        dx[c, r, col] = 0


@njit_tile
def bias_relu_rows(out, b):
    """out (K, PQ) = relu(out + b[k]) in place: one image's maps after their product."""
    K, pixels = out.shape
    for k in range(K):
        bias = b[k]
        for j in range(pixels):
            value = out[k, j] + bias
            out[k, j] = value if value > 0 else 0


@njit_tile
def add_into(total, part):
    """total += part, both (R, D)."""
    R, D = total.shape
    for r in range(R):
        for d in range(D):
            total[r, d] += part[r, d]


@njit_tile
def add_row_sums(db, d, first):
    """db[k] (+)= the sum of row k of d (K, PQ), left to right; db is overwritten when first."""
    K, pixels = d.shape
    for k in range(K):
        total = d[k, 0]
        for j in range(1, pixels):
            total += d[k, j]
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


@njit_tile
def crop(dx, dpadded, before):
    """dx (N, C, H, W) = the interior of dpadded (N, C, H + pad, W + pad) that starts at (before, before)."""
    N, C, H, W = dx.shape
    for n in range(N):
        for c in range(C):
            for r in range(H):
                for col in range(W):
                    dx[n, c, r, col] = dpadded[n, c, r + before, col + before]


@njit_tile
def relu_mask(dx, x):
    """dx = 0 where x <= 0, in place; both (N, C, H, W)."""
    N, C, H, W = dx.shape
    for n in range(N):
        for c in range(C):
            for r in range(H):
                for col in range(W):
                    if not x[n, c, r, col] > 0:
                        dx[n, c, r, col] = 0
