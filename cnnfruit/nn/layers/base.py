"""What every layer unit is: its shapes, parameters, cost, initial weights, ONNX nodes and passes.

A unit sees one image's shapes: in_shape and out_shape leave out the batch, (C, H, W) for a map
and (D,) for a vector. Its parameters have local names ("w", "b"); the network calls them
"<unit name>_<local name>" (conv_w, dense0_b). Numbers are 1-based positions in the spec, for
error messages.

The passes work on a batch, on arrays the network preallocates:
    forward(out, x, p)                     out (N, *out_shape) from x (N, *in_shape)
    backward(dx, dout, x, out, p, g)       g (the gradients, local names) from dout; dx too
                                           unless it is None
    step(dx, dout, x, out, p, g, optimizer, names)
                                           backward fused with the optimizer's update of p
A gradient handed to a unit is zero wherever the unit's output is zero. For a unit that ends in
a ReLU this makes it the gradient of the pre-activation, so no unit needs its own mask: the unit
above applies it, as it computes its input gradient, by `x > 0` where relu_input says that its
input is a ReLU's output (or a pool or dropout of one). The kernels are imported inside the
passes, so a network's shapes are known (checkpoints checked, summaries printed) without Numba.
"""
import math
from dataclasses import dataclass

from cnnfruit.errors import SettingError


@dataclass(frozen=True)
class LayerCost:
    """One layer's output shape, parameters and arithmetic, per image.

    FLOPs count 2 per multiply-add of the layer's products; bias adds, ReLU, pooling and softmax
    are left out (one operation per activation, under 0.1% of the total at the default sizes).
    backward_flops is what a training step computes: every gradient the update needs, and the
    input gradient only where a layer with parameters sits below.
    """

    name: str
    output_shape: tuple
    parameters: int
    forward_flops: int
    backward_flops: int
    spec: str = ""  # the layer as the spec writes it (conv8x4), "" for the input, flatten and softmax


class Layer:
    kind = ""
    relu_output = False  # whether the output is a ReLU's (so zero where its gradient must be)

    def __init__(self, name, spec, in_shape, number=0, relu_input=False, below_has_parameters=False,
                 source="the input"):
        self.name = name
        self.spec = spec
        self.in_shape = tuple(in_shape)
        self.number = number
        self.source = source  # what the input is, for messages: see describe_source
        self.relu_input = relu_input
        # Whether a gradient must reach the input in training: only if some layer below learns.
        self.needs_input_gradient = below_has_parameters
        self.out_shape = self.output_shape()

    # ---- shapes and sizes

    def output_shape(self):
        return self.in_shape

    def parameter_shapes(self):
        """Local name -> shape of each parameter, in the order they are drawn and stored."""
        return {}

    def fans(self):
        """(fan_in, fan_out) of the weights, for the initialisation schemes."""
        raise NotImplementedError

    def multiply_adds(self):
        """Multiply-adds of the forward pass, per image."""
        return 0

    def cost(self):
        forward = 2 * self.multiply_adds()
        parameters = sum(math.prod(shape) for shape in self.parameter_shapes().values())
        weight_gradient = forward if parameters else 0
        input_gradient = forward if self.needs_input_gradient else 0
        return LayerCost(self.title(), self.out_shape, parameters, forward, weight_gradient + input_gradient,
                         str(self.spec))

    def title(self):
        """The layer's row in a summary: its name and what it computes."""
        return self.name

    def describe(self):
        """The layer in a Network: line (`conv 8x4x4`), or None to show only its output."""
        return None

    def problem(self, template, **values):
        """A SettingError about this layer: `{layers}: layer 3 maxpool2 ...`."""
        return SettingError("{layers}: layer {number} {layer} " + template, number=self.number, layer=str(self.spec),
                            **values)

    # ---- ONNX

    def onnx(self, graph, x, weights):
        """Append this layer's nodes to graph (onnx_export's _Graph) after the tensor named x;
        weights maps local parameter names to initializer names. Returns the output's name."""
        raise NotImplementedError

    # ---- the passes

    def allocate(self, capacity, dtype):
        """Scratch for batches of up to `capacity` images."""

    def forward(self, out, x, p):
        raise NotImplementedError

    def backward(self, dx, dout, x, out, p, g):
        raise NotImplementedError

    def step(self, dx, dout, x, out, p, g, optimizer, names):
        """Backward, then the optimizer's update of every parameter; units with a fused path override it."""
        self.backward(dx, dout, x, out, p, g)
        for local, full in names.items():
            optimizer.update(full, p[local], g[local])


def side_text(shape):
    """(C, H, W) -> "CxHxW"; (D,) -> "D"."""
    return "x".join(map(str, shape))


def describe_source(number, layer, shape):
    """What a layer's input is, for messages: the input image, or the output of layer `number`."""
    if layer is None:
        return f"the {side_text(shape)} input"
    what = "maps" if len(shape) == 3 else "vector"
    return f"the {side_text(shape)} {what} of layer {number} ({layer.spec})"
