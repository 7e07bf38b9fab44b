"""A 3 x 3 'same' conv layer as Winograd products on tiles of images, with its buffers.

The algebra is in _kernels_winograd.py. Per pass, the weights are transformed once (u = G w G^T,
16 x K x C values); then the tiles run on the tile pool, as im2col's do (conv.ConvProducts): the
forward one image per tile, the backward IMAGES_PER_TILE images per tile. A tile is one kernel
call: per image, its input blocks transformed, 16 products (one per place of a 4 x 4 block),
and the blocks transformed back. The backward's tiles sum their images' transformed weight
gradients in order into a partial one per tile, added in tile order at the end and only then
turned into dw (the transform is linear): the sums run in an order set by the batch size alone.

Each image has its own products, never one product over a tile's images: an image's blocks of
32 channels of 32 x 32 fill 0.55 MB per array, and the tiles run fastest with their arrays in a
core's L2 (measured, a training step of the VGG-style stack at batch 32, 2 threads: 30.9 ms
with one image's blocks per product, 36.0 with two, 38.5 with four).

Against im2col the products shrink 2.25 times; OpenBLAS runs these small ones (K x C by C x 272
and the like) as fast per FLOP as im2col's (measured on one thread of the AMD EPYC: 90-97 against
88-98 GFLOP/s). The sums are grouped otherwise than im2col's, so the results differ in the last
bits; a layer that conv.Conv.runs_as sends here always runs here, on every machine, so a run
repeats bit for bit.
"""
import numpy as np

from cnnfruit.nn.layers import _kernels_winograd as kw
from cnnfruit.nn.layers.conv_tiles import ROW_PAD, TiledProducts, backward_tiles, tile_images


class WinogradProducts(TiledProducts):
    """One conv layer's Winograd products and their buffers. Per worker: the image's phase planes and
    their gradient's, and its transformed blocks: v of the input, e of the output (the forward's
    products, then the output gradient's transform), mx of the input gradient. Per tile: a partial
    transformed weight gradient and bias gradient. u holds the transformed weights of the pass."""

    def __init__(self, layer, capacity, dtype, workers):
        super().__init__(layer, capacity, dtype, workers)
        C = layer.in_shape[0]
        K, P, Q = layer.out_shape
        self.th, self.tw = -(-P // 2), -(-Q // 2)  # blocks of one image
        phases = (self.th + 1) * (self.tw + 1) + 1  # the padded map's phase planes (_kernels_winograd)
        row = self.th * (self.tw + 1) + ROW_PAD
        self.phases, self.dphases = self.per_worker(C, 4, phases), self.per_worker(C, 4, phases)  # padding stays 0
        self.v, self.e = self.per_worker(kw.PLACES, C, row), self.per_worker(kw.PLACES, K, row)
        self.mx = self.per_worker(kw.PLACES, C, row)
        self.scratch = self.per_worker(kw.PLACES, K, C)
        self.u = np.zeros((kw.PLACES, K, C), dtype)
        self.partial_u = np.zeros((backward_tiles(capacity), kw.PLACES, K, C), dtype)
        self.total_u = np.zeros((kw.PLACES, K, C), dtype)

    def forward(self, out, x, w, b):
        kw.transform_weights(self.u, w)
        th, tw, blocks = self.th, self.tw, self.th * (self.tw + 1)

        def tile(n, worker):
            phases, v, m = self.phases[worker], self.v[worker], self.e[worker]
            if self.gemm is not None:
                kw.forward_image(out[n], x[n], self.u, b, phases, v, m, th, tw, self.gemm, self.one_zero)
                return
            kw.split_phases(phases, x[n], th, tw)
            kw.transform_inputs(v, phases, th, tw)
            for place in range(kw.PLACES):
                np.matmul(self.u[place], v[place, :, :blocks], out=m[place, :, :blocks])
            kw.transform_outputs(out[n], m, b, th, tw)

        self.pool.run(tile, len(x))

    def backward(self, dw, db, dx, dout, x, w, relu_input):
        """dw, db: the gradients; dx (None: not needed) the input's, masked by x > 0 if relu_input."""
        from cnnfruit.nn.layers import _kernels_conv as kc

        kw.transform_weights(self.u, w)
        th, tw, blocks, N = self.th, self.tw, self.th * (self.tw + 1), len(x)
        K, pixels = dout.shape[1], dout.shape[2] * dout.shape[3]
        tiles = backward_tiles(N)

        def tile(t, worker):
            first_image, last_image = tile_images(t, N)
            phases, dphases = self.phases[worker], self.dphases[worker]
            v, e, mx = self.v[worker], self.e[worker], self.mx[worker]
            if self.gemm is not None:
                kw.backward_images(self.partial_u[t], self.partial_b[t], self.no_dx if dx is None else dx, dout, x,
                                   self.u, first_image, last_image, phases, dphases, v, e, mx, self.scratch[worker], th, tw,
                                   dx is not None, relu_input, self.gemm, self.one_zero)
                return
            partial_u = self.partial_u[t]
            for n in range(first_image, last_image):
                first = n == first_image
                kw.split_phases(phases, x[n], th, tw)
                kw.transform_inputs(v, phases, th, tw)
                kw.transform_gradients(e, dout[n], th, tw)
                kc.add_row_sums(self.partial_b[t], dout[n].reshape(K, pixels), first)
                product = partial_u if first else self.scratch[worker]
                for place in range(kw.PLACES):
                    np.matmul(e[place, :, :blocks], v[place, :, :blocks].T, out=product[place])
                if not first:
                    kc.add_into(partial_u.reshape(kw.PLACES * K, -1), product.reshape(kw.PLACES * K, -1))
                if dx is not None:
                    for place in range(kw.PLACES):
                        np.matmul(self.u[place].T, e[place, :, :blocks], out=mx[place, :, :blocks])
                    kw.add_input_blocks(dphases, mx, th, tw)
                    kw.merge_phases(dx[n], dphases, x[n], tw, relu_input)

        self.pool.run(tile, tiles)
        self.sum_partials(self.total_u, self.partial_u, db, tiles)
        kw.weight_gradient(dw, self.total_u)
