"""`cnnfruit sweep`: search training settings over seeds, on this machine or a Dask cluster."""
import os

import click

from cnnfruit.cli.options import computing, data_options, flag, load_data
from cnnfruit.config import default_of, setting_fields
from cnnfruit.errors import CnnfruitError
from cnnfruit.interrupt import EXIT_CODE, StopOnSignal
from cnnfruit.sweep.space import SWEEP_DEFAULTS

SEARCHABLE = tuple(name for name in setting_fields() if name != "seed")
# Settings whose one value may hold commas (a layout, a weight per class): several are searched by
# repeating the flag.
REPEATED = ("hidden", "class_weights", "layers")


def sweep_setting_options(command):
    """A text option per training setting, so it can hold a value, a list or a range."""
    for name in reversed(SEARCHABLE):
        f = setting_fields()[name]
        default = default_of(f)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        if f.type is tuple:
            more = "Repeat to search layouts, one per flag (--hidden 841,29 --hidden 256)."
        elif name == "class_weights":
            more = "Repeat to search several, one per flag (--class-weights none --class-weights 1,2,1); none,auto " \
                   "searches both."
        elif name == "layers":
            more = ("Repeat, or separate specs by ';', to search several (--layers 'conv16x3, dense64' --layers "
                    "'conv16x3 same, maxpool2, dense64').")
        elif f.metadata["choices"]:
            more = f"A comma list searches several ({', '.join(f.metadata['choices'])})."
        elif f.type is int:
            more = "A comma list (4,8) or a range low:high[:log] searches it."
        else:
            more = "A comma list (1e-5,1e-4) or a range low:high[:log] searches it."
        shown = SWEEP_DEFAULTS.get(name, shown)
        default_text = f" [default: {shown}]" if shown != "" else ""
        command = click.option(flag(name), name, multiple=name in REPEATED, default=None, metavar="TEXT",
                               help=f"{f.metadata['help']} {more}{default_text}")(command)
    return command


@click.command()
@sweep_setting_options
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs of every setting, with seeds 0 to N-1; rows give their median and spread.")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Settings to try. Default: the whole grid (lists only), or 20 with ranges.")
@data_options
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="The sweep folder: study.db, sweep.json, sweep.csv, runs/. Default: a new folder under "
                   "./sweeps/. An existing sweep folder with the same search goes on where it stopped.")
@click.option("--resume", "resume_folder", type=click.Path(file_okay=False, exists=True), default=None,
              help="Go on with the sweep in this folder, with the settings it was started with.")
@click.option("--pruner", type=click.Choice(["median", "hyperband"]), default="median", show_default=True,
              help="How hopeless runs are stopped early, from their validation loss per epoch.")
@click.option("--no-prune", is_flag=True, help="Run every run to its last epoch.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes of the local Dask cluster. Default: cores / --threads. 0: run here, "
                   "one run at a time, without Dask.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Numba threads of each run.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Send the runs to this running Dask scheduler (tcp://HOST:PORT) instead of a local cluster.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or per-run lines.")
