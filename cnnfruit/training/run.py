"""A whole training run: the epochs, saving, the best checkpoint, early stopping, stop and resume.

    result = fit(dataset, TrainConfig(epochs=8), out="runs/a", on_epoch=print)
    result = resume("runs/a/model.npz", epochs=12)

With a folder (`out`), the run is saved before its first step and after every epoch (model.npz,
history.json), and best.npz keeps the epoch with the lowest validation loss; with out=None it
stays in memory. Setting the `stop` event (a threading.Event) ends the run after the current step,
saved mid-epoch; resuming it then ends with exactly the weights of a run that never stopped.
"""
import os
import shutil
import time
from dataclasses import dataclass

from cnnfruit import checkpoint
from cnnfruit.nn import memory
from cnnfruit.nn.architecture import Architecture
from cnnfruit.inference.classifier import Classifier
from cnnfruit.config import TrainConfig
from cnnfruit.data.datasets import check_class_names
from cnnfruit.data.sources import DataSource, check_classes, same_images
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.history import History
from cnnfruit.files import write_atomically
from cnnfruit.training.run_folder import BEST_FILE, RunFolder, describe_point
from cnnfruit.threads import one_blas_thread
from cnnfruit.training.loop import Diverged, TrainingLoop


class StoppedAtOnce(KeyboardInterrupt):
    """A second Ctrl-C: the run stopped without waiting for its step; `kept` says what is on disk."""

    def __init__(self, kept):
        super().__init__(kept)
        self.kept = kept


@dataclass
class FitResult:
    classifier: Classifier  # the weights at the end of the run
    history: History
    folder: str  # the run folder, or None for a run kept in memory
    stopped: str  # "finished", "early" (patience ran out) or "interrupted" (the stop event)
    saved_at: str  # the point of training that the folder's model.npz holds, in words
    _best: Classifier = None

    @property
    def test_accuracy(self):
        return self.history.test_accuracy

    @property
    def interrupted(self):
        return self.stopped == "interrupted"

    @property
    def model_path(self):
        return os.path.join(self.folder, "model.npz") if self.folder else None

    @property
    def history_path(self):
        return os.path.join(self.folder, "history.json") if self.folder else None

    @property
    def history_csv_path(self):
        return os.path.join(self.folder, "history.csv") if self.folder else None

    @property
    def best_path(self):
        return os.path.join(self.folder, "best.npz") if self.folder else None

    @property
    def best(self):
        """The classifier of the epoch with the lowest validation loss (None without validation)."""
        if self._best is None and self.folder and self.history.best_epoch is not None:
            self._best = Classifier.load(self.best_path)
        return self._best


