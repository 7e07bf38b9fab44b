"""The conv layer: K kernels of S x S over every input channel, stride 1, padding valid or same, + bias, ReLU.

    x (N, C, H, W) -> out (N, K, P, Q),  P = H + pad - S + 1 (pad: 0 for valid, S - 1 for same,
    split (S - 1) // 2 before and the rest after, as ONNX's SAME_UPPER and TensorFlow do)
    w (K, C, S, S), b (K,)

Three ways to run it, chosen by the layer's shape alone, never by the thread count or the machine:
- direct: the Numba kernels of kernels.py (conv_relu_forward, conv_backward_lanes), parallel over
  images and kernels. The conv layer of the report's shape of network (one valid conv layer on
  the image, then dense layers: all that kernels, kernel_size and hidden describe) runs on them,
  as it always has, so its runs repeat bit for bit across versions. Measured at batch 32, one
  thread, they are slower than the products at every shape tried (the report's 8 x 4 x 4 on grey:
  0.69 + 0.72 ms against 0.25 + 0.35 ms forward + backward; 32 x 3 x 3 same on rgb: 2.74 + 3.57
  against 0.93 + 1.35), so every other network runs its conv layers as products.
- products: each image's S x S windows unrolled into the columns of a matrix (im2col), so that the
  layer is three sgemm products per image, run as tiles of images on the tile pool (tiled.py):
      forward      out[n] (K, PQ)  = w (K, CSS) @ cols[n] (CSS, PQ), + b, ReLU
      w gradient   dw^T (CSS, K)   = sum over n of cols[n] (CSS, PQ) @ dout[n]^T (PQ, K)
      input grad.  dx[n]           = col2im(w^T (CSS, K) @ dout[n] (K, PQ)), masked by x > 0
  The weight gradient is summed image after image within each tile of IMAGES_PER_TILE images
  (conv_tiles.py), then tile after tile in order: the tiles' edges depend on the batch size alone.
  Each tile is one call of a kernel (_kernels_conv.forward_image, backward_images) that copies,
  multiplies through numpy's own gemm (kernels/blas.py) and copies back without the GIL, so the
  workers never wait for each other between steps: measured on the VGG-style stack at batch 32,
  2 threads against 1, the forward of conv 64x3 same on 32 x 16 x 16 maps went from 1.4x to 1.9x
  faster and a whole training step from 48.0 to 37.4 ms. Where numpy's gemm cannot be reached,
  the same steps run from Python with np.matmul, to the same bits.
- Winograd products (winograd.py): a 3 x 3 'same' layer with enough channels (Conv.runs_as)
  runs as 16 products per image on 2 x 2 blocks of its output, 2.25 times fewer multiply-adds
  than im2col's, on the same tiles of images. Measured at batch 32, 2 threads, forward and
  backward: 32 kernels of 3 x 3 on 32 channels of 32 x 32 took 9.25 ms against im2col's 14.69.
"""
import numpy as np

from cnnfruit.nn.layers.base import Layer
from cnnfruit.nn.layers.conv_tiles import ROW_PAD, TiledProducts, backward_tiles, tile_images

# Below these, Winograd's products are too thin for its transforms to pay: measured at batch 32
# on 2 threads (forward + backward), 32 kernels on 3 channels of 32 x 32 took 2.57 ms against
# im2col's 2.18, and 16 on 8 channels of 16 x 16 1.06 against 0.95; 32 on 8 channels of 32 x 32
# took 3.35 against 4.91, and 32 on 32 channels 9.25 against 14.69.
WINOGRAD_FEWEST_CHANNELS = 8
WINOGRAD_FEWEST_CHANNEL_PAIRS = 256


class Conv(Layer):
    kind = "conv"
    relu_output = True

    def __init__(self, name, spec, in_shape, direct=False, **where):
        self.kernels, self.size, self.padding = spec.kernels, spec.size, spec.padding
        super().__init__(name, spec, in_shape, **where)
        # The direct kernels (see the module's docstring) compute valid convolutions of the image.
        self.direct = direct and self.padding == "valid" and not self.relu_input

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

    def allocate(self, capacity, dtype):
        self._capacity, self._dtype = capacity, dtype
        self._tiles = None  # the products' buffers, made for the tile pool on first use

    def forward(self, out, x, p):
        from cnnfruit.nn import dispatch

        if self.direct:
            dispatch.conv_relu_forward(out, x, p["w"], p["b"])
        else:
            self._products().forward(out, x, p["w"], p["b"])

    def backward(self, dx, dout, x, out, p, g):
        from cnnfruit.nn import dispatch

        if not self.direct:
            self._products().backward(g["w"], g["b"], dx, dout, x, p["w"], self.relu_input)
            return
        dispatch.conv_backward(g["w"], g["b"], x, dout)
        if dx is not None:  # the image's gradient: explain's saliency maps
            dispatch.conv_backward_input(dx, dout, p["w"])

    @property
    def runs_as(self):
        """How the layer runs (see the module's docstring): "direct", "winograd" or "im2col".
        Winograd takes 3 x 3 'same' layers with enough input channels and kernels (WINOGRAD_*)."""
        if self.direct:
            return "direct"
        channels = self.in_shape[0]
        wide_enough = (channels >= WINOGRAD_FEWEST_CHANNELS
                       and channels * self.kernels >= WINOGRAD_FEWEST_CHANNEL_PAIRS)
        return "winograd" if (self.size, self.padding) == (3, "same") and wide_enough else "im2col"

    def _products(self):
        from cnnfruit.nn import tiled
        from cnnfruit.nn.layers import winograd

        pool = tiled.default_pool()
        if self._tiles is None or self._tiles.workers < pool.workers:
            kind = winograd.WinogradProducts if self.runs_as == "winograd" else ConvProducts
            self._tiles = kind(self, self._capacity, self._dtype, pool.workers)
        self._tiles.pool = pool
        return self._tiles


