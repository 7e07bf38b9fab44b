"""Helpers for tests that train through the CLI and compare what runs saved."""
import json

import numpy as np
from click.testing import CliRunner

from cnnfruit.cli import main

# Small enough for a step to take well under a millisecond; 17 steps per epoch on image_folder.
TINY = ["--hidden", "8", "--kernels", "2", "--kernel-size", "5", "-q"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def saved_arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def as_format_1(arrays):
    """The arrays of a format-2 checkpoint of the report's shape of network as format 1 wrote them:
    the network by its kernels, kernel size and hidden widths instead of its layer spec."""
    from cnnfruit import layerspec

    arrays = dict(arrays)
    conv, *hidden = layerspec.parse(str(arrays.pop("arch_layers")))
    assert isinstance(conv, layerspec.ConvSpec) and conv.padding == "valid", conv
    arrays.update(format_version=np.array(1), arch_kernels=np.array(conv.kernels),
                  arch_kernel_size=np.array(conv.size), arch_hidden=np.array([h.units for h in hidden], np.int64))
    return arrays


def without_timings(history):
    """The history with wall-clock times taken out: the only part of a run that may differ."""
    history = dict(history)
    history.pop("total_seconds", None)
    history["epochs"] = [{k: v for k, v in e.items() if k != "seconds"} for e in history["epochs"]]
    return history


def assert_same_model(path_a, path_b):
    """Every array bit for bit; the history up to its timings."""
    a, b = saved_arrays(path_a), saved_arrays(path_b)
    assert sorted(a) == sorted(b)
    for name in a:
        if name == "train_history":
            ha, hb = json.loads(str(a[name])), json.loads(str(b[name]))
            assert without_timings(ha) == without_timings(hb)
        else:
            assert a[name].dtype == b[name].dtype, name
            assert np.array_equal(a[name], b[name]), name