class Run:
    """A TrainingLoop, the folder it saves to (or None), and the loop policy around its epochs."""

    def __init__(self, loop, run_folder=None, resumed_at=None, replanned=None):
        self.loop = loop
        self.run_folder = run_folder
        self.resumed_at = resumed_at  # where a resumed run picks up, in words; None for a new run
        self.replanned = replanned  # how a resume to a new total moved the learning-rate curve, in words
        self._best_params = None

    @classmethod
    def start(cls, data, config, out=None, overwrite=False):
        """A new run of `config` on the Dataset `data`, saving to the folder `out` (None: in memory).

        A folder that already holds a run is refused unless overwrite, which deletes its run files
        first; a folder another run is writing is refused always.
        """
        if isinstance(config, dict):
            config = TrainConfig(**config)
        config.check()
        check_class_names(list(data.class_names))  # what its checkpoints could not hold
        arch = Architecture.from_config(config, len(data.class_names))
        memory.check_training(arch, config, len(data.train) + len(data.test))
        run_folder = RunFolder.create(out, overwrite=overwrite) if out is not None else None
        try:
            loop = TrainingLoop.start(data, config)
        except BaseException:
            if run_folder is not None:
                run_folder.unlock()
            raise
        return cls(loop, run_folder)

    @classmethod
    def resume(cls, path, *, data=None, source=None, epochs=None, out=None, expect=None, skip_bad=None,
               overwrite=False):
        """The run saved in the checkpoint at path, set to continue to `epochs` in all.

        The images are those the checkpoint records, read the same way, unless `data` (a Dataset)
        or `source` (a DataSource, or a folder to read the recorded way) gives them; either way
        they must be the very images the run had. skip_bad: override the recorded choice. expect:
        settings the caller asks for (name: value); one that differs from the checkpoint's is an
        error, since a resumed run keeps its own. out: the folder to save to (default: path's); another
        folder that holds a run is refused unless overwrite.
        """
        ckpt = checkpoint.load(path)
        if not ckpt.config or not ckpt.rng_state or "epochs" not in ckpt.history:
            raise CnnfruitError(f"{path} holds a model but not the training state needed to resume")
        try:
            config = TrainConfig.from_dict(ckpt.config)
        except CnnfruitError as err:
            raise CnnfruitError(f"{path}: cannot resume: {err}") from None
        _check_expected(path, config, expect or {})
        planned_epochs = config.epochs
        if epochs is not None:
            if epochs <= ckpt.epoch:
                raise SettingError("{epochs} {value}: {path} has already completed {done} epochs; give a larger total",
                                   value=epochs, path=path, done=ckpt.epoch)
            config.epochs = epochs
        elif config.epochs <= ckpt.epoch:
            raise SettingError("{path} has already completed its {done} epochs; pass {epochs} N with N > {done} "
                               "to train on", path=path, done=ckpt.epoch)
        dataset = _training_data(path, ckpt, *_data_and_source(data, source), skip_bad)
        memory.check_training(ckpt.arch, config, len(dataset.train) + len(dataset.test))
        source = os.path.dirname(path) or "."
        folder = out or source
        in_place = os.path.isdir(folder) and os.path.samefile(folder, source)
        run_folder = RunFolder.create(folder, overwrite=overwrite, resuming=in_place)
        try:
            loop = TrainingLoop.resume(dataset, config, ckpt)
            if not in_place:
                _bring_best(source, run_folder, ckpt)
        except BaseException as err:
            run_folder.unlock()
            if isinstance(err, CnnfruitError) and not isinstance(err, SettingError):
                raise CnnfruitError(f"{path}: cannot resume: {err}") from None
            raise
        if ckpt.interrupted:
            where = f"in epoch {ckpt.epoch + 1} after step {ckpt.partial['step']} of {loop.steps_per_epoch}"
        else:
            where = f"after epoch {ckpt.epoch}"
        return cls(loop, run_folder, resumed_at=where, replanned=_replanned(loop, ckpt, planned_epochs))

    @property
    def config(self):
        return self.loop.config

    def fit(self, on_epoch=None, on_step=None, stop=None):
        """Train to config.epochs (or an early stop, or the stop event); returns a FitResult.

        on_epoch(record) is called with each finished epoch's EpochRecord; on_step(done, total)
        after each step. Raises Diverged when the loss or a weight stops being finite.
        """
        loop = self.loop
        if stop is not None:
            loop.stop = stop
        if self.run_folder is not None:
            self.run_folder.lock()  # held since start or resume; again if fit runs a second time
        try:
            with one_blas_thread():
                stopped = self._epochs(on_epoch, on_step)
            self._flush()
        except Diverged as err:
            self._flush()
            saved = f". The last good checkpoint, {self.run_folder.saved_at}, is {self.run_folder.model_path}" if self.run_folder else ""
            raise Diverged(err.epoch, err.step, err.what, err.lr, saved) from None
        except KeyboardInterrupt:
            if self.run_folder:
                self.run_folder.abandon()
            if self.run_folder and self.run_folder.saved_at:
                raise StoppedAtOnce(f"the last checkpoint, {self.run_folder.saved_at}, is {self.run_folder.model_path}") from None
            raise StoppedAtOnce("nothing was saved") from None
        finally:
            self.close()
        network = loop.network
        final = Classifier(network.arch, network.params, loop.dataset.class_names, loop.config.color,
                           loop.config.normalize, loop.config.to_dict(), loop.history,
                           loop.checkpoint().trained_on)
        best = None
        if self._best_params is not None:
            best = Classifier(network.arch, self._best_params, final.class_names, final.color, final.normalize,
                              final.config, loop.history, final.trained_on)
        return FitResult(final, loop.history, self.run_folder.folder if self.run_folder else None, stopped,
                         self.run_folder.saved_at if self.run_folder else describe_point(loop), best)

    def close(self):
        """Let the writes under way end, then release the run folder's lock (fit does at its end);
        the Run may fit again later."""
        if self.run_folder is not None:
            self.run_folder.settle()
            self.run_folder.unlock()

    def _epochs(self, on_epoch, on_step):
        loop, config = self.loop, self.loop.config
        self._save()  # before any step: proves the folder is writable, gives a point to resume from
        started = time.perf_counter()
        stopped = "finished"
        # A stop requested before the first step still lets one step run: the saved state is then
        # mid-epoch like any other, and "stop after the current step" has one meaning.
        while loop.epoch < config.epochs:
            record = loop.run_epoch(on_step)
            if record is not None:
                if on_epoch is not None:
                    on_epoch(record)
                if loop.improved:
                    self._save_best()
            self._save()
            if loop.stop.is_set():
                break
            if loop.should_stop():
                stopped = "early"
                break
        if loop.stop.is_set() and loop.epoch < config.epochs:
            return "interrupted"
        loop.finish(time.perf_counter() - started)
        self._save()
        return stopped

    def _save(self):
        if self.run_folder is not None:
            self.run_folder.save(self.loop)

    def _flush(self):
        if self.run_folder is not None:
            self.run_folder.flush()

    def _save_best(self):
        if self.run_folder is not None:
            self.run_folder.save_best(self.loop)
        else:
            self._best_params = {name: value.copy() for name, value in self.loop.network.params.items()}


