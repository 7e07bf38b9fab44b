"""Tile kernels of the 3 x 3 'same' conv layers as Winograd products (winograd.py).

Winograd's F(2 x 2, 3 x 3) gives each 2 x 2 block of a conv layer's output from the 4 x 4 block
of padded input under it, with 16 multiplications per input and output channel instead of 36:

    out block = A^T [ (G w G^T) . (B^T d B) ] A          (. elementwise; d the 4 x 4 input block)

    B^T = | 1  0 -1  0 |     G = | 1    0    0   |     A^T = | 1  1  1  0 |
          | 0  1  1  0 |         | 1/2  1/2  1/2 |           | 0  1 -1 -1 |
          | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
          | 0  1  0 -1 |         | 0    0    1   |

Blocks start every 2 rows and columns, so neighbouring input blocks overlap by 2. Summed over
the input channels, each of the 16 places xi of the transformed blocks is one matrix product:
M[xi] (K, T) = U[xi] (K, C) @ V[xi] (C, T), with U = G w G^T and V = B^T d B for the T blocks of
an image. The backward is the same algebra transposed; with E = A dY A^T, the
transformed 2 x 2 blocks of the output's gradient,

    weight gradient   dw = G^T [ sum over blocks of E . V ] G     per place: (K, T) @ (T, C)
    input gradient    dd = B [ U . E summed over K ] B^T          per place: (C, K) @ (K, T),
                                                                  each 4 x 4 block added in place

The transforms of blocks are additions and subtractions only (the halves of G touch the weights
alone), and the products are 2.25 times smaller than im2col's. Arrays of transformed blocks are
(16, channels, >= T), rows longer than T as the im2col columns are (conv.ConvProducts).

Serial and GIL-free (njit_tile), every sum in the order it is written; shape letters as in
_kernels_conv.py, and th x tw the blocks of one image (its P x Q output rounded up to even
sizes). Every loop reads and writes slices indexed by its own loop variable (see
_kernels_conv.py: computed indices keep loops from vectorising).
"""
import numpy as np

from cnnfruit.nn.kernels.blas import NO_TRANS, ROW_MAJOR, TRANS, gemm
from cnnfruit.nn.kernels.jit import njit_tile
from cnnfruit.nn.layers._kernels_conv import add_into, add_row_sums

PLACES = 16  # the 4 x 4 places of a transformed block


# ---- the weights, once per pass


@njit_tile
def transform_weights(u, w):
    """u (16, K, C) = G w[k, c] G^T for every output and input channel; w (K, C, 3, 3)."""
    K, C = w.shape[:2]
    half = w.dtype.type(0.5)
    rows = np.empty((4, 3), w.dtype)  # G g
    places = np.empty((PLACES, C), w.dtype)  # one kernel's, written to u place by place: 16 runs, not 16 strides
    for k in range(K):
        for c in range(C):
            g = w[k, c]
            for col in range(3):
                rows[0, col] = g[0, col]
                rows[1, col] = half * (g[0, col] + g[1, col] + g[2, col])
                rows[2, col] = half * (g[0, col] - g[1, col] + g[2, col])
                rows[3, col] = g[2, col]
            for a in range(4):
                r0, r1, r2 = rows[a, 0], rows[a, 1], rows[a, 2]
                places[a * 4 + 0, c] = r0
                places[a * 4 + 1, c] = half * (r0 + r1 + r2)
                places[a * 4 + 2, c] = half * (r0 - r1 + r2)
                places[a * 4 + 3, c] = r2
        for place in range(PLACES):
            target, source = u[place, k], places[place]
            for c in range(C):
                target[c] = source[c]


@njit_tile
def weight_gradient(dw, s):
    """dw (K, C, 3, 3) = G^T s[:, k, c] G: the weight gradient from its transformed sum s (16, K, C)."""
    K, C = dw.shape[:2]
    half = dw.dtype.type(0.5)
    rows = np.empty((3, 4), dw.dtype)  # G^T s
    places = np.empty((PLACES, C), dw.dtype)  # one kernel's, read from s place by place, as 16 runs
    for k in range(K):
        for place in range(PLACES):
            target, source = places[place], s[place, k]
            for c in range(C):
                target[c] = source[c]
        for c in range(C):
            for b in range(4):
                s0, s1, s2, s3 = places[b, c], places[4 + b, c], places[8 + b, c], places[12 + b, c]
                rows[0, b] = s0 + half * (s1 + s2)
                rows[1, b] = half * (s1 - s2)
                rows[2, b] = half * (s1 + s2) + s3
            for p in range(3):
                r0, r1, r2, r3 = rows[p, 0], rows[p, 1], rows[p, 2], rows[p, 3]
                dw[k, c, p, 0] = r0 + half * (r1 + r2)
                dw[k, c, p, 1] = half * (r1 - r2)
                dw[k, c, p, 2] = half * (r1 + r2) + r3


