"""The language that says a network: its grammar, and the layer specs it parses into.

    conv32x3 same, conv32x3 same, maxpool2, conv64x3 same, conv64x3 same, maxpool2, dense256

    layers  = layer { "," layer }
    layer   = conv | maxpool | dense
    conv    = "conv" K "x" S [ "same" | "valid" ]   K kernels of S x S, stride 1, then ReLU;
                                                    valid (the default) keeps only whole windows,
                                                    same pads the map with zeros to keep its side
    maxpool = "maxpool" P                           the maximum of each P x P window, stride P
    dense   = "dense" O                             O units, then ReLU

The spec lists the hidden layers; the last dense layer, to one logit per class, is implied. Case
and spaces around the parts do not matter; `canonical` writes a spec one way only, which is what
settings and checkpoints store. Whether a spec fits an input (a pool on an odd map, a kernel
larger than its input) is for the layer units (nn/layers/) to say: this module knows the words
only, and imports nothing heavy, so settings are checked without numpy.
"""
import difflib
import re
from dataclasses import dataclass

from cnnfruit.errors import SettingError

PADDINGS = ("valid", "same")
MAX_SIDE = 2**31 - 1  # any count or side: keeps the index arithmetic of the kernels sane
GRAMMAR = "convKxS [same|valid], maxpoolP or denseO"


@dataclass(frozen=True)
class ConvSpec:
    kernels: int
    size: int
    padding: str = "valid"

    def __str__(self):
        return f"conv{self.kernels}x{self.size}" + (" same" if self.padding == "same" else "")


@dataclass(frozen=True)
class MaxPoolSpec:
    size: int

    def __str__(self):
        return f"maxpool{self.size}"


@dataclass(frozen=True)
class DenseSpec:
    units: int

    def __str__(self):
        return f"dense{self.units}"


_PATTERNS = {
    "conv": (re.compile(r"conv\s*(\d+)\s*x\s*(\d+)(?:\s*([a-z]+))?"), "conv32x3 or conv32x3 same"),
    "maxpool": (re.compile(r"maxpool\s*(\d+)"), "maxpool2"),
    "dense": (re.compile(r"dense\s*(\d+)"), "dense256"),
}
_KIND = re.compile(r"[a-z]+")


def parse(text):
    """The layer specs of a spec's text, in order; a SettingError naming {layers} and the layer if
    the text is not a spec. "" gives no layers."""
    if not isinstance(text, str):
        raise SettingError("{layers} must be text like 'conv32x3 same, maxpool2, dense256', got {value!r}",
                           value=text)
    if not text.strip():
        return ()
    return tuple(_layer(number, part.strip().lower()) for number, part in enumerate(text.split(","), 1))


def check(layers):
    """Layer specs made in code rather than parsed: each a spec of this module, with sizes in range."""
    for number, layer in enumerate(layers, 1):
        if not isinstance(layer, (ConvSpec, MaxPoolSpec, DenseSpec)):
            raise SettingError("{layers}: layer {number} is {value!r}, not a layer spec (ConvSpec, MaxPoolSpec or "
                               "DenseSpec)", number=number, value=layer)
        sizes = [layer.kernels, layer.size] if isinstance(layer, ConvSpec) else \
            [layer.size] if isinstance(layer, MaxPoolSpec) else [layer.units]
        if not all(isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= MAX_SIDE for size in sizes):
            raise SettingError("{layers}: layer {number} {layer} needs whole sizes from 1 to {most}",
                               number=number, layer=str(layer), most=MAX_SIDE)
        if isinstance(layer, ConvSpec) and layer.padding not in PADDINGS:
            raise SettingError("{layers}: layer {number} {layer} has padding {padding!r}; use same or valid",
                               number=number, layer=str(layer), padding=layer.padding)
    return tuple(layers)


def canonical(layers):
    """The one way of writing these specs (or this spec's text): "conv32x3 same, maxpool2, dense256"."""
    if isinstance(layers, str):
        layers = parse(layers)
    return ", ".join(str(layer) for layer in layers)


def report_layers(kernels, kernel_size, hidden):
    """The report's shape: one valid conv layer of `kernels` kernels of kernel_size, then dense
    layers of the `hidden` widths (what --kernels, --kernel-size and --hidden describe)."""
    return (ConvSpec(int(kernels), int(kernel_size)), *(DenseSpec(int(h)) for h in hidden))


def _layer(number, part):
    if not part:
        raise SettingError("{layers}: layer {number} is empty (two commas in a row?)", number=number)
    match = _KIND.match(part)
    kind = match.group() if match else ""
    if kind not in _PATTERNS:
        close = difflib.get_close_matches(kind, _PATTERNS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SettingError("{layers}: layer {number} {part!r} is not a layer{hint} Layers are " + GRAMMAR,
                           number=number, part=part, hint=hint or ".")
    pattern, example = _PATTERNS[kind]
    found = pattern.fullmatch(part)
    if found is None:
        raise SettingError("{layers}: layer {number} {part!r} is not a {kind} layer; write it like {example}",
                           number=number, part=part, kind=kind, example=example)
    numbers = [int(value) for value in found.groups()[:2] if value is not None]
    if not all(1 <= value <= MAX_SIDE for value in numbers):
        raise SettingError("{layers}: layer {number} {part!r} needs sizes from 1 to {most}",
                           number=number, part=part, most=MAX_SIDE)
    if kind == "conv":
        padding = found.group(3) or "valid"
        if padding not in PADDINGS:
            raise SettingError("{layers}: layer {number} {part!r} has padding {padding!r}; use same or valid",
                               number=number, part=part, padding=padding)
        return ConvSpec(numbers[0], numbers[1], padding)
    if kind == "maxpool":
        return MaxPoolSpec(numbers[0])
    return DenseSpec(numbers[0])
