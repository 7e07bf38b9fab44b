"""The Numba kernels: every hot loop of a training step, arrays in, preallocated outputs written.

By layer: conv.py, dense.py (with the ReLU and dropout), loss.py, updates.py (optimizer updates)
and tiles.py (the pieces of the tiled dense products of tiled.py); jit.py compiles them. Every
name is re-exported here, so callers write kernels.dense_forward whichever module holds it.

Shape letters, fixed for the whole package:
    N  images in a batch            C  input channels (1 grey, 3 rgb)
    H  image side (square images)   K  conv kernels     S  kernel side
    P  conv output side, H - S + 1  F  flattened features, K * P * P
    I  dense input width            O  dense output width   (M classes at the last layer)

Conventions (as in llm.c): outputs come first in a signature, gradients carry a `d` prefix, and
every `prange` runs over a dimension whose slice of the output one iteration owns alone, so no two
threads write the same element and no sum depends on how the work is split. Results are therefore
identical for any NUMBA_NUM_THREADS. Every kernel works for float32 and float64 (tests use both).
A parallel kernel that dispatch.py may run on one thread for small work has a serial twin, the
same code compiled without threads, defined right after it (name_serial).
"""
from cnnfruit.nn.kernels.conv import (conv_backward_input, conv_backward_input_serial, conv_backward_lanes,
                                      conv_backward_lanes_serial, conv_relu_forward, conv_relu_forward_serial)
from cnnfruit.nn.kernels.dense import (ROW_BLOCK, ROW_CHUNKS, dense_backward, dense_backward_serial,
                                       dense_backward_sgd, dense_backward_sgd_serial, dense_forward,
                                       dense_forward_serial, dropout_forward, nonzero_columns, relu_backward,
                                       relu_backward_serial)
from cnnfruit.nn.kernels.jit import FASTMATH, FASTMATH_ORDERED, FASTMATH_TILE, serial_twin
from cnnfruit.nn.kernels.loss import (PROBABILITY_FLOOR, softmax_cross_entropy, softmax_row,
                                      weighted_softmax_cross_entropy)
from cnnfruit.nn.kernels.tiles import (bias_relu, gather_columns, gather_rows, gather_tile, live_column_sums,
                                       live_rows_by_tile, relu_mask_scatter, scatter_dx_tile, scatter_gradient_tile)
from cnnfruit.nn.kernels.updates import (adam_tile, adam_update, momentum_tile, momentum_update, sgd_decay_update,
                                         sgd_gathered_tile, sgd_tile, sgd_update, sgd_update_serial)
