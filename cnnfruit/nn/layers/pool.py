"""The max-pool layer: the largest value of each P x P window of every map, stride P.

    x (N, C, H, W) -> out (N, C, H / P, W / P); P must divide H and W. No parameters.

Backward hands each window's gradient to the input where its maximum was (the first of equal
ones). Pooling ReLU maps gives a ReLU-like output: a window whose maximum is 0 is all zeros, so
the gradient of its input is 0 there too, and the layer above may mask by `x > 0` as it would on
the maps themselves.
"""
import numpy as np

from cnnfruit.nn.layers.base import Layer


class MaxPool(Layer):
    kind = "maxpool"

    def __init__(self, name, spec, in_shape, **where):
        self.size = spec.size
        super().__init__(name, spec, in_shape, **where)
        self.relu_output = self.relu_input

    def output_shape(self):
        if len(self.in_shape) != 3:
            raise self.problem("needs maps as its input, but follows {source}: conv and maxpool layers go before "
                               "the dense ones", source=self.source)
        C, H, W = self.in_shape
        P = self.size
        if P > min(H, W):
            raise self.problem("is larger than {source}: it would leave a 0x0 map", source=self.source)
        if H % P or W % P:
            raise self.problem("cannot pool {source}: {P} does not divide {side}", source=self.source, P=P,
                               side=H if H % P else W)
        return C, H // P, W // P

    def title(self):
        return self.name

    def describe(self):
        return f"maxpool {self.size}"

    def onnx(self, graph, x, weights):
        return graph.node("MaxPool", [x], [self.name], kernel_shape=[self.size] * 2, strides=[self.size] * 2)

    # ---- the passes

    def allocate(self, capacity, dtype):
        self._arg = np.zeros((capacity, *self.out_shape), np.int32)

    def forward(self, out, x, p):
        from cnnfruit.nn.layers import _kernels_pool as kp

        if self.size == 2:
            _sized(kp.maxpool2_forward, kp.maxpool2_forward_serial, x.size)(out, self._arg[:len(x)], x)
        else:
            _sized(kp.maxpool_forward, kp.maxpool_forward_serial, x.size)(out, self._arg[:len(x)], x, self.size)

    def backward(self, dx, dout, x, out, p, g):
        from cnnfruit.nn.layers import _kernels_pool as kp

        if dx is None:
            return
        if self.size == 2:
            _sized(kp.maxpool2_backward, kp.maxpool2_backward_serial, dx.size)(dx, dout, self._arg[:len(x)])
        else:
            _sized(kp.maxpool_backward, kp.maxpool_backward_serial, dx.size)(dx, dout, self._arg[:len(x)], self.size)


def _sized(parallel, serial, work):
    from cnnfruit.nn.dispatch import PARALLEL_MIN_WORK

    return parallel if work >= PARALLEL_MIN_WORK else serial
