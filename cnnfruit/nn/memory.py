"""Memory: what a network will take, estimated before anything big is allocated.

Without it, `--hidden 1000000000` would end in numpy's MemoryError (a traceback) after seconds of
work, or in the kernel's out-of-memory killer. A run, a prediction or a checkpoint that cannot fit
in the memory available is refused up front with the estimate and the setting to lower. The
estimate counts the big arrays (weights, their gradients, the optimizer's state, the activations
of the largest batch, the images as float tensors), not Python's own few tens of megabytes.
"""
from cnnfruit.errors import CnnfruitError, SettingError

FLOAT_BYTES = 4  # float32, what training and init use
EVAL_BATCH = 256  # the batch of Network.evaluate and Classifier.predict_proba
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def available_bytes():
    """Memory a new allocation can get now (MemAvailable on Linux), or None if the system won't say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def describe(nbytes):
    """1536 -> '1.5 KiB'."""
    value, unit = float(nbytes), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {UNITS[unit]}"


def activation_floats(arch):
    """Floats of Network's workspace per image: each layer's output and its gradient, and a scratch
    of the input's size (a dense layer's unmasked input gradient, a pool's argmax); probabilities
    and the loss."""
    units = arch.units()
    outputs = sum(_count(unit.out_shape) for unit in units)
    inputs = sum(_count(unit.in_shape) for unit in units)
    return 2 * outputs + inputs + arch.classes + 1


def training_needs(arch, config, images):
    """Bytes of each big part of a training run of `config` on `images` training + test images."""
    from cnnfruit.nn.optimizers import state_shapes

    weights = sum(_count(shape) for shape in arch.parameter_shapes().values()) * FLOAT_BYTES
    state = state_shapes(config.optimizer, arch.parameter_shapes())
    rows = max(1, min(max(config.batch_size, EVAL_BATCH), images))
    pixels = arch.in_channels * arch.image_size**2
    return {
        "weights": weights,
        "gradients": weights,
        "optimizer state": sum(_count(shape) * (FLOAT_BYTES if shape else 8) for shape in state.values()),
        f"activations of {rows} images": rows * activation_floats(arch) * FLOAT_BYTES,
        # all training images as floats, their train/validation copies, the epoch's shuffled copy
        "images as tensors": 3 * images * pixels * FLOAT_BYTES,
    }


def check_training(arch, config, images):
    """Refuse (SettingError) a run whose estimate is more than the memory available."""
    parts = training_needs(arch, config, images)
    available = available_bytes()
    need = sum(parts.values())
    if available is None or need <= available:
        return
    setting, value = _culprit(arch, config, parts)
    breakdown = ", ".join(f"{name} {describe(size)}" for name, size in parts.items())
    advice = f"; lower {{{setting}}} (now {{value}})" if setting else "; use fewer images"
    raise SettingError("training this network needs about {need} of memory ({breakdown}), more than the "
                       "{available} available" + advice, need=describe(need), breakdown=breakdown,
                       available=describe(available), value=value)


def check_prediction(arch, dtype_bytes=FLOAT_BYTES, images=EVAL_BATCH, task="predict", copies=1):
    """Refuse a network whose gradients and activations for a batch of `images` cannot fit, with
    `copies` of its weights still to make (beyond the gradients)."""
    weights = sum(_count(shape) for shape in arch.parameter_shapes().values()) * dtype_bytes
    need = copies * weights + images * activation_floats(arch) * dtype_bytes
    available = available_bytes()
    if available is not None and need > available:
        raise CnnfruitError(f"this network needs about {describe(need)} more memory to {task}, more than the "
                            f"{describe(available)} available")


def check_gradient_check(arch, images):
    """Refuse (SettingError) a gradient check whose float64 network, its gradients, their copy
    and the activations of `images` images cannot fit."""
    weights = sum(_count(shape) for shape in arch.parameter_shapes().values()) * 8
    pixels = arch.in_channels * arch.image_size**2
    parts = {"weights, gradients and their copy": 3 * weights,
             f"activations of {images} images": images * (activation_floats(arch) + 2 * pixels) * 8}
    available = available_bytes()
    need = sum(parts.values())
    if available is None or need <= available:
        return
    breakdown = ", ".join(f"{name} {describe(size)}" for name, size in parts.items())
    lower = "{images}" if parts[f"activations of {images} images"] > 3 * weights else _widest(arch)
    raise SettingError("this gradient check needs about {need} of memory ({breakdown}), more than the {available} "
                       "available; lower " + lower, need=describe(need), breakdown=breakdown,
                       available=describe(available))


def _widest(arch):
    """The setting behind the longer side of the largest weight matrix, as a template field."""
    if not arch.is_report_shape:  # a --layers network: its widths are all in the spec
        return "{layers}"
    fan_in, fan_out = max(arch.dense_widths, key=lambda widths: widths[0] * widths[1])
    last = (fan_in, fan_out) == arch.dense_widths[-1]
    if fan_out > fan_in:
        return "{classes}" if last else "{hidden}"
    return "{image_size} or {kernels}" if fan_in == arch.features else "{hidden}"


def _culprit(arch, config, parts):
    """The setting whose lowering shrinks the biggest part, and its value now."""
    biggest = max(parts, key=parts.get)
    if biggest.startswith("activations") and config.batch_size > EVAL_BATCH:
        return "batch_size", config.batch_size
    if biggest == "images as tensors":
        return None, None
    if config.layers:
        return "layers", config.layers
    if config.hidden and max(config.hidden) >= arch.features:
        return "hidden", ",".join(map(str, config.hidden))
    return "kernels", config.kernels


def _count(shape):
    count = 1
    for side in shape:
        count *= int(side)
    return count
