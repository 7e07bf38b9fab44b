"""`cnnfruit train`: train the network into a run folder, with progress, Ctrl-C that saves, and resume."""
import os
import shlex
import signal
import threading

import click

from cnnfruit.interrupt import EXIT_CODE, InterruptOnSignal, StopOnSignal, signal_name
from cnnfruit.cli.options import TRAIN_SETTINGS, computing, data_options, load_data, report_loading, setting_options
from cnnfruit.cli.terminal import describe_best, describe_run, epoch_line
from cnnfruit.config import TrainConfig
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.progress import EpochProgress


@click.command()
@setting_options(*TRAIN_SETTINGS, help={"epochs": "Passes over the training set (with --resume: the new total)."})
@data_options
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for model.npz and history.json. Default: a new folder under ./runs/ "
                   "(with --resume: the checkpoint's folder).")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the run saved in this model.npz with its own settings and data.")
@click.option("--overwrite", is_flag=True,
              help="Replace the run that --out holds: its model.npz, history.json, history.csv and best.npz are deleted first.")
@click.option("--tensorboard", "tensorboard_dir", type=click.Path(file_okay=False), default=None,
              help="Also write TensorBoard logs (loss and accuracy per epoch) into this folder; needs "
                   "pip install 'cnnfruit[tensorboard]'.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx, source, out, resume, overwrite, tensorboard_dir, quiet, **settings):
    """Train the network and save model.npz, history.json and best.npz (the lowest validation loss).

    model.npz is saved after every epoch. Ctrl-C (or SIGTERM) stops after the current step, saves
    the run mid-epoch and prints the command that resumes it; the resumed run ends with the same
    weights, bit for bit, as one that was never stopped. A folder that holds a run is refused
    unless --overwrite, and a folder that another process is training into is refused always.
    """
    from click.core import ParameterSource

    given = {name: value for name, value in settings.items()
             if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
    config = None if resume else TrainConfig(**settings)  # checked before anything is loaded or created
    if config is not None:
        from cnnfruit.nn.architecture import check_fits

        check_fits(config)  # a layer spec that cannot work on the images, before they are read
    computing()  # first: it is where Numba is imported
    from cnnfruit.training.run import StoppedAtOnce
    from cnnfruit.training.logs import open_log

    log = open_log(tensorboard_dir)  # before any work: a missing tensorboardX is said at once
    loading = InterruptOnSignal()
    try:
        with loading:
            run = _load_run(source, out, resume, overwrite, given, config, quiet)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the images load: there is nothing to save yet
        click.echo(f"Interrupted by {signal_name(loading.received or signal.SIGINT)} before training started; "
                   "nothing was saved", err=True)
        ctx.exit(EXIT_CODE)
    stop = threading.Event()
    with StopOnSignal(lambda signum: stop.set()) as stopper, EpochProgress(quiet, write=click.echo) as progress, log:
        describe_run(run, echo=progress.echo)

        def on_epoch(record):
            progress.echo(epoch_line(record, run.config))
            log(record)

        try:
            result = run.fit(on_epoch=on_epoch, stop=stop, verbose=0,  # the bar above is this command's own
                             on_step=lambda done, total: progress.step(run.loop.epoch + 1, done, total))
        except StoppedAtOnce as err:  # a second Ctrl-C: no waiting for the step to end
            click.echo(f"Stopped at once without saving; {err.kept}", err=True)
            ctx.exit(EXIT_CODE)
        log.finish(result.history)
    if result.interrupted:
        click.echo(f"Interrupted by {signal_name(stopper.received)}: saved {result.saved_at} to {result.model_path}")
        click.echo(f"Resume with: cnnfruit train --resume {shlex.quote(result.model_path)}")
        ctx.exit(EXIT_CODE)
    if result.stopped == "early":
        click.echo(f"Early stop: validation loss has not improved for {run.config.patience} epochs "
                   f"({describe_best(result.history)})")
    tested = len(run.loop.splits.y_test)
    click.echo(f"Test Accuracy: {100 * result.test_accuracy:.1f}% ({round(result.test_accuracy * tested)}/{tested})")
    click.echo(f"Total Time: {result.history.total_seconds:.1f} s")
    click.echo(f"Saved {result.model_path}, {result.history_path} and {result.history_csv_path}")
    if result.history.best_epoch is not None:
        click.echo(f"Saved {result.best_path} (epoch {result.history.best_epoch}, lowest validation loss)")


def _load_run(source, out, resume, overwrite, given, config, quiet):
    """The Run to train: resumed from its checkpoint, or started on the data (which this loads)."""
    from cnnfruit.training.run import Run
    from cnnfruit.training.run_folder import new_run_folder

    if resume:
        if source.test_fraction is not None:
            raise SettingError("{test_fraction} cannot change the test split of a run that --resume continues; "
                               "leave it out")
        run = Run.resume(resume, source=source.folder, epochs=given.pop("epochs", None), out=out, expect=given,
                         skip_bad=source.skip_bad or None, overwrite=overwrite)
        if run.loop.dataset.source is not None:
            report_loading(run.loop.dataset)
        click.echo(f"Resuming {resume} {run.resumed_at}, to {run.config.epochs} epochs")
        if run.replanned:
            click.echo(f"Note: {run.replanned}")
    else:
        dataset = load_data(source, quiet)
        folder = out or new_run_folder()
        try:
            run = Run.start(dataset, config, folder, overwrite=overwrite)
        except CnnfruitError:
            if not out:  # the folder made for this run stays only if the run does
                _remove_if_empty(folder)
            raise
    return run


def _remove_if_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:
        pass


