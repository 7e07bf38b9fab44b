"""The network's shape: its layers, the shapes they imply, and initial parameters.

    x (N, C, H, H) -> the hidden layers of the spec -> dense to M logits -> softmax

The hidden layers are a spec (layerspec.py): conv, maxpool and dense layers in any order that
fits, conv and maxpool before dense. The report's network is the default, and what the
shorthands kernels, kernel_size and hidden describe: "conv8x4, dense841, dense29", that is

    x (N, C, 32, 32) -> conv 8 x 4 x 4 + bias, ReLU -> flatten (N, 6728)
      -> dense 6728 -> 841, ReLU -> dense 841 -> 29, ReLU -> dense 29 -> M logits -> softmax

Each layer is a unit of nn/layers/, which knows its shapes; they are computed there and nowhere
else. Parameters are an ordered dict of named arrays, "<layer>_w" and "<layer>_b" in layer order:
the conv layers are conv0, conv1, ... (a network's only conv layer is plain "conv", as in every
checkpoint of the report's network), the dense layers dense0, dense1, ..., the pools pool0, ...
Importing this module does not import numba, so checkpoints can be read without compiling.
"""
import numpy as np

from cnnfruit import layerspec
from cnnfruit.config import IMAGE_SIZE, INIT_SCHEMES
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.layerspec import DenseSpec
from cnnfruit.nn.layers import UNIT_OF_SPEC, Conv, Dense, LayerCost
from cnnfruit.nn.layers.base import describe_source, side_text

REPORT_KERNELS, REPORT_KERNEL_SIZE, REPORT_HIDDEN = 8, 4, (841, 29)  # TrainConfig's defaults


