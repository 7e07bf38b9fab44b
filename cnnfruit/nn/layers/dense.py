"""The dense (fully connected) layer: out = x @ w + b, then ReLU unless it gives the logits.

    x (N, I) -> out (N, O);  w (I, O), b (O,).  Maps (N, C, H, W) come in flattened, in C, H, W order.

dispatch.py chooses how each product runs from the shapes: the streaming kernel that skips zero
inputs for a few images, sgemm column tiles for more; the backward fused with the optimizer's
update, on sgemm row tiles over the live block of images, inputs and units (tiled.py), or in one
Numba kernel for plain SGD on small batches. Those kernels hand back the input gradient masked by
`x > 0`, which is what the layer below needs when x is a ReLU's output.
"""
import math

import numpy as np

from cnnfruit.nn.layers.base import Layer


class Dense(Layer):
    kind = "dense"

    def __init__(self, name, spec, in_shape, logits=False, **where):
        self.units = spec.units
        self.logits = logits
        super().__init__(name, spec, in_shape, **where)
        self.relu_output = not logits
        self.fan_in = math.prod(self.in_shape)

    def output_shape(self):
        return (self.units,)

    def parameter_shapes(self):
        return {"w": (math.prod(self.in_shape), self.units), "b": (self.units,)}

    def fans(self):
        return math.prod(self.in_shape), self.units

    def multiply_adds(self):
        return math.prod(self.in_shape) * self.units

    def title(self):
        return f"{self.name} (logits)" if self.logits else f"{self.name} + ReLU"

    def onnx(self, graph, x, weights):
        if len(self.in_shape) > 1:
            x = graph.node("Flatten", [x], ["features"], axis=1)
        # Gemm: x (N, I) @ w (I, O) + b (O,); the weights keep cnnfruit's (I, O) layout.
        h = graph.node("Gemm", [x, weights["w"], weights["b"]], [self.name])
        return h if self.logits else graph.node("Relu", [h], [f"{self.name}_relu"])

    # ---- the passes

    def allocate(self, capacity, dtype):
        from cnnfruit.nn import dispatch

        I, O = self.fan_in, self.units
        self._forward_scratch = dispatch.dense_forward_scratch(capacity, O, dtype)
        self._dact = np.zeros((capacity, I), dtype)  # the input gradient before the mask
        self._step_buffers = dispatch.DenseStepBuffers(I, O, capacity, dtype)
        # The fused step always writes a masked input gradient: the lowest layer puts it here.
        self._unused_dx = None if self.needs_input_gradient else np.zeros((capacity, I), dtype)

    def forward(self, out, x, p):
        from cnnfruit.nn import dispatch

        dispatch.dense_forward(out, _rows(x), p["w"], p["b"], not self.logits, self._forward_scratch)

    def backward(self, dx, dout, x, out, p, g):
        from cnnfruit.nn import dispatch

        x2 = _rows(x)
        dact = self._dact[:len(x)]
        dispatch.dense_backward(dact, g["w"], g["b"], x2, dout, p["w"])
        if dx is None:
            return
        if self.relu_input:
            dispatch.relu_backward(_rows(dx), dact, x2)
        else:
            _rows(dx)[...] = dact

    def step(self, dx, dout, x, out, p, g, optimizer, names):
        from cnnfruit.nn import dispatch

        x2 = _rows(x)
        dx2 = _rows(dx) if dx is not None else self._unused_dx[:len(x)]
        dispatch.dense_backward_step(dx2, self._dact[:len(x)], g["w"], g["b"], p["w"], p["b"], x2, dout, optimizer,
                                     names["w"], names["b"], self._step_buffers)


def _rows(a):
    """A batch as one row per image: (N, C, H, W) maps flattened to (N, C * H * W), a view."""
    return a.reshape(len(a), -1)
