"""Training settings: each one's name, default, allowed values, help text and check, declared once.

`TrainConfig` is the only list of settings. The command line derives its options from these
fields (their defaults, `choices` and `help`), checkpoints store them by name, and `check` is the
only validation, with messages that name the setting (`lr must be a positive number, got -1`).
This module imports nothing heavy, so `cnnfruit --help` stays fast.
"""
import math
import numbers
from dataclasses import MISSING, asdict, dataclass, field, fields

from cnnfruit import layerspec
from cnnfruit.errors import SettingError

IMAGE_SIZE = 32  # the side every image is resized to, and the network's input side

COLOR_MODES = ("grey", "rgb")
NORMALIZE_MODES = ("none", "scale", "standardize")
OPTIMIZERS = ("sgd", "momentum", "adam")
LOSS_REDUCTIONS = ("sum", "mean")
AUGMENT_MODES = ("none", "flip", "flip-vh", "rotate", "shift")
INIT_SCHEMES = ("he", "torch", "glorot", "he-zero")  # architecture.init_parameters draws each
TTA_MODES = ("none", "flip", "rotate")  # test-time augmentation: see tta.py
VAL_SPLITS = ("random", "block")
LR_SCHEDULES = ("constant", "step", "cosine", "onecycle", "plateau")  # see schedules.py

# The learning-rate finder's sweep (training/lr_finder.py): its defaults, here so that the
# lr-find command can show them in --help without importing numpy.
LR_FIND_START = 1e-8
LR_FIND_END = 1.0
LR_FIND_STEPS = 200
LR_FIND_PROBE = 128  # validation images whose loss is measured after every step


# ---- checks: each returns None for a good value, else a SettingError template about {name}


def positive_number(value):
    if not (value > 0 and math.isfinite(value)):
        return "must be a positive number, got {value}"


def at_least(low):
    def check(value):
        if value < low:
            return f"must be at least {low}, got {{value}}"
    return check


def zero_or_more(value):
    if not value >= 0:
        return "must be zero or positive, got {value}"


def share(value):
    """A fraction in [0, 1): momentum, betas, the validation share."""
    if not 0 <= value < 1:
        return "must be in [0, 1), got {value}"


def strictly_between_0_and_1(value):
    if not 0 < value < 1:
        return "must be between 0 and 1 (both excluded), got {value}"


def fits_the_image(value):
    if not 1 <= value <= IMAGE_SIZE:
        return f"{{value}} does not fit the {IMAGE_SIZE}x{IMAGE_SIZE} images: use 1 to {IMAGE_SIZE}"


def layer_sizes(value):
    if any(size < 1 for size in value):
        return "sizes must be positive, got {value}"


def setting(default, help, *, check=None, choices=None, default_factory=None, parse=None):
    """A TrainConfig field with what the CLI and the checks need to know about it.

    parse, if given, turns any accepted spelling of a value into its one canonical form before the
    type check (so that "1,2" and (1, 2) are the same setting, in a checkpoint and on resume).
    """
    metadata = {"help": help, "check": check, "choices": choices, "parse": parse}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def parse_hidden(value):
    """Hidden layer sizes from a tuple/list of ints, one int, or text like "841,29" ("" for none)."""
    if isinstance(value, str):
        try:
            return tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise SettingError("{value!r} is not a comma-separated list of layer sizes, e.g. 841,29",
                               value=value) from None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value),)
    try:
        sizes = tuple(value)
    except TypeError:
        sizes = None
    if sizes is None or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in sizes):
        raise SettingError("{hidden} must be a list of layer sizes, e.g. (841, 29), got {value!r}", value=value)
    return tuple(int(s) for s in sizes)


def parse_layers(value):
    """The canonical text of a layers setting (layerspec.canonical): from spec text in any case and
    spacing, or a list of layerspec specs; "" leaves the network to the shorthands."""
    if isinstance(value, (list, tuple)):
        return layerspec.canonical(layerspec.check(tuple(value)))
    return layerspec.canonical(layerspec.parse(value))


CLASS_WEIGHT_MODES = ("none", "auto")


def parse_class_weights(value):
    """The canonical text of a class-weights setting: "none", "auto" or "w1,w2,..." (floats' repr).

    Takes that text (any spacing, e.g. "1, 2.5,1") or a list/tuple of numbers.
    """
    if isinstance(value, str) and value.strip().lower() in CLASS_WEIGHT_MODES:
        return value.strip().lower()
    parts = value.split(",") if isinstance(value, str) else value
    try:
        weights = [float(part) for part in parts]
        good = bool(weights) and not any(isinstance(part, bool) for part in parts)
    except (TypeError, ValueError):
        good = False
    if not good:
        raise SettingError("{class_weights} must be none, auto or one positive number per class, comma-separated "
                           "(e.g. 1,2.5,1), got {value!r}", value=value)
    if not all(w > 0 and math.isfinite(w) for w in weights):
        raise SettingError("{class_weights} must all be positive numbers, got {value}",
                           value=",".join(map(str, weights)))
    return ",".join(repr(w) for w in weights)