class ConvProducts(TiledProducts):
    """One conv layer as sgemm products on image tiles (see the module's docstring), with its buffers.

    Per worker: the image's padded input planes, its columns, its product and its gradient; per
    tile of images: a partial weight gradient, as w^T (CSS, K) = cols @ dout^T (the product's fast
    layout), and a partial bias gradient, added in tile order at the end. The matrices the
    products read and write have rows ROW_PAD values longer than their P * Q columns: rows of
    exactly 1024 floats (4 KiB, 32 x 32 maps) made the products 30% slower, their rows falling
    on the same cache sets (measured 293 against 214 us for a forward product of 32 x 288 x 1024).
    """

    def __init__(self, layer, capacity, dtype, workers):
        super().__init__(layer, capacity, dtype, workers)
        C, H, W = layer.in_shape
        K, P, Q = layer.out_shape
        before, after = layer.pads
        S = layer.size
        self.S, self.before, self.K, self.P, self.Q, self.Wp = S, before, K, P, Q, W + before + after
        taps, pixels = C * S * S, P * Q
        plane = (H + before + after) * self.Wp
        self.padded, self.dpadded = self.per_worker(C, plane), self.per_worker(C, plane)  # borders stay 0
        self.cols = self.per_worker(taps, pixels + ROW_PAD)
        self.product = self.per_worker(K, pixels + ROW_PAD)
        self.dw_t = self.per_worker(taps, K)
        self.partial_w = np.zeros((backward_tiles(capacity), taps, K), dtype)
        self.total_w = np.zeros((taps, K), dtype)

    def _columns(self, x, worker):
        """One image's columns, in this worker's buffer (CSS, P * Q + ROW_PAD)."""
        from cnnfruit.nn.layers import _kernels_conv as kc

        padded, cols = self.padded[worker], self.cols[worker]
        kc.pad_into(padded, x, self.before, self.Wp)
        kc.im2col(cols, padded, self.S, self.Wp, self.P, self.Q)
        return cols

    def forward(self, out, x, w, b):
        from cnnfruit.nn.layers import _kernels_conv as kc

        w2, pixels = w.reshape(self.K, -1), self.P * self.Q

        def tile(n, worker):
            if self.gemm is not None:
                kc.forward_image(out[n], x[n], w2, b, self.padded[worker], self.cols[worker], self.product[worker],
                                 self.S, self.before, self.Wp, self.gemm, self.one_zero)
                return
            product = self.product[worker]
            np.matmul(w2, self._columns(x[n], worker)[:, :pixels], out=product[:, :pixels])
            kc.bias_relu_copy(out[n], product, b)

        self.pool.run(tile, len(x))

    def backward(self, dw, db, dx, dout, x, w, relu_input):
        """dw, db: the gradients; dx (None: not needed) the input's, masked by x > 0 if relu_input."""
        from cnnfruit.nn.layers import _kernels_conv as kc

        K, N, pixels = self.K, len(x), self.P * self.Q
        w2 = w.reshape(K, -1)
        tiles = backward_tiles(N)

        def tile(t, worker):
            first_image, last_image = tile_images(t, N)
            if self.gemm is not None:
                kc.backward_images(self.partial_w[t], self.partial_b[t], self.no_dx if dx is None else dx, dout, x, w2,
                                   first_image, last_image, self.padded[worker], self.dpadded[worker],
                                   self.cols[worker], self.product[worker], self.dw_t[worker], self.S, self.before,
                                   self.Wp, dx is not None, relu_input, self.gemm, self.one_zero)
                return
            partial_w, partial_b = self.partial_w[t], self.partial_b[t]
            d = self.product[worker]
            for n in range(first_image, last_image):
                first = n == first_image
                cols = self._columns(x[n], worker)
                kc.copy_maps(d, dout[n])
                product = partial_w if first else self.dw_t[worker]
                np.matmul(cols[:, :pixels], d[:, :pixels].T, out=product)
                if not first:
                    kc.add_into(partial_w, product)
                kc.add_row_sums(partial_b, d[:, :pixels], first)
                if dx is not None:
                    dcols = cols  # the columns are no longer needed: their gradient takes their place
                    np.matmul(w2.T, d[:, :pixels], out=dcols[:, :pixels])
                    dpadded = self.dpadded[worker]
                    kc.col2im(dpadded, dcols, self.S, self.Wp, self.P, self.Q)
                    kc.crop_mask(dx[n], dpadded, self.before, self.Wp, x[n], relu_input)

        self.pool.run(tile, tiles)
        self.sum_partials(self.total_w, self.partial_w, db, tiles)
        dw.reshape(K, -1)[...] = self.total_w.T
