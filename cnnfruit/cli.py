"""The `cnnfruit` command line: the command group, and the train and eval commands.

Each command parses its flags, calls the library, and formats what comes back; the work itself
is in the library, where a notebook can call it too. Training flags are made from TrainConfig's
fields (config.py), so a setting's default, choices and help are written once. The other commands
live in cli_<name>.py modules, imported only when named; heavy modules are imported inside the
commands, so `cnnfruit --help` starts at once without Numba. Only the cli modules and terminal.py
import click and rich.
"""
import functools
import json
import os
import shlex
import sys
import threading
from dataclasses import dataclass

import click

from . import __version__
from .config import TTA_MODES, TrainConfig, default_of, parse_hidden, setting_fields
from .errors import CnnfruitError, SettingError
from .interrupt import EXIT_CODE, StopOnSignal, signal_name
from .terminal import EpochProgress, describe_best, describe_run, epoch_line, print_report

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def flag(name):
    return "--" + name.replace("_", "-")


# Commands that live in modules of their own (cnnfruit/cli_<name>.py), imported only when named,
# so that each stays small and `cnnfruit --help` still imports nothing heavy.
COMMAND_MODULES = {
    "plot": "cli_plot",
    "predict": "cli_predict",
    "export": "cli_export",
    "gradcheck": "cli_gradcheck",
    "summary": "cli_summary",
    "lr-find": "cli_lr_find",
    "explain": "cli_explain",
    "sweep": "cli_sweep",
    "serve": "cli_serve",
}


class Group(click.Group):
    """Finds the commands of COMMAND_MODULES, and turns the library's errors into click's
    `Error: ...` line and exit code 1, naming flags."""

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *COMMAND_MODULES])

    def get_command(self, ctx, name):
        if name in COMMAND_MODULES:
            from importlib import import_module

            return getattr(import_module(f".{COMMAND_MODULES[name]}", __package__), name.replace("-", "_"))
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SettingError as err:
            raise click.ClickException(err.render(flag)) from None
        except CnnfruitError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="cnnfruit")
def main():
    """Train, evaluate and explain a small CNN on small image sets, on a CPU.

    With no --data, commands use the fruit photos embedded in the package (Carambula, Lychee,
    Pear; 32x32).
    """


# ---- options made from the library's settings


def _parse_hidden(ctx, param, value):
    try:
        return parse_hidden(value)
    except SettingError as err:
        raise click.BadParameter(err.render(flag)) from None


def setting_options(*names):
    """click options for these TrainConfig settings, with their defaults, choices and help."""
    settings = setting_fields()

    def decorate(command):
        for name in reversed(names):
            f = settings[name]
            default, choices = default_of(f), f.metadata["choices"]
            kwargs = {"default": default, "show_default": True, "help": f.metadata["help"]}
            if choices:
                kwargs["type"] = click.Choice(choices)
            elif f.type is tuple:
                kwargs.update(default=",".join(map(str, default)), callback=_parse_hidden)
            else:
                kwargs["type"] = f.type
            command = click.option(flag(name), name, **kwargs)(command)
        return command

    return decorate


TTA_HELP = ("Test-time augmentation: average the probabilities over the image and its mirror (flip) or "
            "over the 8 turns and mirrors of the square (rotate).")
DATA_HELP = ("Image folder: train/<class>/* and test/<class>/* (also Training/, Test/, val/...), or class "
             "folders alone. Default: the embedded fruit photos.")


def computing():
    """Threads for a command that computes (see threads.py); --help never gets here."""
    from .threads import configure_threads

    configure_threads()


@dataclass
class DataRequest:
    """What --data and its flags ask for; load() reads it and says what happened."""

    folder: str = None  # None: the embedded photos
    skip_bad: bool = False
    test_fraction: float = None  # None: data.TEST_FRACTION
    cache_dir: object = None  # None: the default cache, False: none

    def options(self):
        options = {"skip_bad": self.skip_bad, "cache_dir": self.cache_dir}
        if self.test_fraction is not None:
            options["test_fraction"] = self.test_fraction
        return options

    def load(self, quiet=False):
        from .data import load_embedded, read_image_folder
        from .terminal import LoadProgress

        if self.folder is None:
            return load_embedded()
        with LoadProgress(quiet) as progress:
            dataset = read_image_folder(self.folder, progress=progress, **self.options())
        report_loading(dataset)
        return dataset


