"""The conv layer: K kernels of S x S over every input channel, stride 1, padding valid or same, + bias, ReLU.

    x (N, C, H, W) -> out (N, K, P, Q),  P = H + pad - S + 1 (pad: 0 for valid, S - 1 for same,
    split (S - 1) // 2 before and the rest after, as ONNX's SAME_UPPER and TensorFlow do)
    w (K, C, S, S), b (K,)

Two ways to run it, chosen by the input's channels alone, so that a run's numbers do not depend
on the thread count:
- direct: the Numba kernels of kernels.py (conv_relu_forward, conv_backward_lanes), parallel over
  images and kernels; for an input of a few channels (the image itself), where each output pixel
  sums C * S * S = 16 to 48 products, too few to feed a matrix product.
- products: each image's S x S windows unrolled into the columns of a matrix (im2col), so that the
  layer is three sgemm products per image, run as tiles of images on the tile pool (tiled.py):
      forward      out[n] (K, PQ) = w (K, CSS) @ cols[n] (CSS, PQ), + b, ReLU
      w gradient   dw (K, CSS)    = sum over n of dout[n] (K, PQ) @ cols[n]^T (PQ, CSS)
      input grad.  dx[n]          = col2im(w^T (CSS, K) @ dout[n] (K, PQ)), masked by x > 0
  The weight gradient is summed image after image within each tile of IMAGES_PER_TILE images,
  then tile after tile in order: the tiles' edges depend on the batch size alone.
"""
import numpy as np

from cnnfruit.nn.layers.base import Layer

# Inputs with at most this many channels run on the direct kernels (see the module's docstring).
DIRECT_MAX_CHANNELS = 4
# Images per tile of the weight gradient: a tile's images are summed in one partial gradient, so
# fewer images per tile mean more partial gradients to add; more mean coarser shares of the work.
IMAGES_PER_TILE = 4


class Conv(Layer):
    kind = "conv"
    relu_output = True

    def __init__(self, name, spec, in_shape, **where):
        self.kernels, self.size, self.padding = spec.kernels, spec.size, spec.padding
        super().__init__(name, spec, in_shape, **where)

    # ---- shapes and sizes

    @property
    def pads(self):
        """Zeros added (before, after) each side of the input map."""
        if self.padding == "valid":
            return 0, 0
        return (self.size - 1) // 2, self.size - 1 - (self.size - 1) // 2

    def output_shape(self):
        if len(self.in_shape) != 3:
            raise self.problem("needs maps as its input, but follows {source}: conv and maxpool layers go before "
                               "the dense ones", source=self.source)
        _, H, W = self.in_shape
        if self.size > min(H, W):
            raise self.problem("has a {S}x{S} kernel, larger than {source}", S=self.size, source=self.source)
        before, after = self.pads
        return self.kernels, H + before + after - self.size + 1, W + before + after - self.size + 1

    def parameter_shapes(self):
        C = self.in_shape[0]
        return {"w": (self.kernels, C, self.size, self.size), "b": (self.kernels,)}

    def fans(self):
        receptive_field = self.size * self.size
        return self.in_shape[0] * receptive_field, self.kernels * receptive_field

    def multiply_adds(self):
        K, P, Q = self.out_shape
        return K * P * Q * self.in_shape[0] * self.size**2

    def title(self):
        return f"{self.name} + ReLU"

    def describe(self):
        return f"conv {self.kernels}x{self.size}x{self.size}" + (" same" if self.padding == "same" else "")

    def onnx(self, graph, x, weights):
        before, after = self.pads
        conv = graph.node("Conv", [x, weights["w"], weights["b"]], [self.name], kernel_shape=[self.size] * 2,
                          pads=[before, before, after, after])
        return graph.node("Relu", [conv], [f"{self.name}_relu"])

    # ---- the passes

    @property
    def direct(self):
        return self.in_shape[0] <= DIRECT_MAX_CHANNELS

    def allocate(self, capacity, dtype):
        C, H, W = self.in_shape
        before, after = self.pads
        self._padded = self._dpadded = None
        if self.direct and before + after:
            shape = (capacity, C, H + before + after, W + before + after)
            self._padded, self._dpadded = np.zeros(shape, dtype), np.zeros(shape, dtype)
        self._capacity, self._dtype = capacity, dtype
        self._tiles = None  # the products' buffers, made for the tile pool on first use

    def forward(self, out, x, p):
        from cnnfruit.nn import dispatch

        if self.direct:
            dispatch.conv_relu_forward(out, self._padded_input(x), p["w"], p["b"])
        else:
            self._products().forward(out, x, p["w"], p["b"])

    def backward(self, dx, dout, x, out, p, g):
        from cnnfruit.nn import dispatch
        from cnnfruit.nn.layers import _kernels_conv as kc

        if not self.direct:
            self._products().backward(g["w"], g["b"], dx, dout, x, p["w"], self.relu_input)
            return
        padded = self._padded_input(x, fill=False)
        dispatch.conv_backward(g["w"], g["b"], padded, dout)
        if dx is None:
            return
        if padded is x:
            dispatch.conv_backward_input(dx, dout, p["w"])
        else:
            dpadded = self._dpadded[:len(x)]
            dispatch.conv_backward_input(dpadded, dout, p["w"])
            kc.crop(dx, dpadded, self.pads[0])
        if self.relu_input:
            kc.relu_mask(dx, x)

    def _padded_input(self, x, fill=True):
        """x, or x with its zero border (written when fill; the forward's copy otherwise)."""
        if self._padded is None:
            return x
        padded = self._padded[:len(x)]
        if fill:
            before = self.pads[0]
            padded[:, :, before:before + x.shape[2], before:before + x.shape[3]] = x
        return padded

    def _products(self):
        from cnnfruit.nn import tiled

        pool = tiled.default_pool()
        if self._tiles is None or self._tiles.workers < pool.workers:
            self._tiles = ConvProducts(self, self._capacity, self._dtype, pool.workers)
        self._tiles.pool = pool
        return self._tiles


