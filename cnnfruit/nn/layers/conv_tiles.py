"""How the conv layers' products (conv.ConvProducts, winograd.WinogradProducts) cut a batch into tiles."""

# Images per tile of the backward: a tile's images are summed in one partial weight gradient, so
# fewer images per tile mean more partial gradients to add; more mean fewer tiles to share out.
# 2 gives 16 tiles at batch 32, work for 16 cores, and costs nothing measurable on 2 (a training
# step of the VGG-style stack at batch 32: 37.6 and 38.2 ms against 37.8 and 37.3 ms with 4).
IMAGES_PER_TILE = 2
ROW_PAD = 16  # floats added to each row of the products' matrices (see ConvProducts)
