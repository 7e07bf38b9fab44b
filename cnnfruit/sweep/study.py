"""Hyperparameter sweeps: Optuna chooses the settings and prunes, Dask (or this process) runs them.

    space = SearchSpace.from_values(lr=[1e-5, 1e-4], kernels=[4, 8])
    sweep = Sweep(space, "sweeps/a", seeds=(0, 1, 2))
    with local_cluster(workers=2) as client:
        report = sweep.run(client)      # or sweep.run() to train here, one run at a time

Every run is a plain `fit` with its own folder (DIR/runs/trial-NNNN: model.npz, history.json,
best.npz). Optuna's study is the record of the sweep: it lives in DIR/study.db (SQLite), so a
sweep can stop and go on, and optuna-dashboard can open it. The client asks Optuna for a setting
(a grid sampler when every searched setting is a list, TPE otherwise), repeats it over the seeds,
sends each run to a worker, and tells Optuna how it ended; workers only report each epoch's
validation loss and ask the pruner whether to go on. Keeping ask and tell in one process means a
run whose worker died, or that the sweep cancelled, is never left behind silently: it is retried
by Dask, recorded as failed, or run again when the sweep resumes.

On a cluster the study's storage is Optuna's DaskStorage, which keeps the SQLite file open in the
scheduler's process; workers write the run folders. So DIR must be the same folder for the
client, the scheduler and every worker (one machine, or a shared file system), which `run`
checks before it starts.
"""
import json
import math
import os
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass

from cnnfruit.config import TrainConfig
from cnnfruit.data.sources import DataSource
from cnnfruit.errors import CnnfruitError
from cnnfruit.sweep.executors import InProcess, OnDask, check_shared_folder, require_extra
from cnnfruit.sweep.space import SWEEP_DEFAULTS, SearchSpace, from_param, to_param
from cnnfruit.sweep.report import SweepReport, run_record
from cnnfruit.sweep.worker import RunOutcome, RunTask

STUDY_NAME = "cnnfruit-sweep"
STUDY_FILE = "study.db"
RUNS_FOLDER = "runs"
SPEC_KEY = "cnnfruit_sweep"  # the study's user attribute that records what the sweep searches
PRUNERS = ("median", "hyperband")
POLL_SECONDS = 0.2



@dataclass
class SweepProgress:
    planned: int  # runs the sweep will make in all
    finished: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0


