"""The conv layer (valid, stride 1): the forward fused with bias and ReLU, the kernel and bias
gradient, and the input gradient that only explanations need."""
import numba
import numpy as np

from cnnfruit.nn.kernels.jit import njit_parallel, njit_parallel_ordered, serial_twin


@njit_parallel
def conv_relu_forward(out, x, w, b):
    """out (N, K, P, P) = relu(conv(x (N, C, H, H), w (K, C, S, S)) + b (K,))."""
    N, C, H, _ = x.shape
    K, _, S, _ = w.shape
    P = H - S + 1
    for nk in numba.prange(N * K):
        n, k = nk // K, nk % K
        for i in range(P):
            for j in range(P):
                out[n, k, i, j] = b[k]
        for c in range(C):
            for p in range(S):
                for q in range(S):
                    weight = w[k, c, p, q]
                    for i in range(P):
                        for j in range(P):
                            out[n, k, i, j] += weight * x[n, c, i + p, j + q]
        for i in range(P):
            for j in range(P):
                if out[n, k, i, j] < 0:
                    out[n, k, i, j] = 0


conv_relu_forward_serial = serial_twin(conv_relu_forward)


@njit_parallel_ordered
def conv_backward_lanes(dw, db, x, dout):
    """Kernel and bias gradients of the conv layer, summed in lanes; the image needs no gradient.

    dout (N, K, P, P) is the gradient of the pre-activation (already ReLU-masked).
    dw[k, c, p, q] = sum over n, i, j of x[n, c, i+p, j+q] * dout[n, k, i, j];
    db[k] = sum over n, i, j of dout[n, k, i, j].

    For each kernel k, lane j of tap (c, p, q) adds x[n, c, i+p, j+q] * dout[n, k, i, j] over the
    images n and rows i; the P lanes are then added in order. The lane loop has no reduction in
    it, so it vectorises without reassoc and every compile (parallel, serial twin) sums alike; a
    single running sum per weight cannot vectorise without reassoc (measured 10-20x slower).
    Rows dout[n, k, i, :] that are all zero (a dead image, a ReLU that is off along the row) are
    skipped. Parallel over k: each k owns dw[k], db[k] and its lanes.
    """
    N, C, H, _ = x.shape
    K, _, S, _ = dw.shape
    P = H - S + 1
    taps = C * S * S
    for k in numba.prange(K):
        lanes = np.zeros((taps + 1, P), dw.dtype)  # the last row sums db
        for n in range(N):
            for i in range(P):
                d = dout[n, k, i]
                alive = False
                for j in range(P):
                    if d[j] != 0:
                        alive = True
                        break
                if not alive:
                    continue
                bias = lanes[taps]
                for j in range(P):
                    bias[j] += d[j]
                for c in range(C):
                    for p in range(S):
                        row = x[n, c, i + p]
                        for q in range(S):
                            lane = lanes[(c * S + p) * S + q]
                            for j in range(P):
                                lane[j] += row[j + q] * d[j]
        for c in range(C):
            for p in range(S):
                for q in range(S):
                    lane = lanes[(c * S + p) * S + q]
                    total = lane[0]
                    for j in range(1, P):
                        total += lane[j]
                    dw[k, c, p, q] = total
        total = lanes[taps, 0]
        for j in range(1, P):
            total += lanes[taps, j]
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
