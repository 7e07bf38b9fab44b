"""Checkpoints: versioned .npz files of named arrays, written atomically, checked on load.

Nothing is ever pickled: strings are stored as numpy unicode arrays and structured data (the
training configuration, generator state and history) as JSON text in 0-d unicode arrays.

A checkpoint is data from anywhere, and its arrays end up indexed by Numba kernels that trust
their shapes, so `load` checks every field against the others and against what the code will do
with it before anything else sees it: the sizes (and that the archive holds what its headers
declare, before numpy allocates it), the input side and channels against the preprocessing, the
types and finiteness of the weights, the text fields against their choices, the class names, the
optimizer state against the optimizer, and the JSON fields (nesting bounded) against each other.
docs/reliability.md lists the checks and the tests that hold them.
"""
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from cnnfruit import jsontext, layerspec
from cnnfruit.nn import memory
from cnnfruit.nn.architecture import Architecture
from cnnfruit.config import COLOR_MODES, IMAGE_SIZE, NORMALIZE_MODES, OPTIMIZERS, TrainConfig
from cnnfruit.data.datasets import check_class_names
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.files import described, existing_kind, write_atomically

FORMAT_VERSION = 2

# The arrays of each format besides param_<name> and optstate_<name>. Format 1 knew the report's
# network only, by its kernels, kernel size and hidden widths; format 2 holds any network as the
# text of its layer spec (layerspec.py). Every format still reads. The last three of the common
# arrays are optional: a checkpoint without them is read with their defaults (no data record, no
# interrupted epoch, no schedule state).
_COMMON = ("format_version", "arch_in_channels", "arch_image_size", "class_names", "preprocess_color",
           "preprocess_normalize", "train_epoch", "optimizer_name", "train_rng_state", "train_config", "train_history",
           "train_data", "train_partial", "train_schedule")
FIELDS_OF_FORMAT = {1: (*_COMMON, "arch_kernels", "arch_kernel_size", "arch_hidden"),
                    2: (*_COMMON, "arch_layers")}
FIELDS = FIELDS_OF_FORMAT[FORMAT_VERSION]
MAX_SIDE = layerspec.MAX_SIDE  # any single size (kernels, a layer's width, a class count): keeps index arithmetic sane
MAX_SPEC_LENGTH = 100_000  # characters of arch_layers: thousands of layers, far more than a CPU trains
PARTIAL_FIELDS = {"step": int, "loss_sum": float, "correct": int, "seconds": float}


@dataclass
class Checkpoint:
    arch: Architecture
    class_names: list
    params: dict
    color: str = "grey"
    normalize: str = "none"
    epoch: int = 0  # epochs completed
    optimizer: str = "sgd"
    optimizer_state: dict = field(default_factory=dict)
    rng_state: dict = field(default_factory=dict)  # the shuffling generator, for resuming
    config: dict = field(default_factory=dict)  # the training flags
    history: dict = field(default_factory=dict)
    # Where the training images came from: {"source": absolute folder or None for the embedded
    # set, "digest": datasets.fingerprint of the images, and the options it was read with, such as
    # "skip_bad"}, so that a resumed run trains on the same data.
    trained_on: dict = field(default_factory=dict)
    # An epoch stopped part-way (Ctrl-C): {"step", "loss_sum", "correct", "seconds"} so far; then
    # rng_state is the shuffling generator's state at the START of that epoch. None otherwise.
    partial: dict = None
    # The learning-rate schedule's state (schedules.Schedule.state); None in checkpoints from
    # before schedules, which all ran at a constant rate.
    schedule: dict = None

    @property
    def interrupted(self):
        return self.partial is not None


def _text(value):
    import json

    return np.array(json.dumps(value))


