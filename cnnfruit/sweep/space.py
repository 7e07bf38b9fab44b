"""A search space: which training settings a sweep holds fixed, and which it searches, over what.

    space = SearchSpace.from_values(lr=[1e-5, 1e-4], kernels=Range(4, 16), hidden=[(841, 29), (256,)])
    space = SearchSpace.from_text({"lr": "1e-5:1e-2:log", "hidden": ["841,29", "256"]})
    space = SearchSpace.from_text({"layers": "conv16x3 same, maxpool2, dense64; conv16x3, dense64"})

A searched setting is a `Choice` of values (a comma list on the command line) or a `Range`
(`low:high` or `low:high:log`). Layer specs hold commas themselves: several are given as a list,
or in one text separated by `;` (LAYERS_SEPARATOR). Every value and both ends of a range are checked by TrainConfig
when the space is made, so a bad value fails at once with the setting's name, not hours into a
sweep. Only lists make a grid; any range makes the space one for a sampler. Plain Python values
throughout (no Optuna here), so a notebook and the command line build the same object.
"""
from dataclasses import dataclass, fields

from cnnfruit.config import TrainConfig, parse_hidden, parse_layers, setting_fields
from cnnfruit.errors import SettingError

NOT_SEARCHED = ("seed",)  # a sweep repeats every setting over its own list of seeds
NETWORK_SETTINGS = ("layers", "kernels", "kernel_size", "hidden", "color")
LAYERS_SEPARATOR = ";"  # between the layer specs of one text: the specs use commas themselves
# Settings whose sweep default differs from `train`'s: on video frames only a block validation
# split ranks recipes like the test set does (measured in docs/sweep.md).
SWEEP_DEFAULTS = {"val_split": "block"}


@dataclass(frozen=True)
class Choice:
    """Try each of these values."""

    values: tuple


@dataclass(frozen=True)
class Range:
    """Any value from low to high (both included); log: sample on a log scale."""

    low: float
    high: float
    log: bool = False


class SearchSpace:
    """Fixed settings (name: value) and searched ones (name: Choice or Range), all checked."""

    def __init__(self, fixed=None, searched=None):
        fixed, searched = dict(fixed or {}), dict(searched or {})
        known = setting_fields()
        for name in (*fixed, *searched):
            if name not in known:
                raise SettingError("{name!r} is not a training setting", name=name)
            if name in NOT_SEARCHED:
                raise SettingError("a sweep sets {%s} itself, from its list of seeds" % name)
        both = sorted(set(fixed) & set(searched))
        if both:
            raise SettingError("{%s} is both fixed and searched" % both[0])
        shorthands = [n for n in ("kernels", "kernel_size", "hidden") if n in fixed or n in searched]
        if ("layers" in fixed or "layers" in searched) and shorthands:  # TrainConfig sees one run at a time
            raise SettingError("give the network as {layers} or by its shorthands (" +
                               ", ".join("{%s}" % n for n in shorthands) + "), not both")
        self.fixed = TrainConfig(**fixed).to_dict()  # every setting, checked, defaults filled in
        self.fixed = {name: self.fixed[name] for name in fixed}
        self.searched = {name: _checked(name, kind, known[name], self.fixed) for name, kind in searched.items()}

    # ---- building

    @classmethod
    def from_values(cls, **settings):
        """From Python values: a list is a Choice (for hidden: a list of layouts), a Range a range,
        anything else (a tuple for hidden) a fixed value."""
        fixed, searched = {}, {}
        for name, value in settings.items():
            if isinstance(value, (Choice, Range)):
                searched[name] = value
            elif isinstance(value, list):
                searched[name] = Choice(tuple(value))
            else:
                fixed[name] = value
        return cls(fixed, searched)

    @classmethod
    def from_text(cls, settings):
        """From command-line text: name -> "v", "v1,v2", "low:high[:log]"; hidden -> a list of layouts;
        class_weights -> a list of settings ("none", "auto" or "1,2,1" each)."""
        fields_ = setting_fields()
        fixed, searched = {}, {}
        for name, text in settings.items():
            if name not in fields_:
                raise SettingError("{name!r} is not a training setting", name=name)
            if fields_[name].type is tuple or name == "layers":  # one layout per value; several are a Choice
                layouts = [text] if isinstance(text, str) else list(text)
                if name == "layers":
                    layouts = [spec for layout in layouts for spec in str(layout).split(LAYERS_SEPARATOR)]
                parsed = [_parse_layout(name, layout) for layout in layouts]
                if len(parsed) == 1:
                    fixed[name] = parsed[0]
                elif parsed:
                    searched[name] = Choice(tuple(parsed))
                continue
            if name == "class_weights":
                values = _class_weight_values(text)
                if len(values) == 1:
                    fixed[name] = values[0]
                elif values:
                    searched[name] = Choice(tuple(values))
                continue
            value = _parse_text(name, fields_[name].type, text)
            (searched if isinstance(value, (Choice, Range)) else fixed)[name] = value
        return cls(fixed, searched)

    # ---- reading

    @property
    def names(self):
        """The searched settings, in TrainConfig's order."""
        return [f.name for f in fields(TrainConfig) if f.name in self.searched]

    @property
    def is_grid(self):
        return all(isinstance(kind, Choice) for kind in self.searched.values())

    @property
    def grid_size(self):
        size = 1
        for kind in self.searched.values():
            size *= len(kind.values) if isinstance(kind, Choice) else 0
        return size

    def with_defaults(self, defaults):
        """The space with these settings fixed where it neither fixes nor searches them."""
        extra = {name: value for name, value in defaults.items() if name not in self.fixed and name not in self.searched}
        return SearchSpace({**self.fixed, **extra}, self.searched) if extra else self

    def config(self, params, seed):
        """The TrainConfig of one run: the fixed settings, these searched values, this seed."""
        values = {**self.fixed, **{name: from_param(name, value) for name, value in params.items()}, "seed": seed}
        return TrainConfig(**values)

    def to_dict(self):
        """JSON-ready, to store with a study and compare when it is resumed."""
        def kind(value):
            if isinstance(value, Range):
                return {"range": [value.low, value.high], "log": value.log}
            return {"choice": [to_param(v) for v in value.values]}

        return {"fixed": self.fixed, "searched": {name: kind(self.searched[name]) for name in self.names}}

    @classmethod
    def from_dict(cls, record):
        searched = {}
        for name, kind in record["searched"].items():
            if "range" in kind:
                searched[name] = Range(*kind["range"], log=kind["log"])
            else:
                searched[name] = Choice(tuple(from_param(name, v) for v in kind["choice"]))
        return cls(record["fixed"], searched)

    def describe(self, name):
        kind = self.searched[name]
        if isinstance(kind, Range):
            return f"{_shown(kind.low)} to {_shown(kind.high)}{' (log)' if kind.log else ''}"
        separator = f"{LAYERS_SEPARATOR} " if name == "layers" else ", "
        return separator.join(_shown(from_param(name, to_param(v))) for v in kind.values)


