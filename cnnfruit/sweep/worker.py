"""One run of a sweep, on a worker: train it with `fit`, report each epoch to the Optuna study,
stop when the pruner says so, and come back with how it ended.

Workers only report and ask the pruner; the client that runs the study asks Optuna for settings and
tells it how each run ended (see study.py).
"""
import threading
import time
import warnings
from dataclasses import dataclass

from cnnfruit.config import TrainConfig


@dataclass
class RunTask:
    """Everything a worker needs to train one run and report it to the study."""

    config: dict  # TrainConfig.to_dict()
    folder: str  # the run folder (absolute)
    data: object  # the Dataset
    study_name: str
    storage: object  # an Optuna storage, or the name of a DaskStorage on the worker's scheduler
    trial_id: int
    pruner: object  # an Optuna pruner, or None: report only
    threads: int  # Numba threads for this run


@dataclass
class RunOutcome:
    outcome: str  # "finished", "pruned" or "failed"
    epochs: int = 0
    val_accuracy: float = None  # of the last epoch: the weights model.npz holds and the test scores
    val_loss: float = None
    best_val_loss: float = None
    test_accuracy: float = None
    seconds: float = None
    error: str = None


def run_one(task, stop=None):
    """Train one run of the sweep; reports each epoch to the study, stops when the pruner says so.

    Never raises for a failed run (a diverging loss, a bad setting, any bug): the failure comes
    back as an outcome, with its error, so that the sweep records it and goes on.
    """
    import optuna

    from cnnfruit.training.run import fit
    from cnnfruit.threads import configure_threads

    started = time.perf_counter()
    stop = stop or threading.Event()
    pruned = threading.Event()
    epochs = []
    try:
        configure_threads(task.threads)  # per thread: Numba's thread count belongs to the calling thread
        study = optuna.load_study(study_name=task.study_name, storage=_reach(task.storage),
                                  sampler=optuna.samplers.RandomSampler(), pruner=task.pruner or NeverPrune())
        trial = optuna.trial.Trial(study, task.trial_id)

        def on_epoch(record):
            epochs.append(record)
            with warnings.catch_warnings():  # a retried run reports epochs already reported: kept as they were
                warnings.simplefilter("ignore")
                trial.report(record.val_loss, record.epoch)
            if task.pruner is not None and trial.should_prune():
                pruned.set()
                stop.set()  # ends the run after this epoch, saved and resumable like any stopped run

        result = fit(task.data, TrainConfig(**task.config), out=task.folder, on_epoch=on_epoch, stop=stop)
    except Exception as err:  # noqa: BLE001 - whatever went wrong is the run's outcome, not the sweep's
        return _outcome("failed", epochs, None, started, error=f"{type(err).__name__}: {err}")
    history = result.history
    if result.stopped == "interrupted":
        return _outcome("pruned" if pruned.is_set() else "failed", epochs, history, started,
                        error=None if pruned.is_set() else "cancelled")
    return _outcome("finished", epochs, history, started)


def _reach(storage):
    """The study's storage from a worker: a DaskStorage is named, and found on the scheduler."""
    if not isinstance(storage, str):
        return storage
    import optuna
    from optuna_integration import DaskStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return DaskStorage(name=storage, register=False)


def _outcome(kind, epochs, history, started, error=None):
    last = epochs[-1] if epochs else None
    return RunOutcome(
        kind, len(epochs),
        val_accuracy=last.val_accuracy if last else None, val_loss=last.val_loss if last else None,
        best_val_loss=history.best_val_loss if history else None,
        test_accuracy=history.test_accuracy if history and kind == "finished" else None,
        seconds=time.perf_counter() - started, error=error,
    )


class NeverPrune:
    """A pruner for runs that only report (Optuna's NopPruner, without importing it at module level)."""

    def prune(self, study, trial):
        return False
