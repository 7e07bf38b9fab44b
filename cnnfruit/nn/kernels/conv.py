"""The conv layer (valid, stride 1): the forward fused with bias and ReLU, the kernel and bias
gradient, and the input gradient that only explanations need."""
import numpy as np

from cnnfruit.nn.kernels.jit import njit_parallel_ordered, numba, serial_twin


@njit_parallel_ordered
def conv_relu_forward(out, x, w, b):
    """out (N, K, P, P) = relu(conv(x (N, C, H, H), w (K, C, S, S)) + b (K,)); x C-ordered.

    Each output plane is computed as one flat run of (P - 1) * H + P numbers laid over the input
    plane's rows: output (i, j) sits at i * H + j, and tap (p, q) reads the input at that index
    plus p * H + q, so every tap is one unit-stride pass with no ragged row ends (the H - P
    entries between output rows are computed and dropped). Taps are added four at a time, each
    output element starting from its bias and adding the taps in (c, p, q) order: the same sums
    in the same order as one tap per pass, written once instead of four times (2x faster at batch
    256 than a pass per tap over the P x P plane). Parallel over (n, k): each owns out[n, k].
    """
    N, C, H, _ = x.shape
    K, _, S, _ = w.shape
    P = H - S + 1
    L = (P - 1) * H + P
    xf = x.reshape(N * C * H * H)
    for nk in numba.prange(N * K):
        n, k = nk // K, nk % K
        wide = np.empty(L, out.dtype)
        for t in range(L):
            wide[t] = b[k]
        for c in range(C):
            for p in range(S):
                row = (n * C + c) * H * H + p * H
                q = 0
                while q + 4 <= S:
                    w0, w1, w2, w3 = w[k, c, p, q], w[k, c, p, q + 1], w[k, c, p, q + 2], w[k, c, p, q + 3]
                    src = xf[row + q:row + q + L + 3]
                    for t in range(L):
                        wide[t] = (((wide[t] + w0 * src[t]) + w1 * src[t + 1]) + w2 * src[t + 2]) + w3 * src[t + 3]
                    q += 4
                while q < S:
                    w0 = w[k, c, p, q]
                    src = xf[row + q:row + q + L]
                    for t in range(L):
                        wide[t] += w0 * src[t]
                    q += 1
        for i in range(P):
            for j in range(P):
                value = wide[i * H + j]
                out[n, k, i, j] = 0 if value < 0 else value  # a NaN stays NaN, for the divergence check


conv_relu_forward_serial = serial_twin(conv_relu_forward)


@njit_parallel_ordered
def conv_backward_lanes(dw, db, x, dout):
    """Kernel and bias gradients of the conv layer, summed in lanes; the image needs no gradient.

    dout (N, K, P, P) is the gradient of the pre-activation (already ReLU-masked).
    dw[k, c, p, q] = sum over n, i, j of x[n, c, i+p, j+q] * dout[n, k, i, j];
    db[k] = sum over n, i, j of dout[n, k, i, j].

    Lane j of tap (k, c, p, q) adds x[n, c, i+p, j+q] * dout[n, k, i, j] over the images n and
    rows i; the P lanes are then added in order. The lane loop has no reduction in it, so it
    vectorises without reassoc and every compile (parallel, serial twin) sums alike; a single
    running sum per weight cannot vectorise without reassoc (measured 10-20x slower). Rows
    dout[n, k, i, :] that are all zero (a dead image, a ReLU that is off along the row) are
    skipped. Parallel over the rows (k, c, p) of dw, K * C * S of them, each owning its S lanes
    per tap (and db[k] for c = p = 0); how they are shared out changes no sum.
    """
    N, C, H, _ = x.shape
    K, _, S, _ = dw.shape
    P = H - S + 1
    alive = np.empty((N, K, P), np.bool_)  # whether row dout[n, k, i] has a non-zero entry
    for nk in numba.prange(N * K):
        n, k = nk // K, nk % K
        for i in range(P):
            live = False
            for j in range(P):
                if dout[n, k, i, j] != 0:
                    live = True
                    break
            alive[n, k, i] = live
    # Lanes padded to whole vectors, so that the loop over j has no ragged end: lanes j >= P take
    # the numbers that follow a row in memory and are never added into dw. A row too near the
    # end of its array for that is copied into a zero-padded buffer first.
    W = -(-P // 16) * 16
    xf, df = x.reshape(N * C * H * H), dout.reshape(N * K * P * P)
    for kcp in numba.prange(K * C * S):
        k, c, p = kcp // (C * S), (kcp // S) % C, kcp % S
        lanes = np.zeros((S + 1, W), dw.dtype)  # row S sums db
        d_end = np.zeros(W, dw.dtype)
        row_end = np.zeros(W + S, dw.dtype)
        bias = c == 0 and p == 0
        for n in range(N):
            for i in range(P):
                if not alive[n, k, i]:
                    continue
                d_at = ((n * K + k) * P + i) * P
                if d_at + W <= df.size:
                    d = df[d_at:d_at + W]
                else:
                    d = d_end
                    for j in range(P):
                        d[j] = df[d_at + j]
                x_at = ((n * C + c) * H + i + p) * H
                if x_at + W + S <= xf.size:
                    row = xf[x_at:x_at + W + S]
                else:
                    row = row_end
                    for j in range(H):
                        row[j] = xf[x_at + j]
                if bias:
                    for j in range(W):
                        lanes[S, j] += d[j]
                for q in range(S):
                    lane = lanes[q]
                    for j in range(W):
                        lane[j] += row[j + q] * d[j]
        for q in range(S):
            total = lanes[q, 0]
            for j in range(1, P):
                total += lanes[q, j]
            dw[k, c, p, q] = total
        if bias:
            total = lanes[S, 0]
            for j in range(1, P):
                total += lanes[S, j]
            db[k] = total


conv_backward_lanes_serial = serial_twin(conv_backward_lanes)


@njit_parallel_ordered
def conv_backward_input(dx, dout, w):
    """Gradient of the conv layer with respect to its input image, for saliency maps (training
    never needs it: the image has no weights).

    dout (N, K, P, P) is the gradient of the pre-activation (already ReLU-masked), w (K, C, S, S).
    dx[n, c, i+p, j+q] gets w[k, c, p, q] * dout[n, k, i, j] summed over k, p, q, i, j: each
    output pixel hands its gradient back to the S x S window it was computed from. Parallel over
    (n, c): each owns the image plane dx[n, c], and adds into it in the same order, k then p, q.
    """
    N, C, H, _ = dx.shape
    K, _, S, _ = w.shape
    P = H - S + 1
    for nc in numba.prange(N * C):
        n, c = nc // C, nc % C
        for y in range(H):
            for x in range(H):
                dx[n, c, y, x] = 0
        for k in range(K):
            for p in range(S):
                for q in range(S):
                    weight = w[k, c, p, q]
                    for i in range(P):
                        for j in range(P):
                            dx[n, c, i + p, j + q] += weight * dout[n, k, i, j]


conv_backward_input_serial = serial_twin(conv_backward_input)