def save(path, ckpt):
    arch = ckpt.arch
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "arch_in_channels": np.array(arch.in_channels),
        "arch_image_size": np.array(arch.image_size),
        "arch_layers": np.array(arch.spec),
        "class_names": np.array(ckpt.class_names, dtype=str),
        "preprocess_color": np.array(ckpt.color),
        "preprocess_normalize": np.array(ckpt.normalize),
        "train_epoch": np.array(ckpt.epoch),
        "optimizer_name": np.array(ckpt.optimizer),
        "train_rng_state": _text(ckpt.rng_state),
        "train_config": _text(ckpt.config),
        "train_history": _text(ckpt.history),
        "train_data": _text(ckpt.trained_on),
        "train_partial": _text(ckpt.partial),
        "train_schedule": _text(ckpt.schedule),
    }
    for name, value in ckpt.params.items():
        arrays[f"param_{name}"] = value
    for name, value in ckpt.optimizer_state.items():
        arrays[f"optstate_{name}"] = value

    def write(temporary):
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)

    kind = existing_kind(path)
    if kind == "a folder":
        raise CnnfruitError(f"cannot write checkpoint {path}: it is a folder; give a file name such as "
                            f"{os.path.join(str(path), 'model.npz')}")
    if kind not in (None, "file"):
        raise CnnfruitError(f"cannot write checkpoint {path}: {described(kind)}")
    write_atomically(path, write)  # an OSError is the caller's to word: it knows what was being saved


def load(path):
    """Read and check a checkpoint; any problem is a CnnfruitError that names the file."""
    if not os.path.exists(path):
        raise CnnfruitError(f"checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise CnnfruitError(f"checkpoint {path} is not a file")
    arrays = _read_arrays(path)
    version = arrays.get("format_version")
    if version is None:
        raise CnnfruitError(f"{path} is not a cnnfruit checkpoint (no format_version)")
    if version.shape != () or version.dtype.kind not in "iu":
        raise CnnfruitError(f"{path} is not a cnnfruit checkpoint (format_version is not an integer)")
    if int(version) > FORMAT_VERSION:
        raise CnnfruitError(
            f"{path} has checkpoint format {int(version)}, newer than this cnnfruit reads ({FORMAT_VERSION}); "
            "upgrade cnnfruit"
        )
    if int(version) < 1:
        raise CnnfruitError(f"{path} has checkpoint format {int(version)}, older than any cnnfruit wrote (its "
                            "formats start at 1)")
    try:
        return _from_arrays(arrays, int(version))
    except KeyError as err:
        raise CnnfruitError(f"checkpoint {path} lacks the array {err.args[0]}") from None
    except CnnfruitError as err:
        raise CnnfruitError(f"checkpoint {path} cannot be used: {err}") from None


# ---- reading the archive


def _read_arrays(path):
    """Every array of the .npz at path; never unpickles, never allocates more than the archive holds."""
    if not zipfile.is_zipfile(path):
        raise CnnfruitError(f"{path} is not a cnnfruit checkpoint: not an .npz archive, or a truncated one")
    unreadable = f"{path} is not a readable cnnfruit checkpoint"
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive)
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except CnnfruitError:
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise CnnfruitError(
                f"{path} holds pickled Python objects; cnnfruit never unpickles files, refusing it"
            ) from None
        raise CnnfruitError(f"{unreadable}: {err}") from None
    except MemoryError:
        raise CnnfruitError(f"{unreadable}: its arrays do not fit in memory") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError, NotImplementedError,
            RuntimeError, SyntaxError, OverflowError) as err:  # what zipfile and numpy raise on damaged archives
        raise CnnfruitError(f"{unreadable}: {err}") from None


def _check_members(path, archive):
    """Each member's .npy header against the bytes the archive holds for it, and all of them against
    memory: numpy allocates what a header declares before it reads a byte."""
    unreadable = f"{path} is not a readable cnnfruit checkpoint"
    names = [info.filename for info in archive.infolist()]
    if len(set(names)) != len(names):
        raise CnnfruitError(f"{unreadable}: it holds two members of one name")
    total = 0
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise CnnfruitError(f"{unreadable}: its member {info.filename!r} is not an array")
        with archive.open(info) as member:
            shape, dtype = _declared(member, f"{unreadable}: array {info.filename[:-4]}")
        if dtype.hasobject:
            raise CnnfruitError(f"{path} holds pickled Python objects; cnnfruit never unpickles files, refusing it")
        declared = math.prod(shape) * dtype.itemsize
        if declared > info.file_size:
            raise CnnfruitError(f"{unreadable}: array {info.filename[:-4]} declares {memory.describe(declared)} but "
                                f"the archive holds {memory.describe(info.file_size)} of it")
        total += info.file_size
    available = memory.available_bytes()
    if available is not None and total > available:
        raise CnnfruitError(f"{unreadable}: its arrays take {memory.describe(total)}, more than the "
                            f"{memory.describe(available)} of memory available")


