"""cnnfruit: train, evaluate and explain a small CNN on small image sets, on a CPU.

    import cnnfruit
    data = cnnfruit.load_embedded()
    result = cnnfruit.fit(data, cnnfruit.TrainConfig(epochs=2), out="runs/a")
    clf = cnnfruit.Classifier.load("runs/a/best.npz")
    clf.predict(["pear.jpg"])

The names below are the public API. They are imported on first use, so that `import cnnfruit`
(and `cnnfruit --help`) does not compile or even import Numba until something needs it.
"""

from cnnfruit.version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "TrainConfig": "config",
    "Architecture": "nn.architecture",
    "Dataset": "data.datasets",
    "Split": "data.datasets",
    "load_embedded": "data.datasets",
    "read_image_folder": "data.datasets",
    "DataSource": "data.sources",
    "load_image": "data.preprocess",
    "fit": "training.run",
    "resume": "training.run",
    "Run": "training.run",
    "FitResult": "training.run",
    "Classifier": "inference.classifier",
    "Evaluation": "inference.classifier",
    "FilePrediction": "inference.classifier",
    "History": "history",
    "EpochRecord": "history",
    "configure_threads": "threads",
    "check_gradients": "nn.gradcheck",
    "find_lr": "training.lr_finder",
    "LrSweep": "training.lr_finder",
    "summarize": "inference.summary",
    "TensorBoardLog": "training.logs",
    "confident_mistakes": "inference.mistakes",
    "SearchSpace": "sweep.space",
    "Choice": "sweep.space",
    "Range": "sweep.space",
    "Sweep": "sweep.study",
    "local_cluster": "sweep.executors",
    "SweepReport": "sweep.report",
    "CnnfruitError": "errors",
    "SettingError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cnnfruit' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
