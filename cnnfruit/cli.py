"""The `cnnfruit` command line: train, eval, plot, predict, gradcheck.

The only module that imports click and rich. Heavy modules (numba kernels, matplotlib) are
imported inside the commands that need them, so `cnnfruit --help` starts at once.
"""
import json
import os
import shlex
import sys
import time

# OpenBLAS splits some float32 products (few rows, a long reduction) differently with one thread
# or several, so batch >= 8 runs (dense layers in BLAS) would give weights that depend on the core
# count. One BLAS thread keeps them identical on every machine, and on 2 cores it was faster too,
# since the Numba kernels already use every core: an epoch at batch 32 took 6.1 s against 12.2 s.
# Set before numpy is first imported; a user's own setting is respected.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import click  # noqa: E402

from . import __version__  # noqa: E402
from .errors import CnnfruitError  # noqa: E402
from .interrupt import EXIT_CODE, StopOnSignal, signal_name  # noqa: E402

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Group(click.Group):
    """Turns the library's CnnfruitError into click's `Error: ...` line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CnnfruitError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="cnnfruit")
def main():
    """Train, evaluate and explain a small CNN on small image sets, on a CPU.

    With no --data, commands use the fruit photos embedded in the package (Carambula, Lychee,
    Pear; 32x32).
    """


def parse_hidden(ctx, param, value):
    try:
        sizes = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of layer sizes, e.g. 841,29") from None
    if any(size < 1 for size in sizes):
        raise click.BadParameter(f"layer sizes must be positive, got {value!r}")
    return sizes


def load_dataset(data, skip_bad=False):
    from .data import load_embedded, read_image_folder

    if data is None:
        return load_embedded()
    dataset, skipped = read_image_folder(data, skip_bad=skip_bad)
    if skipped:
        click.echo(f"Skipped {skipped} unreadable image(s) in {data}", err=True)
    return dataset


def default_run_folder():
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = os.path.join("runs", stamp)
    suffix = 1
    while os.path.exists(folder):
        suffix += 1
        folder = os.path.join("runs", f"{stamp}-{suffix}")
    return folder


def make_output_folder(out):
    folder = out or default_run_folder()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise CnnfruitError(f"cannot create output folder {folder}: {err.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise CnnfruitError(f"output folder {folder} is not writable")
    return folder


def format_epoch(record):
    def loss(value):
        return "n/a" if value is None else f"{value:.4f}"

    def percent(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    return (
        f"Epoch: {record['epoch']} | Training Loss: {loss(record['train_loss'])} | "
        f"Validation Loss: {loss(record['val_loss'])} | Training Accuracy: "
        f"{percent(record['train_accuracy'])} | Validation Accuracy: {percent(record['val_accuracy'])} | "
        f"{record['seconds']:.1f} s"
    )


class EpochProgress:
    """A rich progress bar over one epoch's steps, drawn on stderr; a no-op when quiet."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.progress = None

    def __enter__(self):
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def epoch(self, number, steps):
        """Returns the per-step callback for this epoch (None when quiet)."""
        if self.progress is None:
            return None
        for task in self.progress.task_ids:
            self.progress.remove_task(task)
        task = self.progress.add_task("train", total=steps, epoch=number)
        every = max(1, steps // 200)  # redraw often enough to move, rarely enough to cost nothing

        def on_step(step, total):
            if step % every == 0 or step == total:
                self.progress.update(task, completed=step)

        return on_step


def describe_best(history):
    if "best_epoch" not in history:
        return "it was never a finite number"
    return f"best {history['best_val_loss']:.4f} at epoch {history['best_epoch']}"


def beyond_the_report_options(command):
    """Training flags past the report's plain SGD: optimizers, loss reduction, early stopping, augmentation."""
    options = [
        click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam"]), default="sgd", show_default=True,
                     help="Update rule."),
        click.option("--momentum", type=float, default=0.9, show_default=True, help="Momentum (--optimizer momentum)."),
        click.option("--weight-decay", type=float, default=0.0, show_default=True,
                     help="L2 penalty added to every gradient as weight_decay * param."),
        click.option("--beta1", type=float, default=0.9, show_default=True, help="Adam's first-moment decay."),
        click.option("--beta2", type=float, default=0.999, show_default=True, help="Adam's second-moment decay."),
        click.option("--eps", type=float, default=1e-8, show_default=True, help="Adam's denominator guard."),
        click.option("--loss-reduction", type=click.Choice(["sum", "mean"]), default="sum", show_default=True,
                     help="Batch loss as the sum (the report's lr scale) or the mean of per-image losses."),
        click.option("--patience", type=int, default=0, show_default=True,
                     help="Stop when validation loss has not improved for this many epochs (0: never)."),
        click.option("--augment", type=click.Choice(["none", "flip", "flip-vh", "rotate", "shift"]), default="none",
                     show_default=True,
                     help="Per-epoch random changes to each training image: left-right flips (flip), also "
                          "upside-down (flip-vh), also 90-degree turns (rotate), or flips plus shifts of up to "
                          "2 pixels (shift)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Image folder with train/<class>/* and test/<class>/*. Default: the embedded fruit photos.")
@click.option("--lr", type=float, default=1e-6, show_default=True, help="Learning rate (loss summed over the batch).")
@click.option("--epochs", type=int, default=10, show_default=True,
              help="Passes over the training set (with --resume: the new total).")
@click.option("--batch-size", type=int, default=1, show_default=True, help="Images per SGD step (1 = the report's plain SGD).")
@click.option("--kernels", type=int, default=8, show_default=True, help="Number of conv kernels.")
@click.option("--kernel-size", type=int, default=4, show_default=True, help="Side of each square conv kernel.")
@click.option("--hidden", default="841,29", show_default=True, callback=parse_hidden,
              help="Hidden dense layer sizes, comma-separated.")
@click.option("--val-fraction", type=float, default=0.3, show_default=True,
              help="Share of the training folder held out for validation.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for init, split and shuffling.")
@click.option("--color", type=click.Choice(["grey", "rgb"]), default="grey", show_default=True,
              help="Input channels: one luma channel or three colour channels.")
@click.option("--normalize", type=click.Choice(["none", "scale", "standardize"]), default="none", show_default=True,
              help="Pixel scaling: raw 0..255, /255, or per-image zero mean and unit variance.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for model.npz and history.json. Default: a new folder under ./runs/ "
                   "(with --resume: the checkpoint's folder).")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the run saved in this model.npz with its own settings and data.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images in --data instead of stopping.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@beyond_the_report_options
@click.pass_context
def train(ctx, data, lr, epochs, batch_size, kernels, kernel_size, hidden, val_fraction, seed, color, normalize,
          out, resume, skip_bad, quiet, **extra):
    """Train the network and save model.npz, history.json and best.npz (the lowest validation loss).

    model.npz is saved after every epoch. Ctrl-C (or SIGTERM) stops after the current step, saves
    the run mid-epoch and prints the command that resumes it; the resumed run ends with the same
    weights, bit for bit, as one that was never stopped.
    """
    from .train import Diverged, TrainConfig, Trainer

    try:
        if resume:
            trainer, run = resume_run(ctx, resume, data, epochs, out, skip_bad)
        else:
            config = TrainConfig(lr=lr, epochs=epochs, batch_size=batch_size, kernels=kernels,
                                 kernel_size=kernel_size, hidden=hidden, val_fraction=val_fraction, seed=seed,
                                 color=color, normalize=normalize, **extra)
            config.check()
            dataset = load_dataset(data, skip_bad)
            trainer = Trainer.start(dataset, config)
            run = RunFiles(make_output_folder(out), data, skip_bad)
    except KeyboardInterrupt:  # Ctrl-C while the images load: there is nothing to save yet
        click.echo("Interrupted before training started; nothing was saved", err=True)
        ctx.exit(EXIT_CODE)
    try:
        with StopOnSignal(lambda signum: setattr(trainer, "stop_requested", True)) as stopper:
            run.save(trainer)  # before any step: proves the folder is writable, gives a point to resume from
            describe_run(trainer)
            started = time.perf_counter()
            with EpochProgress(quiet) as progress:
                # A signal before the first step still lets one step run: the saved state is then
                # mid-epoch like any other, and "stop after the current step" has one meaning.
                while trainer.epoch < trainer.config.epochs:
                    record = trainer.run_epoch(progress.epoch(trainer.epoch + 1, trainer.steps_per_epoch))
                    if record is not None:
                        click.echo(format_epoch(record))
                        if trainer.improved:
                            run.save_best(trainer)
                    run.save(trainer)
                    if trainer.stop_requested:
                        break
                    if trainer.should_stop():
                        click.echo(f"Early stop: validation loss has not improved for {trainer.config.patience} "
                                   f"epochs ({describe_best(trainer.history)})")
                        break
            if trainer.stop_requested and trainer.epoch < trainer.config.epochs:
                click.echo(f"Interrupted by {signal_name(stopper.received)}: saved {run.saved_at} to {run.model_path}")
                click.echo(f"Resume with: cnnfruit train --resume {shlex.quote(run.model_path)}")
                ctx.exit(EXIT_CODE)
            total = time.perf_counter() - started
            accuracy = trainer.finish(total)
            run.save(trainer)
    except Diverged as err:
        raise CnnfruitError(f"{err}. The last good checkpoint, {run.saved_at}, is {run.model_path}") from None
    except KeyboardInterrupt:  # a second Ctrl-C: no waiting for the step to end
        kept = f"the last checkpoint, {run.saved_at}, is {run.model_path}" if run.saved_at else "nothing was saved"
        click.echo(f"Stopped at once without saving; {kept}", err=True)
        ctx.exit(EXIT_CODE)
    correct = round(accuracy * len(trainer.data.y_test))
    click.echo(f"Test Accuracy: {100 * accuracy:.1f}% ({correct}/{len(trainer.data.y_test)})")
    click.echo(f"Total Time: {total:.1f} s")
    click.echo(f"Saved {run.model_path} and {run.history_path}")
    if "best_epoch" in trainer.history:
        click.echo(f"Saved {run.best_path} (epoch {trainer.history['best_epoch']}, lowest validation loss)")


def describe_run(trainer):
    dataset, data, arch = trainer.dataset, trainer.data, trainer.network.arch
    click.echo(
        f"Training on {dataset.name}: {len(data.y_train)} train / {len(data.y_val)} validation / "
        f"{len(data.y_test)} test images, classes {', '.join(dataset.class_names)}"
    )
    click.echo(
        f"Network: {arch.in_channels}x{arch.image_size}x{arch.image_size} -> conv {arch.kernels}x{arch.kernel_size}x"
        f"{arch.kernel_size} -> {arch.features} -> {' -> '.join(str(o) for _, o in arch.dense_widths)}"
    )


class RunFiles:
    """A run folder's model.npz and history.json, rewritten (atomically) at every save."""

    def __init__(self, folder, data, skip_bad):
        self.folder = folder
        self.model_path = os.path.join(folder, "model.npz")
        self.history_path = os.path.join(folder, "history.json")
        self.best_path = os.path.join(folder, "best.npz")
        self.data_source = os.path.abspath(data) if data else None
        self.skip_bad = skip_bad
        self.saved_at = None  # which point of training the files on disk hold, for messages

    def save(self, trainer):
        from . import checkpoint
        from .files import write_text_atomically

        try:
            checkpoint.save(self.model_path, trainer.checkpoint(self.data_source, self.skip_bad))
            write_text_atomically(self.history_path, json.dumps(trainer.history, indent=2) + "\n")
        except OSError as err:
            raise CnnfruitError(f"cannot write to {self.folder}: {err.strerror or err}") from None
        if trainer.partial is not None:
            self.saved_at = f"epoch {trainer.epoch + 1} up to step {trainer.partial['step']} of {trainer.steps_per_epoch}"
        elif trainer.epoch == 0:
            self.saved_at = "the initial weights"
        else:
            self.saved_at = f"the end of epoch {trainer.epoch}"

    def save_best(self, trainer):
        from . import checkpoint

        try:
            checkpoint.save(self.best_path, trainer.checkpoint(self.data_source, self.skip_bad))
        except OSError as err:
            raise CnnfruitError(f"cannot write to {self.folder}: {err.strerror or err}") from None


def resume_run(ctx, path, data, epochs, out, skip_bad):
    """The trainer and run files for `train --resume`: the checkpoint's settings, data and state."""
    from dataclasses import fields

    from click.core import ParameterSource

    from . import checkpoint
    from .data import fingerprint
    from .train import TrainConfig, Trainer

    ckpt = checkpoint.load(path)
    if not ckpt.config or not ckpt.rng_state or "epochs" not in ckpt.history:
        raise CnnfruitError(f"{path} holds a model but not the training state needed to resume")
    try:
        config = TrainConfig.from_dict(ckpt.config)
    except (TypeError, ValueError) as err:
        raise CnnfruitError(f"{path}: cannot resume: {err}") from None
    given = {
        name for name in ctx.params
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    for field in fields(TrainConfig):
        if field.name in given and field.name != "epochs" and ctx.params[field.name] != getattr(config, field.name):
            flag = "--" + field.name.replace("_", "-")
            raise CnnfruitError(
                f"{flag} {format_setting(ctx.params[field.name])} conflicts with {path}, trained with "
                f"{flag} {format_setting(getattr(config, field.name))}; a resumed run keeps its checkpoint's "
                "settings, so drop the flag (or start a new run)"
            )
    if "epochs" in given:
        if epochs <= ckpt.epoch:
            raise CnnfruitError(f"--epochs {epochs}: {path} has already completed {ckpt.epoch} epochs; give a larger total")
        config.epochs = epochs
    elif config.epochs <= ckpt.epoch:
        raise CnnfruitError(
            f"{path} has already completed its {ckpt.epoch} epochs; pass --epochs N with N > {ckpt.epoch} to train on"
        )
    source = data or ckpt.data.get("source")
    if source is not None and not data and not os.path.isdir(source):
        raise CnnfruitError(f"the data folder {source} that {path} was trained on is gone; pass --data")
    dataset = load_dataset(source, skip_bad or ckpt.data.get("skip_bad", False))
    if list(dataset.class_names) != ckpt.class_names:
        raise CnnfruitError(
            f"the data's classes ({', '.join(dataset.class_names)}) differ from those of {path} ({', '.join(ckpt.class_names)})"
        )
    if ckpt.data.get("digest") not in (None, fingerprint(dataset)):
        raise CnnfruitError(
            f"the images in {source or 'the embedded set'} differ from those {path} was trained on; resuming needs the same data"
        )
    try:
        trainer = Trainer.resume(dataset, config, ckpt)
    except CnnfruitError as err:
        raise CnnfruitError(f"{path}: cannot resume: {err}") from None
    folder = make_output_folder(out or os.path.dirname(path) or ".")
    if ckpt.interrupted:
        where = f"in epoch {ckpt.epoch + 1} after step {ckpt.partial['step']} of {trainer.steps_per_epoch}"
    else:
        where = f"after epoch {ckpt.epoch}"
    click.echo(f"Resuming {path} {where}, to {config.epochs} epochs")
    return trainer, RunFiles(folder, source, skip_bad or ckpt.data.get("skip_bad", False))


def format_setting(value):
    return ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)


def split_for_eval(ckpt, dataset, split):
    """Images and labels of one split; 'train' and 'val' redo the checkpoint's seeded split."""
    from .train import generators
    from .data import train_val_split

    if split == "test":
        return dataset.test
    seed = ckpt.config.get("seed", 0)
    val_fraction = ckpt.config.get("val_fraction", 0.3)
    _, split_rng, _ = generators(seed)
    train_index, val_index = train_val_split(len(dataset.train), val_fraction, split_rng)
    return dataset.train.subset(train_index if split == "train" else val_index)


def print_report(report):
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"Accuracy: {100 * report['accuracy']:.1f}% on {report['images']} images ({report['split']} split)")
    per_class = Table("class", "precision", "recall", "support", title="Per class")
    for row in report["per_class"]:
        per_class.add_row(row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", str(row["support"]))
    console.print(per_class)
    matrix = Table("true \\ predicted", *report["class_names"], title="Confusion matrix")
    for name, row in zip(report["class_names"], report["confusion_matrix"]):
        matrix.add_row(name, *(str(count) for count in row))
    console.print(matrix)


def open_model(path):
    from . import checkpoint
    from .model import Network

    ckpt = checkpoint.load(path)
    return ckpt, Network(ckpt.arch, ckpt.params)


@main.command(name="eval")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Image folder (train/ and test/). Default: the embedded fruit photos.")
@click.option("--split", type=click.Choice(["test", "train", "val"]), default="test", show_default=True,
              help="Which images to score; train and val repeat the training run's seeded split.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the confusion matrix as a heat map into this PNG file.")
def evaluate(model, data, split, as_json, plot_path):
    """Accuracy, per-class precision and recall, and the confusion matrix of MODEL."""
    from .metrics import classification_report
    from .preprocess import to_inputs

    ckpt, network = open_model(model)
    dataset = load_dataset(data)
    if list(dataset.class_names) != ckpt.class_names:
        raise CnnfruitError(
            f"the data's classes ({', '.join(dataset.class_names)}) differ from the model's ({', '.join(ckpt.class_names)})"
        )
    part = split_for_eval(ckpt, dataset, split)
    x = to_inputs(part.images, ckpt.color, ckpt.normalize)
    _, _, predictions = network.evaluate(x, part.labels)
    report = {"model": model, "split": split, **classification_report(part.labels, predictions, ckpt.class_names)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
    if plot_path:
        from .plots import plot_confusion_matrix

        write_plot(plot_confusion_matrix, report["confusion_matrix"], ckpt.class_names, plot_path,
                   title=f"{os.path.basename(model)} on the {split} split")
        click.echo(f"Wrote {plot_path}", err=as_json)


def read_history(path):
    try:
        with open(path, encoding="utf-8") as f:
            history = json.load(f)
    except json.JSONDecodeError as err:
        raise CnnfruitError(f"{path} is not valid JSON: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CnnfruitError(f"cannot read {path}: {err}") from None
    epochs = history.get("epochs") if isinstance(history, dict) else None
    needed = ("epoch", "train_loss", "train_accuracy")
    if not isinstance(epochs, list) or not epochs or not all(
        isinstance(e, dict) and all(key in e for key in needed) for e in epochs
    ):
        raise CnnfruitError(f"{path} is not a cnnfruit history: it needs a list of epochs with {', '.join(needed)}")
    for number, epoch in enumerate(epochs, 1):
        for key in (*needed, "val_loss", "val_accuracy"):
            value = epoch.get(key)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)) and not (
                value is None and key.startswith("val_")
            ):
                raise CnnfruitError(f"{path} is not a cnnfruit history: epoch {number} has a {key} that is not a number")
    return history


def is_checkpoint_file(path):
    """A .npz checkpoint is a zip archive; a history is JSON text. Decided by the first bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError as err:
        raise CnnfruitError(f"cannot read {path}: {err.strerror}") from None


@main.command()
@click.argument("file", metavar="HISTORY_OR_MODEL", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="PNG file to write. Default: FILE with a .png suffix (-kernels.png / -features.png for a model).")
@click.option("--kernels", "show_kernels", is_flag=True, help="MODEL.npz: draw the learned conv kernels as a grid.")
@click.option("--feature-maps", "feature_image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="MODEL.npz: draw this image and the ReLU maps the conv layer makes of it.")
def plot(file, output, show_kernels, feature_image):
    """Plot a history.json (loss and accuracy per epoch) or what a model.npz learned.

    \b
      cnnfruit plot runs/x/history.json
      cnnfruit plot runs/x/model.npz --kernels -o kernels.png
      cnnfruit plot runs/x/model.npz --feature-maps photo.jpg -o features.png
    """
    stem = os.path.splitext(file)[0]
    if not is_checkpoint_file(file):
        if show_kernels or feature_image:
            raise CnnfruitError(f"--kernels and --feature-maps need a model .npz file; {file} is not one")
        from .plots import plot_history

        record = read_history(file)
        output = output or stem + ".png"
        write_plot(plot_history, record, output)
    elif show_kernels == bool(feature_image):
        raise CnnfruitError(f"{file} is a model: choose one of --kernels or --feature-maps IMAGE")
    elif show_kernels:
        from . import checkpoint
        from .plots import plot_kernels

        ckpt = checkpoint.load(file)
        output = output or stem + "-kernels.png"
        write_plot(plot_kernels, ckpt.params["conv_w"], output,
                   title=f"{ckpt.arch.kernels} learned {ckpt.arch.kernel_size}x{ckpt.arch.kernel_size} kernels "
                         f"({ckpt.color}, {os.path.basename(file)})")
    else:
        from .plots import plot_feature_maps
        from .preprocess import load_image, to_inputs

        ckpt, network = open_model(file)
        pixels = load_image(feature_image, ckpt.arch.image_size)[None]
        x = to_inputs(pixels, ckpt.color, ckpt.normalize)
        probs = network.predict_proba(x)[0]
        network.forward(x)
        shown = x[0, 0] if ckpt.color == "grey" else pixels[0]
        output = output or stem + "-features.png"
        guess = ckpt.class_names[int(probs.argmax())]
        write_plot(plot_feature_maps, shown, network.conv_out[0].copy(), output,
                   title=f"{os.path.basename(feature_image)}: predicted {guess} ({100 * probs.max():.1f}%)")
    click.echo(f"Wrote {output}")


def write_plot(draw, *args, **kwargs):
    output = args[-1]
    try:
        draw(*args, **kwargs)
    except OSError as err:
        raise CnnfruitError(f"cannot write {output}: {err.strerror or err}") from None


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
def predict(model, images, as_json):
    """Classify each IMAGE with MODEL: predicted class and class probabilities."""
    import numpy as np

    from .preprocess import load_image, to_inputs

    ckpt, network = open_model(model)
    pixels = np.stack([load_image(path) for path in images])
    probs = network.predict_proba(to_inputs(pixels, ckpt.color, ckpt.normalize))
    results = [
        {
            "file": path,
            "class": ckpt.class_names[int(p.argmax())],
            "probabilities": {name: float(value) for name, value in zip(ckpt.class_names, p)},
        }
        for path, p in zip(images, probs)
    ]
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    width = max(len(path) for path in images)
    for result in results:
        odds = "  ".join(f"{name} {value:.3f}" for name, value in result["probabilities"].items())
        click.echo(f"{result['file']:<{width}}  {result['class']:<{max(map(len, ckpt.class_names))}}  {odds}")


@main.command()
@click.option("--kernels", type=int, default=8, show_default=True, help="Number of conv kernels.")
@click.option("--kernel-size", type=int, default=4, show_default=True, help="Side of each square conv kernel.")
@click.option("--hidden", default="841,29", show_default=True, callback=parse_hidden,
              help="Hidden dense layer sizes, comma-separated.")
@click.option("--color", type=click.Choice(["grey", "rgb"]), default="grey", show_default=True,
              help="Input channels: 1 (grey) or 3 (rgb).")
@click.option("--image-size", type=int, default=8, show_default=True,
              help="Side of the random square test images (small keeps it quick).")
@click.option("--classes", type=int, default=3, show_default=True, help="Number of output classes.")
@click.option("--images", type=int, default=2, show_default=True, help="Images in the batch whose summed loss is checked.")
@click.option("--max-entries", type=int, default=300, show_default=True,
              help="Check at most this many randomly chosen entries of each parameter.")
@click.option("--threshold", type=float, default=1e-6, show_default=True,
              help="Fail (exit 1) if any parameter's relative error is above this.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the weights, images and sampled entries.")
def gradcheck(kernels, kernel_size, hidden, color, image_size, classes, images, max_entries, threshold, seed):
    """Check backprop against centred finite differences (float64) on a small random network.

    For each parameter it prints the relative error ||backprop - numeric|| / (||backprop|| +
    ||numeric||) over the checked entries, and exits with status 1 if any is above --threshold.
    """
    from .architecture import Architecture
    from .gradcheck import check_gradients

    if images < 1 or max_entries < 1:
        raise CnnfruitError("--images and --max-entries must be at least 1")
    arch = Architecture(in_channels=3 if color == "rgb" else 1, image_size=image_size, kernels=kernels,
                        kernel_size=kernel_size, hidden=hidden, classes=classes)
    click.echo(
        f"Network: {arch.in_channels}x{image_size}x{image_size} -> conv {kernels}x{kernel_size}x{kernel_size} -> "
        f"{arch.features} -> {' -> '.join(str(o) for _, o in arch.dense_widths)}, float64, {images} random images"
    )
    results = check_gradients(arch, seed=seed, images=images, max_entries=max_entries)
    width = max(len("parameter"), *(len(r.name) for r in results))
    click.echo(f"{'parameter':<{width}}  {'shape':<14} {'checked':>7}  {'rel. error':>10}  {'max |diff|':>10}")
    for r in results:
        verdict = "ok" if r.relative_error <= threshold else "FAIL"
        click.echo(f"{r.name:<{width}}  {str(r.shape):<14} {r.checked:>7}  {r.relative_error:>10.2e}  "
                   f"{r.max_abs_difference:>10.2e}  {verdict}")
    failed = [r.name for r in results if r.relative_error > threshold]
    if failed:
        click.echo(f"Gradient check FAILED for {', '.join(failed)} (threshold {threshold:g})", err=True)
        sys.exit(1)
    click.echo(f"Gradient check passed: every relative error is at most {threshold:g}")


if __name__ == "__main__":
    sys.exit(main())