def data_options(command):
    """--data, --skip-bad, --test-fraction, --cache-dir and --no-cache, given to the command as one
    DataRequest named data."""
    @functools.wraps(command)
    def run(*args, data, skip_bad, test_fraction, cache_dir, no_cache, **kwargs):
        request = DataRequest(data, skip_bad, test_fraction, False if no_cache else cache_dir)
        return command(*args, data=request, **kwargs)

    options = [
        click.option("--data", type=click.Path(file_okay=False), default=None, help=DATA_HELP),
        click.option("--skip-bad", is_flag=True, help="Skip unreadable images in --data instead of stopping."),
        click.option("--test-fraction", type=float, default=None,
                     help="With class folders alone: the share of each class held out as the test split "
                          "(default 0.2), cut by a seeded hash of the file names."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Where decoded images are kept between loads (default: $CNNFRUIT_CACHE_DIR, else "
                          "~/.cache/cnnfruit)."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the decoded-image cache."),
    ]
    for option in reversed(options):
        run = option(run)
    return run


def report_loading(dataset):
    """What reading a folder did beyond the plain layout: its layout note, skipped files, cache trouble."""
    from .preprocess import printable

    if dataset.layout_note:
        click.echo(dataset.layout_note, err=True)
    loading = dataset.loading
    if dataset.skipped:
        click.echo(f"Skipped {dataset.skipped} unreadable image(s) in {printable(dataset.source)}", err=True)
        for _, path, message in (loading.failures if loading else [])[:10]:
            click.echo(f"  {message}", err=True)
    if loading is not None and loading.cache_problem:
        click.echo(f"Note: the decoded-image cache was not used: {loading.cache_problem}", err=True)


# ---- train


TRAIN_SETTINGS = tuple(setting_fields())


@main.command()
@setting_options(*TRAIN_SETTINGS)
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
def train(ctx, data, out, resume, overwrite, tensorboard_dir, quiet, **settings):
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
    computing()  # first: it is where Numba is imported
    from .fitting import Run, StoppedAtOnce
    from .logs import open_log
    from .runs import new_run_folder

    log = open_log(tensorboard_dir)  # before any work: a missing tensorboardX is said at once
    try:
        if resume:
            run = Run.resume(resume, data=data.folder, epochs=given.pop("epochs", None), out=out, expect=given,
                             skip_bad=data.skip_bad or None, overwrite=overwrite)
            if run.trainer.dataset.source is not None:
                report_loading(run.trainer.dataset)
            click.echo(f"Resuming {resume} {run.resumed_at}, to {run.config.epochs} epochs")
            if run.replanned:
                click.echo(f"Note: {run.replanned}")
        else:
            dataset = data.load(quiet)
            folder = out or new_run_folder()
            try:
                run = Run.start(dataset, config, folder, overwrite=overwrite)
            except CnnfruitError:
                if not out:  # the folder made for this run stays only if the run does
                    _remove_if_empty(folder)
                raise
    except KeyboardInterrupt:  # Ctrl-C while the images load: there is nothing to save yet
        click.echo("Interrupted before training started; nothing was saved", err=True)
        ctx.exit(EXIT_CODE)
    stop = threading.Event()
    with StopOnSignal(lambda signum: stop.set()) as stopper, EpochProgress(quiet) as progress, log:
        describe_run(run, echo=progress.echo)

        def on_epoch(record):
            progress.echo(epoch_line(record, run.config))
            log(record)

        try:
            result = run.fit(on_epoch=on_epoch, stop=stop,
                             on_step=lambda done, total: progress.step(run.trainer.epoch + 1, done, total))
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
    tested = len(run.trainer.data.y_test)
    click.echo(f"Test Accuracy: {100 * result.test_accuracy:.1f}% ({round(result.test_accuracy * tested)}/{tested})")
    click.echo(f"Total Time: {result.history.total_seconds:.1f} s")
    click.echo(f"Saved {result.model_path}, {result.history_path} and {result.history_csv_path}")
    if result.history.best_epoch is not None:
        click.echo(f"Saved {result.best_path} (epoch {result.history.best_epoch}, lowest validation loss)")


def _remove_if_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:
        pass


# ---- eval, and what the commands that draw share


def check_figure_path(path):
    """Refuse a figure file name whose format is unknown, before any work is done."""
    if path is not None:
        from .plots import figure_format

        figure_format(path)


def write_figure(fig, path):
    from .plots import save_figure

    try:
        save_figure(fig, path)
    except OSError as err:
        raise CnnfruitError(f"cannot write {path}: {err.strerror or err}") from None
    return path


@main.command(name="eval")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Image folder (train/ and test/). Default: the images MODEL was trained on (its recorded "
                   "folder, or the embedded fruit photos).")
@click.option("--split", type=click.Choice(["test", "train", "val"]), default="test", show_default=True,
              help="Which images to score; train and val repeat the training run's seeded split.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the confusion matrix as a heat map into this file (.png, .jpg, .svg or .pdf).")
@click.option("--misclassified", "gallery_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the --top most confident mistakes, with their files, into this file.")
@click.option("--top", type=click.IntRange(min=1), default=16, show_default=True,
              help="How many mistakes --misclassified draws and --json lists.")
@click.option("--tta", type=click.Choice(TTA_MODES), default="none", show_default=True, help=TTA_HELP)
def evaluate(model, data, split, as_json, plot_path, gallery_path, top, tta):
    """Accuracy, per-class precision and recall, and the confusion matrix of MODEL."""
    check_figure_path(plot_path)
    check_figure_path(gallery_path)
    computing()
    from .classifier import Classifier
    from .mistakes import confident_mistakes

    clf = Classifier.load(model)
    dataset = clf.training_data(data)  # with the options it was read with then (a test share, say)
    if dataset.source is not None:
        report_loading(dataset)
    images = clf.split(split, dataset)
    evaluation = clf.evaluate(images, tta=tta)
    mistakes = confident_mistakes(evaluation, images, top)
    report = {"model": model, "split": split, "tta": tta, **evaluation.report(),
              "mistakes": [m.to_dict() for m in mistakes]}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
    if gallery_path:
        from .plots import mistakes_figure

        wrong = int((evaluation.predictions != evaluation.labels).sum())
        fig = mistakes_figure(images.images, mistakes, title=(
            f"{os.path.basename(model)} on the {split} split: the {len(mistakes)} most confident of {wrong} mistakes"
            + (f" (tta {tta})" if tta != "none" else "")))
        click.echo(f"Wrote {write_figure(fig, gallery_path)}", err=as_json)
    if plot_path:
        from .plots import confusion_figure

        fig = confusion_figure(report["confusion_matrix"], clf.class_names,
                               title=f"{os.path.basename(model)} on the {split} split")
        click.echo(f"Wrote {write_figure(fig, plot_path)}", err=as_json)


if __name__ == "__main__":
    sys.exit(main())