def to_param(value):
    """A setting's value as Optuna can store it (layouts as text "841,29")."""
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value


def from_param(name, value):
    return parse_hidden(value) if name == "hidden" else value


def _class_weight_values(texts):
    """Class-weight settings from command-line text, one text or a list of them (a repeated flag):
    "1,2.5,1" is one weight per class, one setting; "none,auto" is two."""
    values = []
    for text in [texts] if isinstance(texts, str) else list(texts):
        values += [text] if _numbers(text) else [part.strip() for part in str(text).split(",")]
    return values


def _numbers(text):
    """True for text like "1,2.5,1": numbers only."""
    if not isinstance(text, str):
        return False
    try:
        [float(part) for part in text.split(",")]
    except ValueError:
        return False
    return True


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _checked(name, kind, f, fixed):
    """kind with every value brought to the setting's type and checked by TrainConfig."""
    def check(value):
        config = TrainConfig(**{**fixed, name: value})
        if name in NETWORK_SETTINGS:
            from cnnfruit.nn.architecture import check_fits  # here: the command's --help loads this module

            check_fits(config)  # a layer spec that cannot work fails now, not as a failed run
        return getattr(config, name)

    if isinstance(kind, Choice):
        if not kind.values:
            raise SettingError("{%s} has an empty list of values to try" % name)
        values = tuple(check(v) for v in kind.values)
        if len(set(values)) != len(values):
            raise SettingError("{%s} lists a value twice" % name)
        return Choice(values)
    if not isinstance(kind, Range):
        raise SettingError("{%s} must be searched over a Choice or a Range, got {value!r}" % name, value=kind)
    if f.type not in (int, float):
        raise SettingError("{%s} takes no range, only a list of values" % name)
    low, high = check(kind.low), check(kind.high)
    if not low < high:
        raise SettingError("{%s} range {low}:{high} must go from low to high" % name, low=low, high=high)
    if kind.log and not low > 0:
        raise SettingError("{%s} log range must start above 0, got {low}" % name, low=low)
    return Range(low, high, bool(kind.log))


def _parse_layout(name, text):
    if name == "layers":
        return parse_layers(text)
    try:
        return parse_hidden(text)
    except SettingError as err:
        raise SettingError("{%s} %s" % (name, err.template), **err.values) from None


def _parse_text(name, kind, text):
    """One setting's text: a value, a comma list (Choice) or low:high[:log] (Range)."""
    text = str(text).strip()

    def one(part):
        part = part.strip()
        if kind in (int, float):
            try:
                number = float(part) if kind is float else int(part)
            except ValueError:
                # the user's text goes in as values, never into the template itself
                raise SettingError("{%s} {part!r} in {value!r} is not a {kind}" % name, part=part, value=text,
                                   kind="number" if kind is float else "whole number") from None
            return number
        return part

    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].strip() != "log"):
            raise SettingError("{%s} range {value!r} must be low:high or low:high:log" % name, value=text)
        return Range(one(parts[0]), one(parts[1]), log=len(parts) == 3)
    parts = text.split(",")
    if len(parts) > 1:
        return Choice(tuple(one(part) for part in parts))
    return one(text)