@click.pass_context
def sweep(ctx, seeds, trials, source, out, resume_folder, pruner, no_prune, workers, threads, scheduler, quiet,
          **settings):
    """Search training settings: each given as a list or a range is searched, every setting is
    trained over --seeds seeds, hopeless runs are pruned, and the table ranks the settings.

    \b
      cnnfruit sweep --lr 1e-5,1e-4,1e-3 --kernels 4,8 --seeds 2 --epochs 5
      cnnfruit sweep --lr 1e-6:1e-3:log --kernels 4:16 --trials 30
      cnnfruit sweep --hidden 841,29 --hidden 256 --scheduler tcp://10.0.0.5:8786
      cnnfruit sweep --layers "conv16x3, dense64; conv16x3 same, maxpool2, dense64" --color rgb

    Each run is a training run with its own folder (OUT/runs/trial-NNNN). The study lives in
    OUT/study.db (optuna-dashboard sqlite:///OUT/study.db shows it); Ctrl-C cancels the runs in
    flight and writes the results so far; the same command (or --resume OUT) goes on. Validation
    defaults to --val-split block: whole runs of video frames held out, which ranks settings like
    the test set on Fruits-360 (a random cut scores nearly 100% for almost every recipe).
    """
    import threading
    from dataclasses import replace

    from cnnfruit.sweep.executors import require_extra

    require_extra(cluster=workers != 0 or scheduler is not None)
    import optuna

    from cnnfruit.sweep.executors import default_workers
    from cnnfruit.sweep.study import STUDY_FILE, Sweep
    from cnnfruit.sweep.report import CSV_FILE, JSON_FILE
    from cnnfruit.cli.terminal import SweepProgressBar, print_sweep_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    given = {name: value for name, value in settings.items() if value not in (None, ())}
    if scheduler is not None:
        _check_scheduler_address(scheduler)
    if resume_folder:
        _refuse_what_resume_ignores(ctx, given)
        space, seed_list, trials, stored, pruner_name = _stored_plan(resume_folder)
        source = replace(stored, cache_dir=source.cache_dir)
        out = resume_folder
    else:
        space, seed_list, trials, pruner_name = _new_plan(given, seeds, trials, pruner, no_prune)
        out = out or _new_sweep_folder()
    if scheduler is None and workers is None:
        workers = default_workers(threads)
    if scheduler is None and workers and workers * threads > (os.cpu_count() or 1):
        click.echo(f"Note: {workers} workers x {threads} threads exceed the {os.cpu_count()} cores; runs will "
                   "compete for them", err=True)
    computing()
    plan = Sweep(space, out, seeds=seed_list, trials=trials, pruner=pruner_name, source=source, threads=threads)
    where = (f"the Dask cluster at {scheduler}" if scheduler else
             f"{workers} local worker(s) x {threads} thread(s)" if workers else "this process")
    click.echo(f"Sweep of {', '.join(f'{n} ({space.describe(n)})' for n in plan.space.names)}: {plan.trials} "
               f"setting(s) x {len(plan.seeds)} seed(s) = {plan.planned_runs} runs on {where}, into {plan.folder}")
    if os.path.isfile(os.path.join(out, STUDY_FILE)):
        click.echo(f"Going on with the sweep in {out}: the runs it has made are kept, the missing ones are made")
    stop = threading.Event()
    with StopOnSignal(lambda signum: stop.set()):
        load_data(source, quiet, plan.load_data)  # a Ctrl-C meanwhile ends the sweep before its first run
        with SweepProgressBar(quiet, plan.planned_runs) as progress:
            report = _run(plan, scheduler, workers, threads, on_run=progress.update, stop=stop)
    print_sweep_report(report)
    click.echo(f"Wrote {os.path.join(out, JSON_FILE)} and {os.path.join(out, CSV_FILE)}; the study is "
               f"{os.path.join(out, 'study.db')}")
    if report.interrupted:
        click.echo(f"Interrupted: go on with: cnnfruit sweep --resume {out}")
        ctx.exit(EXIT_CODE)
    if report.runs and not any(run["outcome"] in ("finished", "pruned") for run in report.runs):
        raise CnnfruitError(f"every run failed; the first: {report.runs[0]['error']}")


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
def _run(plan, scheduler, workers, threads, **hooks):
    """The sweep's runs on the scheduler's cluster, a local cluster of `workers`, or (workers 0) here."""
    from cnnfruit.sweep.executors import local_cluster

    if scheduler:
        from distributed import Client

        try:
            client = Client(scheduler, timeout=30)
        except (OSError, ValueError, TypeError) as err:
            raise CnnfruitError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        with client:
            return plan.run(client, **hooks)
    if workers:
        with local_cluster(workers, threads) as client:
            return plan.run(client, **hooks)
    return plan.run(**hooks)


def _new_sweep_folder():
    from cnnfruit.training.run_folder import new_run_folder

    return new_run_folder("sweeps")


def _check_scheduler_address(address):
    """A Dask scheduler address (tcp://HOST:PORT), checked before any work as Dask would parse it."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
        from distributed.comm.registry import get_backend

        get_backend(scheme)
    except (ValueError, TypeError) as err:
        raise CnnfruitError(f"--scheduler {address!r} is not a Dask scheduler address such as tcp://10.0.0.5:8786 "
                            f"({err})") from None


def _stored_plan(folder):
    """What the sweep in folder was started with: its space, seeds, trials, DataSource and pruner."""
    from cnnfruit.data.sources import DataSource
    from cnnfruit.sweep.space import SearchSpace
    from cnnfruit.sweep.study import STUDY_FILE, stored_spec

    spec = stored_spec(folder)
    try:
        space = SearchSpace.from_dict(spec["space"])
        seeds = tuple(int(seed) for seed in spec["seeds"])
        data = None if spec["data"] == "embedded" else spec["data"]
        source = DataSource(data, **spec.get("data_options", {}))
    except CnnfruitError as err:
        raise CnnfruitError(f"{os.path.join(folder, STUDY_FILE)} records a sweep this cnnfruit cannot run: {err}") \
            from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CnnfruitError(f"{os.path.join(folder, STUDY_FILE)} is not a cnnfruit sweep, or its record of what it "
                            f"searches is damaged ({type(err).__name__}: {err})") from None
    return space, seeds, spec["trials"], source, spec["pruner"]


def _refuse_what_resume_ignores(ctx, given):
    """--resume goes on with the stored sweep: a setting or flag that would change it is refused."""
    from click.core import ParameterSource

    fixed = ("out", "seeds", "trials", "data", "skip_bad", "test_fraction", "pruner", "no_prune")  # the stored sweep's
    refused = [flag(name) for name in given] + [
        flag(name) for name in fixed
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)]
    if refused:
        raise CnnfruitError(f"--resume goes on with the sweep as it was started (its settings, seeds, trials, "
                            f"data, pruner and folder): leave out {', '.join(refused)}")


def _new_plan(given, seeds, trials, pruner, no_prune):
    """(space, seeds, trials, pruner name) of a new sweep over the settings given on the command line."""
    from cnnfruit.sweep.space import SearchSpace

    space = SearchSpace.from_text(given)
    if not space.searched:
        single = ", ".join(f"{flag(name)} {_shown(value)}" for name, value in space.fixed.items())
        raise CnnfruitError("a sweep needs at least one setting to search: a comma list (--lr 1e-4,1e-3), a "
                            "range (--kernels 4:16), or --hidden or --class-weights repeated"
                            + (f"; these are one value each: {single}" if single else ""))
    if trials is None and not space.is_grid:
        trials = 20
    return space, tuple(range(seeds)), trials, None if no_prune else pruner