# ---- the blocks of one image
#
# The padded input is kept as four phase planes, (row, column) even or odd: phase (r, s) holds
# the padded map's values at (2I + r, 2J + s), as flat rows of W1 = tw + 1 values. Value (p, q)
# of the block at (i, j) is then phase (p % 2, q % 2) at I = i + p // 2, J = j + q // 2, and
# every place of every block of a map is one run of a phase plane: each transform is a few
# loops over th * W1 blocks, long enough to vectorise. The price is one unused block per row of
# blocks (j = tw), kept in the arrays of transformed blocks: its output is never read, and its
# output gradient is 0, so it adds nothing to the weight gradient and 0 to the input gradient.


@njit_tile
def phase_rows(phases, r, W1):
    """Where row r of a map lives in its phase planes phases (4, >= (th + 1) * W1 + 1): the runs
    (even, odd) holding the padded row's even columns 2J (the map's 2J - 1) and odd ones 2J + 1
    (the map's 2J)."""
    row = r + 1  # one row of padding above
    start = (row // 2) * W1
    return (phases[(row % 2) * 2, start:start + W1], phases[(row % 2) * 2 + 1, start:start + W1])


@njit_tile
def split_phases(phases, x, th, tw):
    """phases (C, 4, >= (th + 1) * W1 + 1): the phase planes of x (C, H, W) padded by one row and
    column of zeros before (and after, to even sizes); the padding is left as it is (zeros)."""
    C, H, W = x.shape
    W1, pairs = tw + 1, W // 2
    for c in range(C):
        for r in range(H):
            source = x[c, r]
            even, odd = phase_rows(phases[c], r, W1)
            for j in range(pairs):  # one loop for both, which LLVM vectorises as one interleaved load
                odd[j] = source[2 * j]
                even[j + 1] = source[2 * j + 1]
            if W % 2:
                odd[pairs] = source[W - 1]


@njit_tile
def transform_inputs(v, phases, th, tw):
    """v[:, c, i * W1 + j] = B^T d B for the 4 x 4 block d at row 2i and column 2j of
    the padded map whose phase planes are phases[c]; one image's blocks."""
    C = phases.shape[0]
    W1 = tw + 1
    L = th * W1
    columns = np.empty((4, 4, L), v.dtype)  # columns[a, q]: (B^T d)[a, q] of every block
    for c in range(C):
        for q in range(4):
            s, shift = q % 2, q // 2
            d0, d1 = phases[c, s, shift:shift + L], phases[c, 2 + s, shift:shift + L]
            d2, d3 = phases[c, s, W1 + shift:W1 + shift + L], phases[c, 2 + s, W1 + shift:W1 + shift + L]
            t0, t1, t2, t3 = columns[0, q], columns[1, q], columns[2, q], columns[3, q]
            for f in range(L):
                t0[f] = d0[f] - d2[f]
                t1[f] = d1[f] + d2[f]
                t2[f] = d2[f] - d1[f]
                t3[f] = d1[f] - d3[f]
        for a in range(4):
            e0, e1, e2, e3 = columns[a, 0], columns[a, 1], columns[a, 2], columns[a, 3]
            o0, o1 = v[a * 4 + 0, c, :L], v[a * 4 + 1, c, :L]
            o2, o3 = v[a * 4 + 2, c, :L], v[a * 4 + 3, c, :L]
            for f in range(L):
                o0[f] = e0[f] - e2[f]
                o1[f] = e1[f] + e2[f]
                o2[f] = e2[f] - e1[f]
                o3[f] = e1[f] - e3[f]


@njit_tile
def transform_outputs(out, m, b, th, tw):
    """out (K, P, Q) = relu(A^T m A + b[k]) from one image's blocks of m (16, K, >= T)."""
    K, P, Q = out.shape
    W1 = tw + 1
    L = th * W1
    rows = np.empty((2, 4, L), m.dtype)  # (A^T m)[r, q] of every block
    y = np.empty((2, 2, L), m.dtype)  # the outputs (r, s) of every block
    for k in range(K):
        bias = b[k]
        for q in range(4):
            m0, m1 = m[q, k, :L], m[4 + q, k, :L]
            m2, m3 = m[8 + q, k, :L], m[12 + q, k, :L]
            upper, lower = rows[0, q], rows[1, q]
            for f in range(L):
                upper[f] = m0[f] + m1[f] + m2[f]
                lower[f] = m1[f] - m2[f] - m3[f]
        for r in range(2):
            q0, q1, q2, q3 = rows[r, 0], rows[r, 1], rows[r, 2], rows[r, 3]
            left, right = y[r, 0], y[r, 1]
            for f in range(L):
                value = q0[f] + q1[f] + q2[f] + bias
                left[f] = value if value > 0 else 0
                value = q1[f] - q2[f] - q3[f] + bias
                right[f] = value if value > 0 else 0
        for i in range(th):
            for r in range(min(2, P - 2 * i)):
                target = out[k, 2 * i + r]
                left, right = y[r, 0, i * W1:i * W1 + tw], y[r, 1, i * W1:i * W1 + tw]
                for j in range(Q // 2):
                    target[2 * j] = left[j]
                    target[2 * j + 1] = right[j]
                if Q % 2:
                    target[Q - 1] = left[Q // 2]


@njit_tile
def transform_gradients(e, dy, th, tw):
    """e[:, k, i * W1 + j] = A y A^T for the 2 x 2 block y of dy[k] (K, P, Q) at row 2i
    and column 2j (0 beyond the map), for one image's blocks; 0 for the unused blocks j = tw.
    A = (A^T)^T has rows (1, 0), (1, 1), (1, -1), (0, -1)."""
    K, P, Q = dy.shape
    W1 = tw + 1
    L = th * W1
    split = np.zeros((2, 2, L), dy.dtype)  # dy's values (r, s) of every block; what no value reaches stays 0
    columns = np.empty((4, 2, L), dy.dtype)  # (A y)[a, s] of every block
    for k in range(K):
        for i in range(th):
            for r in range(min(2, P - 2 * i)):
                source = dy[k, 2 * i + r]
                left, right = split[r, 0, i * W1:i * W1 + tw], split[r, 1, i * W1:i * W1 + tw]
                for j in range(Q // 2):
                    left[j] = source[2 * j]
                    right[j] = source[2 * j + 1]
                if Q % 2:
                    left[Q // 2] = source[Q - 1]
        for s in range(2):
            y0, y1 = split[0, s], split[1, s]
            t0, t1, t2, t3 = columns[0, s], columns[1, s], columns[2, s], columns[3, s]
            for f in range(L):
                t0[f] = y0[f]
                t1[f] = y0[f] + y1[f]
                t2[f] = y0[f] - y1[f]
                t3[f] = -y1[f]
        for a in range(4):
            z0, z1 = columns[a, 0], columns[a, 1]
            o0, o1 = e[a * 4 + 0, k, :L], e[a * 4 + 1, k, :L]
            o2, o3 = e[a * 4 + 2, k, :L], e[a * 4 + 3, k, :L]
            for f in range(L):
                o0[f] = z0[f]
                o1[f] = z0[f] + z1[f]
                o2[f] = z0[f] - z1[f]
                o3[f] = -z1[f]


@njit_tile
def add_input_blocks(dphases, mx, th, tw):
    """dphases (C, 4, >= (th + 1) * W1 + 1) = the phase planes of the sum of B x B^T over one image's
    blocks x of mx (16, C, >= T), each 4 x 4 result added where its block lies; the places of a
    block are added one after another, (0, 0) to (3, 3), each over all the blocks."""
    C = dphases.shape[0]
    W1 = tw + 1
    L = th * W1
    for c in range(C):
        for phase in range(4):
            for t in range(dphases.shape[2]):
                dphases[c, phase, t] = 0
    rows = np.empty((4, 4, L), mx.dtype)  # (B x)[p, q] of every block
    for c in range(C):
        for q in range(4):
            x0, x1 = mx[q, c, :L], mx[4 + q, c, :L]
            x2, x3 = mx[8 + q, c, :L], mx[12 + q, c, :L]
            r0, r1, r2, r3 = rows[0, q], rows[1, q], rows[2, q], rows[3, q]
            for f in range(L):
                r0[f] = x0[f]
                r1[f] = x1[f] - x2[f] + x3[f]
                r2[f] = x1[f] + x2[f] - x0[f]
                r3[f] = -x3[f]
        for p in range(4):
            q0, q1, q2, q3 = rows[p, 0], rows[p, 1], rows[p, 2], rows[p, 3]
            shift = (p // 2) * W1
            target = dphases[c, (p % 2) * 2, shift:shift + L]  # places (p, 0): phase (p % 2, 0), no shift
            for f in range(L):
                target[f] += q0[f]
            target = dphases[c, (p % 2) * 2 + 1, shift:shift + L]  # (p, 1)
            for f in range(L):
                target[f] += q1[f] - q2[f] + q3[f]
            target = dphases[c, (p % 2) * 2, shift + 1:shift + 1 + L]  # (p, 2)
            for f in range(L):
                target[f] += q1[f] + q2[f] - q0[f]
            target = dphases[c, (p % 2) * 2 + 1, shift + 1:shift + 1 + L]  # (p, 3)
            for f in range(L):
                target[f] -= q3[f]


@njit_tile
def merge_phases(dx, dphases, x, tw, relu_input):
    """dx (C, H, W) = the interior of the map whose phase planes are dphases, 0 where x <= 0 if
    relu_input: split_phases undone."""
    C, H, W = dx.shape
    W1, pairs = tw + 1, W // 2
    for c in range(C):
        for r in range(H):
            even, odd = phase_rows(dphases[c], r, W1)
            target, below = dx[c, r], x[c, r]
            if relu_input:
                for j in range(pairs):
                    left, right = odd[j], even[j + 1]
                    target[2 * j] = left if below[2 * j] > 0 else 0
                    target[2 * j + 1] = right if below[2 * j + 1] > 0 else 0
            else:
                for j in range(pairs):
                    target[2 * j] = odd[j]
                    target[2 * j + 1] = even[j + 1]
            if W % 2:
                target[W - 1] = odd[pairs] if (below[W - 1] > 0 or not relu_input) else 0


# ---- whole tiles, calling numpy's gemm themselves (as _kernels_conv.forward_image does)


@njit_tile
def forward_image(out, x, u, b, phases, v, m, th, tw, gemm_at, one_zero):
    """One image's maps out (K, P, Q) = relu(conv(x, w) + b), from u = G w G^T (transform_weights);
    phases, v and m are the worker's buffers, gemm_at and one_zero as in _kernels_conv.forward_image."""
    K, C = u.shape[1:]
    blocks, ld = th * (tw + 1), v.shape[2]
    split_phases(phases, x, th, tw)
    transform_inputs(v, phases, th, tw)
    for place in range(PLACES):
        gemm(gemm_at, ROW_MAJOR, NO_TRANS, NO_TRANS, K, blocks, C, one_zero[0], u[place].ctypes.data, C,
             v[place].ctypes.data, ld, one_zero[1], m[place].ctypes.data, ld)
    transform_outputs(out, m, b, th, tw)


@njit_tile
def backward_images(partial_u, partial_b, dx, dout, x, u, first_image, last_image, phases, dphases, v, e, mx, scratch,
                    th, tw, input_gradient, relu_input, gemm_at, one_zero):
    """Images first_image..last_image - 1 of one tile, one after another: their transformed weight
    gradient summed into partial_u (16, K, C), image after image (through scratch, like it), their
    bias gradient into partial_b (K,), and, if input_gradient, each image's input gradient into dx
    (masked by x > 0 if relu_input)."""
    K, C = u.shape[1:]
    P, Q = dout.shape[2:]
    blocks, ld = th * (tw + 1), v.shape[2]
    for n in range(first_image, last_image):
        first = n == first_image
        split_phases(phases, x[n], th, tw)
        transform_inputs(v, phases, th, tw)
        transform_gradients(e, dout[n], th, tw)
        add_row_sums(partial_b, dout[n].reshape(K, P * Q), first)
        product = partial_u if first else scratch
        for place in range(PLACES):
            gemm(gemm_at, ROW_MAJOR, NO_TRANS, TRANS, K, C, blocks, one_zero[0], e[place].ctypes.data, ld,
                 v[place].ctypes.data, ld, one_zero[1], product[place].ctypes.data, C)
        if not first:
            add_into(partial_u.reshape(PLACES * K, C), scratch.reshape(PLACES * K, C))
        if input_gradient:
            for place in range(PLACES):
                gemm(gemm_at, ROW_MAJOR, TRANS, NO_TRANS, C, blocks, K, one_zero[0], u[place].ctypes.data, C,
                     e[place].ctypes.data, ld, one_zero[1], mx[place].ctypes.data, ld)
            add_input_blocks(dphases, mx, th, tw)
            merge_phases(dx[n], dphases, x[n], tw, relu_input)
