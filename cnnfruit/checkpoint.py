"""Checkpoints: versioned .npz files of named arrays, written atomically, checked on load.

Nothing is ever pickled: strings are stored as numpy unicode arrays and structured data (the
training configuration, generator state and history) as JSON text in 0-d unicode arrays.
"""
import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .errors import CnnfruitError
from .files import write_atomically
from .architecture import Architecture
from .config import TrainConfig

FORMAT_VERSION = 1


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
    # set, "digest": data.fingerprint of the images, "skip_bad": bool}, so that a resumed run
    # trains on the same data.
    data: dict = field(default_factory=dict)
    # An epoch stopped part-way (Ctrl-C): {"step", "loss_sum", "correct", "seconds"} so far; then
    # rng_state is the shuffling generator's state at the START of that epoch. None otherwise.
    partial: dict = None

    @property
    def interrupted(self):
        return self.partial is not None


def _text(value):
    return np.array(json.dumps(value))


def save(path, ckpt):
    arch = ckpt.arch
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "arch_in_channels": np.array(arch.in_channels),
        "arch_image_size": np.array(arch.image_size),
        "arch_kernels": np.array(arch.kernels),
        "arch_kernel_size": np.array(arch.kernel_size),
        "arch_hidden": np.array(arch.hidden, dtype=np.int64),
        "class_names": np.array(ckpt.class_names, dtype=str),
        "preprocess_color": np.array(ckpt.color),
        "preprocess_normalize": np.array(ckpt.normalize),
        "train_epoch": np.array(ckpt.epoch),
        "optimizer_name": np.array(ckpt.optimizer),
        "train_rng_state": _text(ckpt.rng_state),
        "train_config": _text(ckpt.config),
        "train_history": _text(ckpt.history),
        "train_data": _text(ckpt.data),
        "train_partial": _text(ckpt.partial),
    }
    for name, value in ckpt.params.items():
        arrays[f"param_{name}"] = value
    for name, value in ckpt.optimizer_state.items():
        arrays[f"optstate_{name}"] = value

    def write(temporary):
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)

    write_atomically(path, write)


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
    try:
        return _from_arrays(arrays)
    except KeyError as err:
        raise CnnfruitError(f"checkpoint {path} lacks the array {err.args[0]}") from None
    except (CnnfruitError, ValueError, TypeError, AttributeError) as err:
        raise CnnfruitError(f"checkpoint {path} is inconsistent: {err}") from None


def _read_arrays(path):
    """Every array of the .npz at path; never unpickles (object arrays are refused)."""
    if not zipfile.is_zipfile(path):
        raise CnnfruitError(f"{path} is not a cnnfruit checkpoint: not an .npz archive, or a truncated one")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except ValueError as err:
        if "pickle" in str(err):
            raise CnnfruitError(
                f"{path} holds pickled Python objects; cnnfruit never unpickles files, refusing it"
            ) from None
        raise CnnfruitError(f"{path} is not a readable cnnfruit checkpoint: {err}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as err:
        raise CnnfruitError(f"{path} is not a readable cnnfruit checkpoint: {err}") from None


def _from_arrays(arrays):
    class_names = [str(name) for name in arrays["class_names"]]
    arch = Architecture(
        in_channels=int(arrays["arch_in_channels"]),
        image_size=int(arrays["arch_image_size"]),
        kernels=int(arrays["arch_kernels"]),
        kernel_size=int(arrays["arch_kernel_size"]),
        hidden=tuple(int(h) for h in arrays["arch_hidden"]),
        classes=len(class_names),
    )
    params = {}
    for name, shape in arch.parameter_shapes().items():
        value = arrays[f"param_{name}"]
        if value.shape != shape:
            raise CnnfruitError(f"{name} has shape {value.shape}, its architecture needs {shape}")
        if value.dtype.kind != "f":
            raise CnnfruitError(f"{name} holds {value.dtype}, not floating-point numbers")
        params[name] = np.ascontiguousarray(value)
    optimizer_state = {
        name[len("optstate_"):]: value for name, value in arrays.items() if name.startswith("optstate_")
    }
    config = json.loads(str(arrays["train_config"]))
    if config:
        TrainConfig.from_dict(config)  # every stored setting checked as a new run's would be
    return Checkpoint(
        arch=arch,
        class_names=class_names,
        params=params,
        color=str(arrays["preprocess_color"]),
        normalize=str(arrays["preprocess_normalize"]),
        epoch=int(arrays["train_epoch"]),
        optimizer=str(arrays["optimizer_name"]),
        optimizer_state=optimizer_state,
        rng_state=json.loads(str(arrays["train_rng_state"])),
        config=config,
        history=json.loads(str(arrays["train_history"])),
        data=_optional_json(arrays, "train_data", {}),
        partial=_optional_json(arrays, "train_partial", None),
    )


def _optional_json(arrays, name, default):
    """Arrays added to format 1 later: older checkpoints simply lack them."""
    if name not in arrays:
        return default
    value = json.loads(str(arrays[name]))
    return default if value is None else value
