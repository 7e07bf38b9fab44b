"""cnnfruit: train, evaluate and explain a small CNN on small image sets, on a CPU.

    import cnnfruit
    data = cnnfruit.load_embedded()
    result = cnnfruit.fit(data, cnnfruit.TrainConfig(epochs=2), out="runs/a")
    clf = cnnfruit.Classifier.load("runs/a/best.npz")
    clf.predict(["pear.jpg"])

The names below are the public API. They are imported on first use, so that `import cnnfruit`
(and `cnnfruit --help`) does not compile or even import Numba until something needs it.
"""

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS = {
    "TrainConfig": "config",
    "Architecture": "architecture",
    "Dataset": "data",
    "Split": "data",
    "load_embedded": "data",
    "read_image_folder": "data",
    "load_image": "preprocess",
    "fit": "fitting",
    "resume": "fitting",
    "Run": "fitting",
    "FitResult": "fitting",
    "Classifier": "classifier",
    "Evaluation": "classifier",
    "FilePrediction": "classifier",
    "History": "history",
    "EpochRecord": "history",
    "configure_threads": "threads",
    "check_gradients": "gradcheck",
    "find_lr": "lr_finder",
    "LrSweep": "lr_finder",
    "summarize": "summary",
    "TensorBoardLog": "logs",
    "confident_mistakes": "mistakes",
    "SearchSpace": "space",
    "Choice": "space",
    "Range": "space",
    "Sweep": "sweep",
    "local_cluster": "sweep",
    "SweepReport": "sweep_report",
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
