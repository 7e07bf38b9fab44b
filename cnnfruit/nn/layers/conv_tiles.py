"""How the conv layers' products (conv.ConvProducts, winograd.WinogradProducts) cut a batch into
tiles, and what both kinds keep: per-worker buffers, the partial bias gradients of the backward's
tiles, and the gemm they call."""
import numpy as np

# Images per tile of the backward: a tile's images are summed in one partial weight gradient, so
# fewer images per tile mean more partial gradients to add; more mean fewer tiles to share out.
# 2 gives 16 tiles at batch 32, work for 16 cores, and costs nothing measurable on 2 (a training
# step of the VGG-style stack at batch 32: 37.6 and 38.2 ms against 37.8 and 37.3 ms with 4).
IMAGES_PER_TILE = 2
ROW_PAD = 16  # floats added to each row of the products' matrices (see ConvProducts)


class TiledProducts:
    """The part of a conv layer's products that does not depend on how it multiplies. Subclasses
    run their tiles on `pool` (set before each pass) and sum their partial weight gradients with
    sum_partials."""

    def __init__(self, layer, capacity, dtype, workers):
        from cnnfruit.nn.kernels import blas

        self.workers, self.dtype = workers, dtype
        self.partial_b = np.zeros((backward_tiles(capacity), layer.kernels), dtype)
        self.no_dx = np.zeros((1, *layer.in_shape), dtype)  # stands for dx where the input's gradient is not needed
        self.gemm = blas.gemm_address(dtype)  # None: the products go through np.matmul from Python
        self.one_zero = np.array([1, 0], dtype)  # gemm's alpha and beta in the arrays' float type
        self.pool = None

    def per_worker(self, *shape):
        """A zeroed buffer of `shape` for each worker."""
        return [np.zeros(shape, self.dtype) for _ in range(self.workers)]

    def sum_partials(self, total, partial, db, tiles):
        """total = the first `tiles` partial weight gradients added in tile order, db the same of the
        partial bias gradients."""
        from cnnfruit.nn.layers import _kernels_conv as kc

        kc.sum_tiles(total.reshape(-1), partial[:tiles].reshape(tiles, -1))
        kc.sum_tiles(db, self.partial_b[:tiles])


def backward_tiles(images):
    """How many tiles the backward cuts `images` images into."""
    return -(-images // IMAGES_PER_TILE)


def tile_images(tile, images):
    """The images (first, last + 1) of backward tile `tile` of a batch of `images`."""
    return tile * IMAGES_PER_TILE, min((tile + 1) * IMAGES_PER_TILE, images)
