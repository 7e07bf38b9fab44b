"""Inverted dropout on a hidden dense layer's ReLU output, in training only; in place.

    act (N, D) -> act * scale where the unit is kept (a uniform draw >= rate), else 0; scale = 1 / (1 - rate)

The network puts one after each hidden dense layer (TrainConfig.dropout is the rate of them all)
and hands it a generator for the steps that drop; otherwise it passes its input on untouched, as
at evaluation. Its output is its input's array, and so is its gradient. Backward needs no mask:
a dropped unit's output is 0, so the mask of the layer above (`x > 0`) already blocks its
gradient, and every kept unit's gradient is multiplied by scale.
"""
import numpy as np

from cnnfruit.nn.layers.base import Layer


class Dropout(Layer):
    kind = "dropout"
    relu_output = True
    in_place = True  # out is x and dx is dout

    def __init__(self, name, spec, in_shape, **where):
        super().__init__(name, spec, in_shape, **where)
        self.rate = 0.0
        self.generator = None  # a numpy Generator while a training step drops units
        self.scale = None  # 1 / (1 - rate) in the dtype of the last forward pass that dropped units
        self._draws = None

    def title(self):
        return f"{self.name} (rate {self.rate:g})"

    def onnx(self, graph, x, weights):
        return x  # evaluation keeps every unit

    def allocate(self, capacity, dtype):
        self._capacity = capacity

    def forward(self, out, x, p):
        """Each step's draws: one (N, D) array of generator.random in row order, float64 whatever the dtype."""
        from cnnfruit.nn import dispatch

        if self.generator is None or not self.rate > 0:
            self.scale = None
            return
        batch = len(x)
        if self._draws is None or len(self._draws) < batch:
            self._draws = np.empty((max(batch, self._capacity), self.in_shape[0]))
        draws = self._draws[:batch]
        self.generator.random(out=draws)
        dispatch.dropout_forward(x, draws, self.rate)
        self.scale = x.dtype.type(1 / (1 - self.rate))

    def backward(self, dx, dout, x, out, p, g):
        if self.scale is not None:
            dout *= self.scale