class ConvProducts:
    """One conv layer as sgemm products on image tiles (see the module's docstring), with its buffers.

    Per worker: one image's columns in both layouts and a weight-gradient product; per tile of
    images: a partial weight and bias gradient, added in tile order at the end.
    """

    def __init__(self, layer, capacity, dtype, workers):
        C, H, W = layer.in_shape
        K, P, Q = layer.out_shape
        self.S, self.before, self.K, self.P, self.Q = layer.size, layer.pads[0], K, P, Q
        taps, pixels = C * layer.size**2, P * Q
        self.workers = workers
        self.cols = [np.zeros((taps, pixels), dtype) for _ in range(workers)]
        self.cols_t = [np.zeros((pixels, taps), dtype) for _ in range(workers)]
        self.dw = [np.zeros((K, taps), dtype) for _ in range(workers)]
        tiles = -(-capacity // IMAGES_PER_TILE)
        self.partial_w = np.zeros((tiles, K, taps), dtype)
        self.partial_b = np.zeros((tiles, K), dtype)
        self.pool = None

    def forward(self, out, x, w, b):
        from cnnfruit.nn.layers import _kernels_conv as kc

        K, S, before, P, Q = self.K, self.S, self.before, self.P, self.Q
        w2 = w.reshape(K, -1)

        def tile(n, worker):
            cols = self.cols[worker]
            kc.im2col(cols, x[n], S, before, P, Q)
            image = out[n].reshape(K, -1)
            np.matmul(w2, cols, out=image)
            kc.bias_relu_rows(image, b)

        self.pool.run(tile, len(x))

    def backward(self, dw, db, dx, dout, x, w, relu_input):
        """dw, db: the gradients; dx (None: not needed) the input's, masked by x > 0 if relu_input."""
        from cnnfruit.nn.layers import _kernels_conv as kc

        K, S, before, P, Q, N = self.K, self.S, self.before, self.P, self.Q, len(x)
        w2 = w.reshape(K, -1)
        tiles = -(-N // IMAGES_PER_TILE)

        def tile(t, worker):
            partial_w, partial_b = self.partial_w[t], self.partial_b[t]
            for n in range(t * IMAGES_PER_TILE, min((t + 1) * IMAGES_PER_TILE, N)):
                d = dout[n].reshape(K, -1)
                first = n == t * IMAGES_PER_TILE
                cols_t = self.cols_t[worker]
                kc.im2col_t(cols_t, x[n], S, before, P, Q)
                product = partial_w if first else self.dw[worker]
                np.matmul(d, cols_t, out=product)
                if not first:
                    kc.add_into(partial_w, product)
                kc.add_row_sums(partial_b, d, first)
                if dx is not None:
                    dcols = self.cols[worker]
                    np.matmul(w2.T, d, out=dcols)
                    kc.col2im(dx[n], dcols, x[n], S, before, P, Q, relu_input)

        self.pool.run(tile, tiles)
        kc.sum_tiles(dw.reshape(-1), self.partial_w[:tiles].reshape(tiles, -1))
        kc.sum_tiles(db, self.partial_b[:tiles])