class Architecture:
    """A network's shape: input channels and side, the hidden layers' specs, and the class count.

    Give the layers as a spec (text or a tuple of layerspec specs), or the report's shape by its
    shorthands (kernels, kernel_size, hidden; their defaults give the report's network), not
    both. Checked when made: a spec that cannot work on this input is a SettingError that names
    the layer and the shapes. Equal when the networks are, however they were written.
    """

    __slots__ = ("in_channels", "image_size", "layers", "classes", "_units")

    def __init__(self, in_channels=1, image_size=IMAGE_SIZE, kernels=None, kernel_size=None, hidden=None, classes=3,
                 layers=None):
        shorthands = [name for name, value in (("kernels", kernels), ("kernel_size", kernel_size), ("hidden", hidden))
                      if value is not None]
        if layers is not None and shorthands:
            raise SettingError("give the network as {layers} or by its shorthands (" +
                               ", ".join("{%s}" % name for name in shorthands) + "), not both")
        if layers is None:
            layers = layerspec.report_layers(REPORT_KERNELS if kernels is None else kernels,
                                             REPORT_KERNEL_SIZE if kernel_size is None else kernel_size,
                                             REPORT_HIDDEN if hidden is None else hidden)
        layers = layerspec.parse(layers) if isinstance(layers, str) else layerspec.check(tuple(layers))
        for name, value, low in (("in_channels", in_channels, 1), ("image_size", image_size, 1), ("classes", classes, 2)):
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and
                    low <= value <= layerspec.MAX_SIDE):
                raise CnnfruitError(f"the network's {name} must be a whole number from {low} to "
                                    f"{layerspec.MAX_SIDE}, got {value!r}")
        set_ = object.__setattr__
        set_(self, "in_channels", int(in_channels))
        set_(self, "image_size", int(image_size))
        set_(self, "layers", layers)
        set_(self, "classes", int(classes))
        set_(self, "_units", self._build())

    def __setattr__(self, name, value):
        raise AttributeError("an Architecture cannot be changed; make another")

    def _key(self):
        return self.in_channels, self.image_size, self.layers, self.classes

    def __eq__(self, other):
        return isinstance(other, Architecture) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __reduce__(self):  # pickled by its settings: sweeps send it to worker processes
        return _rebuild, self._key()

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        return (f"Architecture(in_channels={self.in_channels}, image_size={self.image_size}, "
                f"layers={self.spec!r}, classes={self.classes})")

    @classmethod
    def from_config(cls, config, classes, image_size=IMAGE_SIZE):
        """The network a TrainConfig describes, for `classes` classes."""
        if config.layers:
            return cls(in_channels=config.in_channels, image_size=image_size, layers=config.layers, classes=classes)
        return cls(in_channels=config.in_channels, image_size=image_size, kernels=config.kernels,
                   kernel_size=config.kernel_size, hidden=config.hidden, classes=classes)

    # ---- the layers

    @property
    def spec(self):
        """The hidden layers as canonical spec text: "conv8x4, dense841, dense29" for the report's."""
        return layerspec.canonical(self.layers)

    def units(self):
        """New layer units (nn/layers/) of this network, input to logits, without buffers."""
        return self._build()

    def _build(self):
        units, shape, below = [], (self.in_channels, self.image_size, self.image_size), None
        relu, learned = False, False
        counts = {}
        for spec in self.layers:
            counts[type(spec)] = counts.get(type(spec), 0) + 1
        seen = {}
        report_shape = self.is_report_shape
        for number, spec in enumerate((*self.layers, DenseSpec(self.classes)), 1):
            logits = number == len(self.layers) + 1
            kind = type(spec)
            index = seen.get(kind, 0)
            seen[kind] = index + 1
            where = {"number": number, "relu_input": relu, "below_has_parameters": learned,
                     "source": describe_source(number - 1, below, shape)}
            if logits:
                unit = Dense(f"dense{index}", spec, shape, logits=True, **where)
            elif kind is layerspec.ConvSpec:
                unit = Conv(_name(kind, index, counts[kind]), spec, shape, direct=report_shape, **where)
            else:
                unit = UNIT_OF_SPEC[kind](_name(kind, index, counts[kind]), spec, shape, **where)
            units.append(unit)
            shape, below = unit.out_shape, unit
            relu, learned = unit.relu_output, learned or bool(unit.parameter_shapes())
        return tuple(units)

    @property
    def is_report_shape(self):
        """Whether this is the report's shape of network: one valid conv layer on the image, then dense
        layers (what the shorthands kernels, kernel_size and hidden describe)."""
        first, *rest = self.layers or (None,)
        return isinstance(first, layerspec.ConvSpec) and first.padding == "valid" and \
            all(isinstance(layer, DenseSpec) for layer in rest)

    @property
    def dense_widths(self):
        """Input and output width of each dense layer in turn."""
        return [(unit.fan_in, unit.units) for unit in self._units if unit.kind == "dense"]

    @property
    def features(self):
        """F: the first dense layer's input width (the flattened maps below it)."""
        return next(unit.fan_in for unit in self._units if unit.kind == "dense")

    @property
    def conv_layers(self):
        """The names of the conv layers, input first."""
        return [unit.name for unit in self._units if unit.kind == "conv"]

    def parameter_shapes(self):
        return {f"{unit.name}_{local}": shape for unit in self._units for local, shape in unit.parameter_shapes().items()}

    def layer_costs(self):
        """LayerCost of each layer in order, from the input to the softmax (with a flatten row where
        dense layers take over from maps)."""
        costs = [LayerCost("input", (self.in_channels, self.image_size, self.image_size), 0, 0, 0)]
        for unit in self._units:
            if unit.kind == "dense" and len(unit.in_shape) > 1:
                costs.append(LayerCost("flatten", (unit.fan_in,), 0, 0, 0))
            costs.append(unit.cost())
        costs.append(LayerCost("softmax", (self.classes,), 0, 0, 0))
        return costs

    def flops_per_image(self):
        """Multiply-adds x 2 of one training step (forward and the backward products) per image."""
        return sum(cost.forward_flops + cost.backward_flops for cost in self.layer_costs())

    def describe(self):
        """One line: "1x32x32 -> conv 8x4x4 -> 6728 -> 841 -> 29 -> 3" for the report's network."""
        parts = [side_text((self.in_channels, self.image_size, self.image_size))]
        for unit in self._units:
            if unit.kind == "dense":
                if len(unit.in_shape) > 1:
                    parts.append(str(unit.fan_in))
                parts.append(str(unit.units))
            else:
                parts.append(unit.describe())
        return " -> ".join(parts)

    def to_dict(self):
        return {"in_channels": self.in_channels, "image_size": self.image_size, "layers": self.spec,
                "classes": self.classes}


def check_fits(config, image_size=IMAGE_SIZE):
    """Raise the SettingError of a network setting that cannot work on the config's images, before
    any data is read: the class count only sizes the logit layer, which fits any input."""
    Architecture.from_config(config, 2, image_size)


def _rebuild(in_channels, image_size, layers, classes):
    return Architecture(in_channels=in_channels, image_size=image_size, layers=layers, classes=classes)


def _name(kind, index, count):
    """conv, or conv0, conv1, ... when there are several; pool0, ...; dense0, ..."""
    if kind is layerspec.ConvSpec:
        return "conv" if count == 1 else f"conv{index}"
    return ("pool" if kind is layerspec.MaxPoolSpec else "dense") + str(index)


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
    """(fan_in, fan_out) of a weight array: a conv layer's (K, C, S, S) or a dense layer's (I, O)."""
    if len(shape) == 4:
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
    units = arch.units()
    params = {}
    for unit in units:
        fan_in, fan_out = unit.fans() if unit.parameter_shapes() else (0, 0)
        for kind, shape in unit.parameter_shapes().items():
            value = _draw(scheme, kind, shape, fan_in, fan_out, unit is units[-1], rng)
            params[f"{unit.name}_{kind}"] = value.astype(dtype)
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