class Sweep:
    """A search over `space` in the folder `folder`, each setting repeated over `seeds`.

    trials: how many settings to try (default: the whole grid; required for a space with ranges).
    pruner: "median", "hyperband", None (no pruning) or an Optuna pruner. The runs train on `data`
    (a Dataset), or on what `source` reads (a DataSource, or a folder of images); with neither, on
    the embedded photos. threads: Numba threads per run.
    """

    def __init__(self, space, folder, *, seeds=(0,), trials=None, pruner="median", data=None, source=None,
                 threads=1):
        if not isinstance(space, SearchSpace):
            raise CnnfruitError("space must be a SearchSpace")
        if not space.searched:
            raise CnnfruitError("a sweep needs at least one setting to search: give a list or a range")
        seeds = tuple(int(s) for s in seeds)
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise CnnfruitError(f"seeds must be distinct whole numbers from 0, got {list(seeds)}")
        if trials is None and not space.is_grid:
            raise CnnfruitError("a search over ranges needs a number of trials (settings to try)")
        if trials is not None and trials < 1:
            raise CnnfruitError(f"trials must be at least 1, got {trials}")
        space = space.with_defaults(SWEEP_DEFAULTS)
        config = space.config({name: to_param(_first(kind)) for name, kind in space.searched.items()}, seeds[0])
        if config.val_fraction == 0:
            raise CnnfruitError("a sweep chooses by validation: give a val_fraction above 0")
        if isinstance(pruner, str) and pruner not in PRUNERS:
            raise CnnfruitError(f"pruner must be one of {', '.join(PRUNERS)} or None, got {pruner!r}")
        self.space = space.with_defaults(SWEEP_DEFAULTS)
        self.folder = os.path.abspath(folder)
        self.seeds = seeds
        self.trials = min(trials, space.grid_size) if trials and space.is_grid else trials or space.grid_size
        self.pruner = pruner
        if isinstance(data, (str, os.PathLike)):  # a folder given as data names the source
            data, source = None, data
        if isinstance(source, (str, os.PathLike)):
            source = DataSource(source)
        self.data = data
        self.source = source if data is None else None
        if self.data is None and self.source is None:
            self.source = DataSource()
        self.threads = threads
        self.started = None

    @property
    def planned_runs(self):
        return self.trials * len(self.seeds)

    def spec(self):
        """What the study records: resuming with anything else is another sweep."""
        pruner = self.pruner if self.pruner is None or isinstance(self.pruner, str) else type(self.pruner).__name__
        spec = {"space": self.space.to_dict(), "seeds": list(self.seeds), "trials": self.trials, "pruner": pruner,
                "data": self.source.name if self.source is not None else self.data.source or self.data.name}
        shaping = (self.source or DataSource.of(self.data)).options()
        if shaping != DataSource().options():
            spec["data_options"] = shaping
        return json.loads(json.dumps(spec))

    def run(self, client=None, *, on_run=None, stop=None):
        """Run the sweep to the end, or until `stop` (a threading.Event) is set or Ctrl-C.

        client: a dask.distributed Client (its cluster runs the runs), or None to run them here.
        on_run(progress, record) is called as each run ends, with the SweepProgress counts and the
        run's record (its entry in the report's runs). Returns the SweepReport, also written to
        sweep.json and sweep.csv after every run; its `interrupted` says whether it stopped early.
        """
        require_extra(cluster=client is not None)
        import optuna

        os.makedirs(os.path.join(self.folder, RUNS_FOLDER), exist_ok=True)
        dataset = self.load_data()
        storage_url = "sqlite:///" + os.path.join(self.folder, STUDY_FILE)
        if client is not None:
            from optuna_integration import DaskStorage

            check_shared_folder(client, self.folder)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = DaskStorage(storage_url, client=client)
            runner = OnDask(client)
        else:
            storage = optuna.storages.RDBStorage(storage_url)
            runner = InProcess()
        study = self._open_study(optuna, storage)
        self.started = time.perf_counter()
        progress = SweepProgress(self.planned_runs)
        queue = deque(self._recover(study, progress))
        settings = len({_setting_key(self.space, t.params) for t in study.get_trials(deepcopy=False)
                        if self._is_run(t)})
        pending = {}  # future -> (trial, seed)
        interrupted = False
        try:
            while True:
                if stop is not None and stop.is_set():  # also when Ctrl-C came while the cluster started
                    raise KeyboardInterrupt
                while runner.free_slots(len(pending)) > 0 and (queue or settings < self.trials):
                    if queue:
                        params, seed = queue.popleft()
                        trial = self._ask(study, params, seed)
                    else:  # a new setting: the sampler picks it for the first seed, the others repeat it
                        seed = self.seeds[0]
                        trial = self._ask(study, None, seed)
                        queue.extend((trial.params, s) for s in self.seeds[1:])
                        settings += 1
                    pending[runner.submit(self._task(study, storage, trial, seed, dataset))] = (trial, seed)
                    progress.running = len(pending)
                if not pending:
                    break
                for future in [f for f in pending if f.done()]:
                    trial, seed = pending.pop(future)
                    record = self._tell(study, trial, runner.outcome(future), progress)
                    progress.running = len(pending)
                    self.report(study, interrupted=False).save(self.folder)
                    if on_run is not None:
                        on_run(progress, record)
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            interrupted = True
            runner.cancel(pending)
            for trial, _ in pending.values():
                self._tell(study, trial, RunOutcome("failed", error="cancelled"), progress)
            progress.running = 0
        report = self.report(study, interrupted=interrupted)
        report.save(self.folder)
        return report

    # ---- the study

    def _open_study(self, optuna, storage):
        if self.space.is_grid:
            sampler = _GridSampler({name: [to_param(v) for v in self.space.searched[name].values]
                                    for name in self.space.names}, seed=0)
        else:
            sampler = optuna.samplers.TPESampler(seed=0)
        pruner = self._optuna_pruner(optuna)
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner,
                                    direction="minimize", load_if_exists=True)
        recorded = study.user_attrs.get(SPEC_KEY)
        if recorded is None:
            study.set_user_attr(SPEC_KEY, self.spec())
        elif recorded != self.spec():
            raise CnnfruitError(f"{self.folder} holds another sweep ({_difference(recorded, self.spec())}); resume it "
                                "with its own settings, or give another folder")
        self._distributions = _distributions(optuna, self.space)
        self._pruner = pruner
        return study

    def _optuna_pruner(self, optuna):
        """The Optuna pruner a name stands for, with its patience set from the sweep's epochs.

        Each seed has its own validation images (the split is seeded) and its own start, so a run
        is compared only with the runs of its seed: across seeds, one setting's validation loss at
        epoch 4 differed 3x in a real sweep, and the seed with the harder validation cut lost almost
        every run to the pruner. Early epochs say little, and a median of only the runs that
        finished is a high bar (pruned ones never count): the median pruner waits for two
        settings to finish on the seed, and for half the epochs.
        """
        if self.pruner is None:
            return None
        epochs = self._fewest_epochs()
        if self.pruner == "median":
            # Two whole settings: n_startup_trials counts the finished runs of the run's own seed.
            pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(2, epochs // 2))
        elif self.pruner == "hyperband":
            pruner = optuna.pruners.HyperbandPruner(min_resource=max(1, epochs // 4), max_resource=max(epochs, 2),
                                                    reduction_factor=3)
        else:
            pruner = self.pruner
        return _same_seed(pruner)

    def _fewest_epochs(self):
        kind = self.space.searched.get("epochs")
        if kind is None:
            return self.space.config({n: to_param(_first(k)) for n, k in self.space.searched.items()}, 0).epochs
        return int(min(kind.values)) if hasattr(kind, "values") else int(kind.low)

    def _recover(self, study, progress):
        """(params, seed) of runs to make again: those a stopped or crashed sweep left unfinished.

        Trials still marked running (a sweep killed outright) are recorded as cancelled first.
        """
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            study._storage.set_trial_user_attr(trial._trial_id, "outcome", "failed")
            study._storage.set_trial_user_attr(trial._trial_id, "error", "cancelled")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        latest = {}
        for trial in study.get_trials(deepcopy=False):
            if self._is_run(trial):
                latest.setdefault(_setting_key(self.space, trial.params), {})[trial.user_attrs["seed"]] = trial
        again = []
        for runs in latest.values():
            params = next(iter(runs.values())).params
            for seed in self.seeds:
                trial = runs.get(seed)
                if trial is None or trial.user_attrs.get("error") == "cancelled":
                    again.append((params, seed))
                else:
                    _count(progress, trial.user_attrs.get("outcome", "failed"))
        return again

    def _ask(self, study, params, seed):
        if params is not None:
            study.enqueue_trial(params, user_attrs={"seed": seed})
        trial = study.ask(self._distributions)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("folder", os.path.join(RUNS_FOLDER, f"trial-{trial.number:04d}"))
        return trial

    def _task(self, study, storage, trial, seed, dataset):
        config = self.space.config(trial.params, seed).to_dict()
        # Optuna's Trial is rebuilt on the worker from the trial's id; `_trial_id` is how Optuna's
        # own integrations name a trial across processes.
        reach = storage.name if type(storage).__name__ == "DaskStorage" else storage
        return RunTask(config, os.path.join(self.folder, trial.user_attrs["folder"]), dataset, study.study_name,
                       reach, trial._trial_id, self._pruner, self.threads)

    def _tell(self, study, trial, outcome, progress):
        from optuna.trial import TrialState

        attrs = {k: v for k, v in asdict(outcome).items() if v is not None}
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if outcome.outcome == "finished" and outcome.val_loss is not None and math.isfinite(outcome.val_loss):
            study.tell(trial, outcome.val_loss)
        elif outcome.outcome == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            if outcome.outcome == "finished":
                trial.set_user_attr("error", "the validation loss is not a finite number")
            study.tell(trial, state=TrialState.FAIL)
        _count(progress, outcome.outcome if outcome.error != "cancelled" else "cancelled")
        return run_record(trial.number, self._params_of(trial), trial.user_attrs,
                          self.space.config(trial.params, trial.user_attrs["seed"]))

    def _is_run(self, trial):
        """A trial that was asked for a run (not one left enqueued by a sweep killed in between)."""
        return "seed" in trial.user_attrs and set(self.space.names) <= set(trial.params)

    def _params_of(self, trial):
        return {name: from_param(name, trial.params[name]) for name in self.space.names}

    def report(self, study, interrupted=False):
        """The SweepReport of the study as it stands."""
        records = []
        for trial in study.get_trials(deepcopy=False):
            if not self._is_run(trial):
                continue
            attrs = dict(trial.user_attrs)
            if trial.state.name == "RUNNING":
                attrs.setdefault("outcome", "running")
            records.append(run_record(trial.number, self._params_of(trial), attrs,
                                      self.space.config(trial.params, attrs["seed"])))
        seconds = time.perf_counter() - self.started if self.started else None
        return SweepReport.build(self.space, self.seeds, records, seconds=seconds, interrupted=interrupted)

    def load_data(self, progress=None):
        """The Dataset the runs train on: `data`, or what `source` reads, read once (run calls this;
        call it first to watch the reading with progress(done, total))."""
        if self.data is None:
            self.data = self.source.load(progress)
        return self.data


def _count(progress, outcome):
    if outcome == "finished":
        progress.finished += 1
    elif outcome == "pruned":
        progress.pruned += 1
    elif outcome == "failed":
        progress.failed += 1


def _same_seed(pruner):
    """The pruner, judging each run only against the runs of the same seed.

    Optuna's pruners read the study's trials through study.get_trials; they are given a view of
    the study that lists only the trials of the run's seed. (Hyperband's brackets read the storage
    themselves, so within a bracket it still compares runs of all seeds.)
    """
    import optuna

    class SeedView(optuna.study.Study):
        def __init__(self, study, seed):
            super().__init__(study_name=study.study_name, storage=study._storage, sampler=study.sampler,
                             pruner=pruner)
            self._seed = seed

        def get_trials(self, deepcopy=True, states=None):
            return [t for t in super().get_trials(deepcopy=deepcopy, states=states)
                    if t.user_attrs.get("seed") == self._seed]

    class SameSeed(optuna.pruners.BasePruner):
        def __init__(self):
            self.inner = pruner

        def prune(self, study, trial):
            return self.inner.prune(SeedView(study, trial.user_attrs.get("seed")), trial)

    return SameSeed()


def _first(kind):
    return kind.values[0] if hasattr(kind, "values") else kind.low


def _setting_key(space, params):
    return tuple(to_param(params.get(name)) for name in space.names)


def _difference(recorded, wanted):
    changed = [key for key in wanted if recorded.get(key) != wanted[key]]
    return "it differs in " + ", ".join(changed)


def _distributions(optuna, space):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from cnnfruit.sweep.space import Choice

    kinds = {}
    types = {name: type(getattr(TrainConfig(), name)) for name in space.names}
    for name in space.names:
        kind = space.searched[name]
        if isinstance(kind, Choice):
            kinds[name] = CategoricalDistribution([to_param(v) for v in kind.values])
        elif types[name] is int:
            kinds[name] = IntDistribution(int(kind.low), int(kind.high), log=kind.log)
        else:
            kinds[name] = FloatDistribution(float(kind.low), float(kind.high), log=kind.log)
    return kinds


def _GridSampler(search_space, seed):
    """Optuna's GridSampler without its stop at the grid's end (see below); made on first use, so
    that importing this module does not import Optuna."""
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, without its stop at the grid's end.

        GridSampler.after_trial calls Study.stop, which raises outside Study.optimize, so the
        ask-and-tell interface fails on the grid's last point (optuna issues 4121 and 5141); and it
        reads the grid position of every trial, which repeats over seeds (enqueued) do not have.
        The sweep counts the grid's points itself.
        """

        def after_trial(self, study, trial, state, values):
            pass

    return GridSampler(search_space, seed=seed)
