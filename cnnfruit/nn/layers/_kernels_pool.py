"""Max-pool kernels: parallel over the (image, channel) planes, each of which one iteration owns.

    x (N, C, H, W) -> out (N, C, H / P, W / P), arg (N, C, H / P, W / P): where in its P x P window
    (row-major, 0 to P * P - 1) each maximum was, the first of equal ones, as PyTorch takes it.
"""

from cnnfruit.nn.kernels.jit import njit_parallel, numba, serial_twin


@njit_parallel
def maxpool_forward(out, arg, x, P):
    N, C, H, W = x.shape
    for nc in numba.prange(N * C):
        n, c = nc // C, nc % C
        for i in range(H // P):
            for j in range(W // P):
                best = x[n, c, i * P, j * P]
                where = 0
                for p in range(P):
                    for q in range(P):
                        value = x[n, c, i * P + p, j * P + q]
                        if value > best:
                            best, where = value, p * P + q
                out[n, c, i, j] = best
                arg[n, c, i, j] = where


@njit_parallel
def maxpool_backward(dx, dout, arg, P):
    """dx (N, C, H, W): each window's gradient dout goes to where its maximum was, 0 elsewhere."""
    N, C, H, W = dx.shape
    for nc in numba.prange(N * C):
        n, c = nc // C, nc % C
        for r in range(H):
            for col in range(W):
                dx[n, c, r, col] = 0
        for i in range(H // P):
            for j in range(W // P):
                where = arg[n, c, i, j]
                dx[n, c, i * P + where // P, j * P + where % P] = dout[n, c, i, j]


maxpool_forward_serial = serial_twin(maxpool_forward)
maxpool_backward_serial = serial_twin(maxpool_backward)