def _declared(member, culprit):
    """(shape, dtype) from the .npy header at the start of member, without reading the data."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise CnnfruitError(f"{culprit} has .npy version {version}, not 1.0 or 2.0")
    except CnnfruitError:
        raise
    except Exception as err:  # numpy parses the header with ast and tokenize, which raise many kinds
        raise CnnfruitError(f"{culprit} has a damaged .npy header: {type(err).__name__}: {err}") from None
    return shape, dtype


# ---- checking the fields


def _from_arrays(arrays, version):
    fields = FIELDS_OF_FORMAT[version]
    unknown = sorted(name for name in arrays if name not in fields and not name.startswith(("param_", "optstate_")))
    if unknown:
        raise CnnfruitError(f"it has arrays this cnnfruit does not know in format {version}: {', '.join(unknown)}")
    color = _choice(arrays, "preprocess_color", COLOR_MODES)
    normalize = _choice(arrays, "preprocess_normalize", NORMALIZE_MODES)
    optimizer = _choice(arrays, "optimizer_name", OPTIMIZERS)
    class_names = _class_names(arrays["class_names"])
    arch = _architecture(arrays, color, len(class_names), version)
    params = _parameters(arrays, arch)
    training = _json(arrays, "train_rng_state", {})
    optimizer_state = _optimizer_state(arrays, optimizer, params, bool(training))
    epoch = _integer(arrays, "train_epoch", 0, _max_epochs())
    config = _json(arrays, "train_config", {})
    history = _json(arrays, "train_history", {})
    trained_on = _json(arrays, "train_data", {}, optional=True)
    partial = _json(arrays, "train_partial", None, optional=True)
    schedule = _json(arrays, "train_schedule", None, optional=True)
    if config:
        _check_config(config, arch, color, normalize)
    if training:
        _check_training_state(training, config, optimizer, epoch, partial)
    elif partial is not None:
        raise CnnfruitError("train_partial needs the training state (train_rng_state) it belongs to")
    if not training:
        schedule = None  # a weights-only checkpoint (Classifier.save, or training state stripped) has no use for it
    elif schedule is not None:
        _check_schedule(schedule, config)
    if history:
        _check_history(history, class_names, epoch if training else None)
    _check_trained_on(trained_on)
    return Checkpoint(arch=arch, class_names=class_names, params=params, color=color, normalize=normalize,
                      epoch=epoch, optimizer=optimizer, optimizer_state=optimizer_state, rng_state=training,
                      config=config, history=history, trained_on=trained_on, partial=partial, schedule=schedule)


def _kind(value):
    return str(value.dtype) if value.shape == () else f"{value.dtype} of shape {value.shape}"


def _integer(arrays, name, low, high):
    value = arrays[name]
    if value.shape != () or value.dtype.kind not in "iu":
        raise CnnfruitError(f"{name} must be a whole number, got {_kind(value)}")
    number = int(value)
    if not low <= number <= high:
        raise CnnfruitError(f"{name} must be from {low} to {high}, got {number}")
    return number


def _string(arrays, name):
    value = arrays[name]
    if value.shape != () or value.dtype.kind != "U":
        raise CnnfruitError(f"{name} must be text, got {_kind(value)}")
    return str(value)


def _choice(arrays, name, choices):
    value = _string(arrays, name)
    if value not in choices:
        raise CnnfruitError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _json(arrays, name, default, optional=False):
    if optional and name not in arrays:
        return default
    value = jsontext.parse(_string(arrays, name), name)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise CnnfruitError(f"{name} must be a JSON object")
    return value


def _class_names(value):
    if value.ndim != 1 or value.dtype.kind != "U":
        raise CnnfruitError(f"class_names must be a list of text, got {_kind(value)}")
    names = [str(name) for name in value]
    if len(names) > MAX_SIDE:
        raise CnnfruitError(f"class_names holds {len(names)} names, more than {MAX_SIDE}")
    check_class_names(names)
    return names


def _architecture(arrays, color, classes, version):
    in_channels = _integer(arrays, "arch_in_channels", 1, MAX_SIDE)
    image_size = _integer(arrays, "arch_image_size", 0, MAX_SIDE)
    if image_size != IMAGE_SIZE:
        raise CnnfruitError(f"arch_image_size is {image_size}, but cnnfruit resizes every image to "
                            f"{IMAGE_SIZE}x{IMAGE_SIZE}")
    channels = 3 if color == "rgb" else 1
    if in_channels != channels:
        raise CnnfruitError(f"arch_in_channels is {in_channels}, but preprocess_color {color} gives {channels} "
                            f"channel{'s' if channels > 1 else ''}")
    if version >= 2:
        return _layers(arrays, in_channels, image_size, classes)
    kernel_size = _integer(arrays, "arch_kernel_size", 1, image_size)
    kernels = _integer(arrays, "arch_kernels", 1, MAX_SIDE)
    hidden = arrays["arch_hidden"]
    if hidden.ndim != 1 or hidden.dtype.kind not in "iu":
        raise CnnfruitError(f"arch_hidden must be a list of whole numbers, got {_kind(hidden)}")
    sizes = [int(h) for h in hidden]
    if not all(1 <= h <= MAX_SIDE for h in sizes):
        raise CnnfruitError(f"arch_hidden sizes must be from 1 to {MAX_SIDE}, got {sizes}")
    return Architecture(in_channels=in_channels, image_size=image_size, kernels=kernels, kernel_size=kernel_size,
                        hidden=tuple(sizes), classes=classes)


def _layers(arrays, in_channels, image_size, classes):
    text = _string(arrays, "arch_layers")
    if len(text) > MAX_SPEC_LENGTH:
        raise CnnfruitError(f"arch_layers is {len(text)} characters long, more than the {MAX_SPEC_LENGTH} of any "
                            "network cnnfruit trains")
    try:
        return Architecture(in_channels=in_channels, image_size=image_size, layers=text, classes=classes)
    except SettingError as err:
        raise CnnfruitError(f"arch_{err}") from None


def _floats(name, value, what="weights"):
    """value as native-order float32 or float64; float16 widened to float32 (exact); finite only."""
    if value.dtype.kind != "f" or value.dtype.itemsize not in (2, 4, 8):
        raise CnnfruitError(f"{name} holds {value.dtype}; {what} must be float32 or float64 (float16 is widened "
                            "to float32)")
    native = np.float32 if value.dtype.itemsize <= 4 else np.float64
    value = np.ascontiguousarray(value, dtype=native)
    if not np.isfinite(value).all():
        raise CnnfruitError(f"{name} holds NaN or infinite values")
    return value


def _parameters(arrays, arch):
    params = {}
    for name, shape in arch.parameter_shapes().items():
        value = arrays[f"param_{name}"]
        if value.shape != shape:
            raise CnnfruitError(f"param_{name} has shape {value.shape}, the architecture needs {shape}")
        params[name] = _floats(f"param_{name}", value)
    extra = sorted(name for name in arrays if name.startswith("param_") and name[6:] not in params)
    if extra:
        raise CnnfruitError(f"it has weights its architecture has no place for: {', '.join(extra)}")
    dtypes = sorted({str(p.dtype) for p in params.values()})
    if len(dtypes) > 1:
        raise CnnfruitError(f"the weights mix {' and '.join(dtypes)}; they must all have one type")
    return params


def _optimizer_state(arrays, optimizer, params, training):
    from cnnfruit.nn.optimizers import state_shapes

    given = {name[len("optstate_"):]: value for name, value in arrays.items() if name.startswith("optstate_")}
    expected = state_shapes(optimizer, {name: p.shape for name, p in params.items()}) if training else {}
    if set(given) != set(expected):
        missing = ", ".join(f"optstate_{n}" for n in sorted(set(expected) - set(given))) or "nothing"
        extra = ", ".join(f"optstate_{n}" for n in sorted(set(given) - set(expected))) or "nothing"
        where = "" if training else " a checkpoint without training state"
        raise CnnfruitError(f"the {optimizer} optimizer state does not fit{where}: missing {missing}; unexpected {extra}")
    state = {}
    dtype = next(iter(params.values())).dtype
    for name, shape in expected.items():
        if shape == ():
            state[name] = np.array(_integer(arrays, f"optstate_{name}", 0, 2**62), dtype=np.int64)
            continue
        value = given[name]
        if value.shape != shape:
            raise CnnfruitError(f"optstate_{name} has shape {value.shape}, its parameter has {shape}")
        state[name] = _floats(f"optstate_{name}", value, "optimizer state").astype(dtype, copy=False)
    return state


def _max_epochs():
    from cnnfruit.history import MAX_EPOCHS

    return MAX_EPOCHS


def _check_config(config, arch, color, normalize):
    try:
        settings = TrainConfig.from_dict(config)
    except CnnfruitError as err:
        raise CnnfruitError(f"train_config: {err}") from None
    if Architecture.from_config(settings, arch.classes, arch.image_size) != arch:
        raise CnnfruitError("train_config describes another network than the checkpoint's arrays")
    if settings.color != color:
        raise CnnfruitError(f"train_config's color {settings.color} differs from preprocess_color {color}")
    if settings.normalize != normalize:
        raise CnnfruitError(f"train_config's normalize {settings.normalize} differs from preprocess_normalize {normalize}")


def _check_training_state(rng_state, config, optimizer, epoch, partial):
    """A checkpoint to resume from: the generator state, the settings and the interrupted epoch agree."""
    if not config:
        raise CnnfruitError("its training state (train_rng_state) needs train_config")
    settings = TrainConfig.from_dict(config)
    if settings.optimizer != optimizer:
        raise CnnfruitError(f"train_config's optimizer {settings.optimizer} differs from optimizer_name {optimizer}")
    if epoch > settings.epochs or (partial is not None and epoch >= settings.epochs):
        what = f"train_epoch {epoch} and an interrupted epoch do" if partial is not None else f"train_epoch {epoch} does"
        raise CnnfruitError(f"{what} not fit train_config's {settings.epochs} epochs")
    generator = np.random.PCG64()
    try:
        generator.state = rng_state
        usable = generator.state == rng_state and rng_state.get("has_uint32") in (0, 1)
    except (TypeError, ValueError, KeyError, OverflowError, AttributeError):
        usable = False
    if not usable:
        raise CnnfruitError("train_rng_state is not a usable state of the PCG64 generator")
    if partial is not None:
        _check_partial(partial, settings.batch_size)


def _check_schedule(state, config):
    """The learning-rate schedule's saved state, as the run's schedule would take it back."""
    from cnnfruit.nn.schedules import make_schedule

    try:
        make_schedule(TrainConfig.from_dict(config), 1).load_state(state)
    except ValueError as err:
        raise CnnfruitError(f"train_schedule: {err}") from None


def _check_partial(partial, batch_size):
    def fits(key, kind):
        value = partial.get(key)
        if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
            return False
        return math.isfinite(value) and value >= (1 if key == "step" else 0) and abs(value) < 2**62

    if not isinstance(partial, dict) or set(partial) != set(PARTIAL_FIELDS) or \
            not all(fits(key, kind) for key, kind in PARTIAL_FIELDS.items()):
        raise CnnfruitError("train_partial must be null or step, loss_sum, correct, seconds with numbers")
    if partial["correct"] > partial["step"] * batch_size:
        raise CnnfruitError(f"train_partial counts {partial['correct']} correct answers in {partial['step']} steps of "
                            f"{batch_size} images")


def _check_history(record, class_names, epoch):
    from cnnfruit.history import History

    history = History.from_dict(record, source="train_history")
    if history.class_names and history.class_names != class_names:
        raise CnnfruitError("train_history's class names differ from class_names")
    if epoch is not None and [e.epoch for e in history.epochs] != list(range(1, epoch + 1)):
        raise CnnfruitError(f"train_history must hold epochs 1 to {epoch}, as train_epoch says")


def _check_trained_on(record):
    """What a resumed run or an eval reads its images by: DataSource(source, **options)."""
    from cnnfruit.data.sources import accepted_options

    source, digest = record.get("source"), record.get("digest")
    if source is not None and not (isinstance(source, str) and source and "\0" not in source):
        raise CnnfruitError("train_data's source must be a folder name or null")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64 and
                                   all(c in "0123456789abcdef" for c in digest)):
        raise CnnfruitError("train_data's digest must be 64 hexadecimal digits (SHA-256) or null")
    options = {key: value for key, value in record.items() if key not in ("source", "digest")}
    unknown = sorted(key for key in options if key not in accepted_options())
    if unknown:
        raise CnnfruitError(f"train_data has an option that image folders do not take: {', '.join(unknown)}")
    for key, value in options.items():
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise CnnfruitError(f"train_data's option {key} must be a single value")