def fit(data, config, out=None, *, overwrite=False, on_epoch=None, on_step=None, stop=None):
    """Train a new network of `config` (a TrainConfig) on `data` (a Dataset); see Run.start and Run.fit."""
    return Run.start(data, config, out, overwrite).fit(on_epoch=on_epoch, on_step=on_step, stop=stop)


def resume(path, *, epochs=None, data=None, source=None, out=None, overwrite=False, on_epoch=None, on_step=None,
           stop=None):
    """Continue the run saved at path (model.npz) to `epochs` in all; see Run.resume and Run.fit."""
    return Run.resume(path, data=data, source=source, epochs=epochs, out=out, overwrite=overwrite).fit(
        on_epoch=on_epoch, on_step=on_step, stop=stop)


def _bring_best(source, run_folder, ckpt):
    """A run resumed into another folder takes its best.npz along: its history names that epoch."""
    best = os.path.join(source, BEST_FILE)
    if ckpt.history.get("best_epoch") is not None and os.path.isfile(best):
        try:
            write_atomically(run_folder.best_path, lambda temporary: shutil.copyfile(best, temporary))
        except OSError as err:
            raise CnnfruitError(f"cannot copy {best} to {run_folder.folder}: {err.strerror or err}") from None


def _replanned(loop, ckpt, planned_epochs):
    """For cosine and onecycle resumed to another total: their next rate, on the old and new plan."""
    config = loop.config
    if config.epochs == planned_epochs or config.lr_schedule not in ("cosine", "onecycle"):
        return None
    from dataclasses import replace

    from cnnfruit.nn.schedules import make_schedule

    step = ckpt.epoch * loop.steps_per_epoch + (ckpt.partial["step"] if ckpt.partial else 0)
    before = make_schedule(replace(config, epochs=planned_epochs), loop.steps_per_epoch).lr(step)
    return (f"the {config.lr_schedule} schedule is planned anew for {config.epochs} epochs: the next step's learning "
            f"rate is {loop.schedule.lr(step):.3g} (on the {planned_epochs}-epoch plan: {before:.3g})")


def _check_expected(path, config, expect):
    for name, value in expect.items():
        if name == "epochs":
            continue
        saved = getattr(config, name)
        if getattr(TrainConfig(**{**config.to_dict(), name: value}), name) != saved:
            raise SettingError(
                "{%s} {given} conflicts with {path}, trained with {%s} {saved}; a resumed run keeps its "
                "checkpoint's settings, so leave out {%s} (or start a new run)" % (name, name, name),
                given=_shown(value), path=path, saved=_shown(saved),
            )


def _shown(value):
    return ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)


def _training_data(path, ckpt, data, source, skip_bad):
    """The Dataset a resumed run trains on, checked against the one the checkpoint recorded."""
    if data is None:
        if not isinstance(source, DataSource):
            source = DataSource.recorded(ckpt.trained_on, path, folder=source, skip_bad=skip_bad)
        data = source.load()
    check_classes(data, ckpt.class_names, path)
    if not same_images(data, ckpt.trained_on):
        raise CnnfruitError(
            f"the images in {data.source or 'the embedded set'} differ from those {path} was trained on; "
            "resuming needs the same data"
        )
    return data


def _data_and_source(data, source):
    """(data, source) with a folder given as `data` taken as the source it names: data is a Dataset."""
    if isinstance(data, (str, os.PathLike)):
        return None, data
    return data, source
