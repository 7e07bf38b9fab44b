"""The network's shape: architecture settings, the shapes they imply, and initial parameters.

    x (N, C, H, H) -> conv K x S x S + bias, ReLU -> flatten (N, F)
      -> dense F -> hidden[0], ReLU -> ... -> dense hidden[-1] -> M logits -> softmax

Shapes are computed here and nowhere else. Parameters are an ordered dict of named arrays:
"conv_w" (K, C, S, S), "conv_b" (K,), "dense{l}_w" (I, O), "dense{l}_b" (O,).
Importing this module does not import numba, so checkpoints can be read without compiling.
"""
from dataclasses import dataclass

import numpy as np

from cnnfruit.errors import CnnfruitError
from cnnfruit.config import IMAGE_SIZE, INIT_SCHEMES


@dataclass(frozen=True)
class LayerCost:
    """One layer's output shape, parameters and arithmetic, per image.

    FLOPs count 2 per multiply-add of the layer's products; bias adds, ReLU and softmax are
    left out (one operation per activation, under 0.1% of the total at the default sizes).
    backward_flops is what a training step computes: every gradient the update needs, and the
    input gradient only where a layer with parameters sits below (not for the conv layer).
    """

    name: str
    output_shape: tuple
    parameters: int
    forward_flops: int
    backward_flops: int


@dataclass(frozen=True)
class Architecture:
    in_channels: int = 1
    image_size: int = IMAGE_SIZE
    kernels: int = 8
    kernel_size: int = 4
    hidden: tuple = (841, 29)
    classes: int = 3

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.in_channels < 1 or self.kernels < 1 or self.classes < 2:
            raise CnnfruitError("the network needs at least 1 channel, 1 kernel and 2 classes")
        if not 1 <= self.kernel_size <= self.image_size:
            raise CnnfruitError(
                f"kernel size {self.kernel_size} does not fit a {self.image_size}x{self.image_size} image"
            )
        if any(h < 1 for h in self.hidden):
            raise CnnfruitError(f"hidden layer sizes must be positive, got {list(self.hidden)}")

    @classmethod
    def from_config(cls, config, classes, image_size=IMAGE_SIZE):
        """The network a TrainConfig describes, for `classes` classes."""
        return cls(in_channels=config.in_channels, image_size=image_size, kernels=config.kernels,
                   kernel_size=config.kernel_size, hidden=config.hidden, classes=classes)

    @property
    def conv_side(self):
        """P: the side of each conv output map (valid convolution, stride 1)."""
        return self.image_size - self.kernel_size + 1

    @property
    def features(self):
        """F: the flattened conv output, the first dense layer's input width."""
        return self.kernels * self.conv_side**2

    @property
    def dense_widths(self):
        """Input and output width of each dense layer in turn."""
        widths = (self.features, *self.hidden, self.classes)
        return list(zip(widths[:-1], widths[1:]))

    def parameter_shapes(self):
        shapes = {
            "conv_w": (self.kernels, self.in_channels, self.kernel_size, self.kernel_size),
            "conv_b": (self.kernels,),
        }
        for layer, (fan_in, fan_out) in enumerate(self.dense_widths):
            shapes[f"dense{layer}_w"] = (fan_in, fan_out)
            shapes[f"dense{layer}_b"] = (fan_out,)
        return shapes

    def layer_costs(self):
        """LayerCost of each layer in order, from the input to the softmax."""
        C, H, K, S, P = self.in_channels, self.image_size, self.kernels, self.kernel_size, self.conv_side
        conv_macs = self.features * C * S * S  # each of the K x P x P outputs sums a C x S x S window
        # The conv layer's backward is its kernel gradient alone (the same multiply-adds as its
        # forward): the image below it has no weights, so training never needs its gradient.
        costs = [LayerCost("input", (C, H, H), 0, 0, 0),
                 LayerCost("conv + ReLU", (K, P, P), K * C * S * S + K, 2 * conv_macs, 2 * conv_macs),
                 LayerCost("flatten", (self.features,), 0, 0, 0)]
        last = len(self.dense_widths) - 1
        for layer, (fan_in, fan_out) in enumerate(self.dense_widths):
            # backward: the weight gradient x^T dz and the input gradient dz W^T, each as big as the forward
            name = f"dense{layer}" + (" (logits)" if layer == last else " + ReLU")
            costs.append(LayerCost(name, (fan_out,), fan_in * fan_out + fan_out, 2 * fan_in * fan_out,
                                   4 * fan_in * fan_out))
        costs.append(LayerCost("softmax", (self.classes,), 0, 0, 0))
        return costs

    def flops_per_image(self):
        """Multiply-adds x 2 of one training step (forward + both backward products) per image."""
        conv = self.features * self.in_channels * self.kernel_size**2
        dense = sum(i * o for i, o in self.dense_widths)
        return 2 * (2 * conv + 3 * dense)


# Initialisation schemes, each a rule for drawing weights and biases from a layer's fan-in and
# fan-out. Every draw is float64 from the given generator in parameter_shapes() order, then cast,
# so a seed gives the same network on every machine.
#   he       He-normal weights N(0, 2 / fan_in), zero biases: cnnfruit's first scheme, kept bit
#            for bit (the same draws in the same order).
#   torch    PyTorch's default for Conv2d and Linear: weights and biases U(-1/sqrt(fan_in),
#            1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5), and its bias rule).
#   glorot   Glorot (Xavier) uniform weights U(-a, a), a = sqrt(6 / (fan_in + fan_out)), zero biases.
#   he-zero  he for the conv and hidden layers, zero weights in the logit layer: every class
#            starts at the same probability, the hidden layers still get the He variance.
# The names are config.INIT_SCHEMES; the default, TrainConfig.init, was chosen by measurement.


def fans(name, shape):
    """(fan_in, fan_out) of a weight array: conv_w (K, C, S, S) or dense (I, O)."""
    if name == "conv_w":
        receptive_field = shape[2] * shape[3]
        return shape[1] * receptive_field, shape[0] * receptive_field
    return shape[0], shape[1]


def init_parameters(arch, rng, dtype=np.float32, scheme="he"):
    """Initial parameters by `scheme` (one of INIT_SCHEMES), drawn in a fixed order from rng.

    Training passes its own scheme (TrainConfig.init, DEFAULT_INIT unless set). Called without
    one, this gives he: an untrained network whose every layer responds to its input, which is
    what gradient checks and tests of untrained networks need.
    """
    if scheme not in INIT_SCHEMES:
        raise CnnfruitError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {scheme!r}")
    shapes = arch.parameter_shapes()
    logit_layer = f"dense{len(arch.dense_widths) - 1}"
    params = {}
    for name, shape in shapes.items():
        layer, kind = name.rsplit("_", 1)
        fan_in, fan_out = fans(f"{layer}_w", shapes[f"{layer}_w"])
        value = _draw(scheme, kind, shape, fan_in, fan_out, layer == logit_layer, rng)
        params[name] = value.astype(dtype)
    return params


def _draw(scheme, kind, shape, fan_in, fan_out, is_logit_layer, rng):
    """One float64 array: kind is "w" or "b"; shape, fans and rng as in init_parameters."""
    if scheme == "torch":
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape)
    if kind == "b" or (scheme == "he-zero" and is_logit_layer):
        return np.zeros(shape)
    if scheme == "glorot":
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape)
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