def class_weight_values(text):
    """The weights of a canonical class-weights setting as floats; None for "none" and "auto"."""
    return None if text in CLASS_WEIGHT_MODES else [float(w) for w in text.split(",")]


@dataclass
class TrainConfig:
    """Everything that decides what a training run computes. Checked when made (and by check())."""

    lr: float = setting(1e-6, "Learning rate (loss summed over the batch).", check=positive_number)
    epochs: int = setting(10, "Passes over the training set.", check=at_least(1))
    batch_size: int = setting(1, "Images per SGD step (1 = the report's plain SGD).", check=at_least(1))
    kernels: int = setting(8, "Number of conv kernels.", check=at_least(1))
    kernel_size: int = setting(4, "Side of each square conv kernel.", check=fits_the_image)
    hidden: tuple = setting(None, "Hidden dense layer sizes, comma-separated.", check=layer_sizes,
                            default_factory=lambda: (841, 29))
    # kernels, kernel_size and hidden are shorthands for the report's shape of network; layers says
    # any network (docs/layers.md). A run gives one or the other: both is an error, not a merge.
    layers: str = setting("", "The hidden layers, comma-separated: convKxS [same|valid], maxpoolP, denseO, e.g. "
                              "'conv32x3 same, maxpool2, dense256'; the dense layer to the classes is implied. "
                              "Default: the report's network, as --kernels, --kernel-size and --hidden describe "
                              "it (give those or this, not both).", parse=parse_layers)
    val_fraction: float = setting(0.3, "Share of the training folder held out for validation.", check=share)
    val_split: str = setting("random", "How validation images are held out: a random share, or blocks of consecutive "
                                       "video frames per class and recording (file names like 12_100.jpg), which "
                                       "predicts test accuracy on video-frame datasets.", choices=VAL_SPLITS)
    seed: int = setting(0, "Seed for init, split and shuffling.", check=zero_or_more)
    color: str = setting("grey", "Input channels: one luma channel or three colour channels.", choices=COLOR_MODES)
    normalize: str = setting("none", "Pixel scaling: raw 0..255, /255, or per-image zero mean and unit variance.",
                             choices=NORMALIZE_MODES)
    optimizer: str = setting("sgd", "Update rule.", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "Momentum (--optimizer momentum).", check=share)
    weight_decay: float = setting(0.0, "L2 penalty added to every gradient as weight_decay * param.",
                                  check=zero_or_more)
    beta1: float = setting(0.9, "Adam's first-moment decay.", check=share)
    beta2: float = setting(0.999, "Adam's second-moment decay.", check=share)
    eps: float = setting(1e-8, "Adam's denominator guard.", check=positive_number)
    loss_reduction: str = setting("sum", "Batch loss as the sum (the report's lr scale) or the mean of "
                                         "per-image losses.", choices=LOSS_REDUCTIONS)
    patience: int = setting(0, "Stop when validation loss has not improved for this many epochs (0: never).",
                            check=zero_or_more)
    augment: str = setting("none", "Per-epoch random changes to each training image: left-right flips (flip), "
                                   "also upside-down (flip-vh), also 90-degree turns (rotate), or flips plus "
                                   "shifts of up to 2 pixels (shift).", choices=AUGMENT_MODES)
    # he-zero was chosen by measurement (docs/initialisation.md): on 103 classes he stalls at
    # chance and he-zero learns best of the four; on the three embedded classes all four are
    # within the seeds' spread. Fixup (Zhang, Dauphin and Ma, 2019) also starts its last layer at 0.
    init: str = setting("he-zero", "Initial weights: he (He-normal, zero biases), torch (PyTorch's default, "
                                   "uniform +-1/sqrt(fan-in) weights and biases), glorot (Glorot-uniform, zero "
                                   "biases), he-zero (he with a zero logit layer).", choices=INIT_SCHEMES)
    # ---- learning-rate schedules, class weights, regularisation (see docs/training-features.md)
    lr_schedule: str = setting("constant", "How the learning rate moves during the run: constant; step (times "
                                           "--lr-factor every --lr-step-epochs epochs); cosine (per step from "
                                           "--lr down to 0); onecycle (per step up from --lr/25 to --lr over "
                                           "--lr-warmup of the run, then down to near 0); plateau (times "
                                           "--lr-factor once validation loss has gone more than "
                                           "--lr-patience epochs without a new low).", choices=LR_SCHEDULES)
    lr_step_epochs: int = setting(3, "Epochs between two reductions of --lr-schedule step.", check=at_least(1))
    lr_factor: float = setting(0.1, "What each reduction multiplies the learning rate by (step, plateau).",
                               check=strictly_between_0_and_1)
    lr_warmup: float = setting(0.3, "Share of the run's steps that --lr-schedule onecycle spends rising to --lr.",
                               check=share)
    lr_patience: int = setting(2, "Epochs in a row without a new lowest validation loss that --lr-schedule "
                                  "plateau lets pass; the next such epoch reduces the learning rate.",
                               check=zero_or_more)
    class_weights: str = setting("none", "Weight of each class in the training loss: none (all 1), auto (inverse "
                                         "class frequency in the training split, averaging 1 per training "
                                         "image), or W1,W2,... in class order.", parse=parse_class_weights)
    dropout: float = setting(0.0, "Inverted dropout rate on the hidden dense layers' outputs, in training only.",
                             check=share)
    label_smoothing: float = setting(0.0, "Share of each training target spread evenly over all classes.",
                                     check=share)

    def __post_init__(self):
        self.check()

    def check(self):
        """Bring every value to its field's type and check it; raises SettingError naming the setting."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["parse"] is not None:
                value = f.metadata["parse"](value)
            value = _typed(f.name, f.type, value)
            setattr(self, f.name, value)
            choices, check = f.metadata["choices"], f.metadata["check"]
            if choices is not None and value not in choices:
                raise SettingError(f"{{{f.name}}} must be one of {', '.join(choices)}, got {{value!r}}", value=value)
            problem = check(value) if check is not None else None
            if problem is not None:
                shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
                raise SettingError(f"{{{f.name}}} {problem}", value=shown)
        if self.layers:
            shorthands = [name for name in ("kernels", "kernel_size", "hidden")
                          if getattr(self, name) != default_of(_FIELDS[name])]
            if shorthands:
                raise SettingError("give the network as {layers} or by its shorthands (" +
                                   ", ".join("{%s}" % name for name in shorthands) + "), not both")
        if self.patience and self.val_fraction == 0:
            raise SettingError("{patience} watches the validation loss: give a {val_fraction} above 0")
        if self.lr_schedule == "plateau" and self.val_fraction == 0:
            raise SettingError("{lr_schedule} plateau watches the validation loss: give a {val_fraction} above 0")
        return self

    def to_dict(self):
        """JSON-ready: name -> value, layer sizes as a list."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def of(cls, config):
        """The TrainConfig a caller means: one given, or one made from a dict of settings, checked.

        fit(data, "adam") or a misspelt setting name is one SettingError, not an AttributeError or
        a TypeError from the constructor."""
        if isinstance(config, dict):
            unknown = sorted(map(str, set(config) - {f.name for f in fields(cls)}))
            if unknown:
                raise SettingError("{names} is not a training setting", names=", ".join(map(repr, unknown)))
            config = cls(**config)
        if not isinstance(config, cls):
            raise SettingError("the settings must be a TrainConfig (or a dict of them), got {value!r}", value=config)
        return config.check()

    @classmethod
    def from_dict(cls, settings):
        """The config a checkpoint stored; settings it does not record take their defaults.

        Except init: a checkpoint that records no init was initialised with he.
        """
        if not isinstance(settings, dict):
            raise SettingError("the stored settings are not a dict of name: value")
        settings = {"init": "he", **settings}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise SettingError("the checkpoint has settings this cnnfruit does not know ({names}); upgrade cnnfruit",
                               names=", ".join(map(str, unknown)))
        return cls(**settings)

    def optimizer_settings(self):
        return {"lr": self.lr, "weight_decay": self.weight_decay, "momentum": self.momentum,
                "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    @property
    def in_channels(self):
        return 3 if self.color == "rgb" else 1


def setting_fields():
    """The TrainConfig fields, for clients that list the settings (the CLI's options)."""
    return {f.name: f for f in fields(TrainConfig)}


_FIELDS = setting_fields()


def default_of(f):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _typed(name, kind, value):
    """value as the field's type: ints stay whole numbers, floats finite-or-not reals, text text."""
    if kind in (int, "int"):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise SettingError(f"{{{name}}} must be a whole number, got {{value!r}}", value=value)
    if kind in (float, "float"):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise SettingError(f"{{{name}}} must be a number, got {{value!r}}", value=value)
    if kind in (str, "str"):
        if isinstance(value, str):
            return value
        raise SettingError(f"{{{name}}} must be text, got {{value!r}}", value=value)
    try:
        return parse_hidden(value)
    except SettingError as err:
        if "{hidden}" in err.template:
            raise
        raise SettingError("{hidden}: " + err.template, **err.values) from None
