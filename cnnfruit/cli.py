"""The `cnnfruit` command line: train, eval, plot, predict.

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
@click.pass_context
def train(ctx, data, lr, epochs, batch_size, kernels, kernel_size, hidden, val_fraction, seed, color, normalize,
          out, resume, skip_bad, quiet):
    """Train the network and save model.npz and history.json.

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
                                 color=color, normalize=normalize)
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
                    run.save(trainer)
                    if trainer.stop_requested:
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
def evaluate(model, data, split, as_json):
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


@main.command()
@click.argument("history", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="PNG file to write. Default: HISTORY with a .png suffix.")
def plot(history, output):
    """Plot training and validation loss and accuracy per epoch from a history.json."""
    from .plots import plot_history

    record = read_history(history)
    output = output or os.path.splitext(history)[0] + ".png"
    try:
        plot_history(record, output)
    except OSError as err:
        raise CnnfruitError(f"cannot write {output}: {err.strerror or err}") from None
    click.echo(f"Wrote {output}")


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


if __name__ == "__main__":
    sys.exit(main())
