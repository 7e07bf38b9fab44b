"""What the commands share: options made from the library's settings, the --data options, and
the helpers that write figures and start the computing threads."""
import functools

import click

from cnnfruit.config import parse_hidden, setting_fields, default_of
from cnnfruit.errors import CnnfruitError, SettingError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def flag(name):
    return "--" + name.replace("_", "-")


# ---- options made from the library's settings

TRAIN_SETTINGS = tuple(setting_fields())


def _parse_hidden(ctx, param, value):
    try:
        return parse_hidden(value)
    except SettingError as err:
        raise click.BadParameter(err.render(flag)) from None


def setting_options(*names, help=None, unused=()):
    """click options for these TrainConfig settings, with their defaults, choices and help.

    help: {name: text} for settings whose meaning in this command is not the setting's own (such
    as what train's --resume makes of --epochs), so that each command's -h says what the flag
    does there. unused: settings the command accepts (a train command line can be reused as it
    is) but does not use; -h does not list them.
    """
    settings = setting_fields()
    help = help or {}

    def decorate(command):
        for name in reversed(names):
            f = settings[name]
            default, choices = default_of(f), f.metadata["choices"]
            kwargs = {"default": default, "show_default": default != "", "help": help.get(name, f.metadata["help"]),
                      "hidden": name in unused}
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
    from cnnfruit.threads import configure_threads

    configure_threads()


def data_options(command):
    """--data, --skip-bad, --test-fraction, --cache-dir and --no-cache, given to the command as one
    DataSource named source."""
    @functools.wraps(command)
    def run(*args, data, skip_bad, test_fraction, cache_dir, no_cache, **kwargs):
        from cnnfruit.data.sources import DataSource

        given = {} if test_fraction is None else {"test_fraction": test_fraction}
        source = DataSource(data, skip_bad=skip_bad, cache_dir=False if no_cache else cache_dir, **given)
        return command(*args, source=source, **kwargs)

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


def load_data(source, quiet=False, load=None):
    """The Dataset of a DataSource, with a progress bar while a folder is read, and what reading did.

    load(progress): what reads it, when not source.load (a sweep reads its source itself).
    """
    from cnnfruit.cli.terminal import LoadProgress

    load = load or source.load
    if source.folder is None:
        return load()
    with LoadProgress(quiet) as progress:
        dataset = load(progress=progress)
    report_loading(dataset)
    return dataset


def report_loading(dataset):
    """What reading a folder did beyond the plain layout: its layout note, skipped files, cache trouble."""
    from cnnfruit.data.preprocess import printable

    if dataset.layout_note:
        click.echo(dataset.layout_note, err=True)
    loading = dataset.loading
    if dataset.skipped:
        click.echo(f"Skipped {dataset.skipped} unreadable image(s) in {printable(dataset.source)}", err=True)
        for _, path, message in (loading.failures if loading else [])[:10]:
            click.echo(f"  {message}", err=True)
    if loading is not None and loading.cache_problem:
        click.echo(f"Note: the decoded-image cache was not used: {loading.cache_problem}", err=True)


# ---- figures


def check_figure_path(path, *inputs):
    """Refuse, before any work is done, a figure file name whose format is unknown, or that names
    one of the command's inputs (a photo given to explain, say), or something not a file."""
    if path is None:
        return
    from cnnfruit.files import described, existing_kind, same_file
    from cnnfruit.plots import figure_format

    figure_format(path)
    for given in inputs:
        if given is not None and same_file(path, given):
            raise CnnfruitError(f"{path} is an input of this command; write the figure to another file")
    kind = existing_kind(path)
    if kind not in (None, "file"):
        raise CnnfruitError(f"cannot write {path}: {described(kind)}")


def write_figure(fig, path):
    from cnnfruit.plots import save_figure

    try:
        save_figure(fig, path)
    except OSError as err:
        raise CnnfruitError(f"cannot write {path}: {err.strerror or err}") from None
    return path


