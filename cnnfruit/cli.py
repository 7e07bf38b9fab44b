"""The `cnnfruit` command line: train, eval, plot, predict, gradcheck.

The only module that imports click and rich. Heavy modules (numba kernels, matplotlib) are
imported inside the commands that need them, so `cnnfruit --help` starts at once.
"""
import json
import os
import sys
import time

import click

from . import __version__
from .errors import CnnfruitError

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
@click.option("--epochs", type=int, default=10, show_default=True, help="Passes over the training set.")
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
              help="Folder for model.npz and history.json. Default: a new folder under ./runs/.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images in --data instead of stopping.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@beyond_the_report_options
def train(data, lr, epochs, batch_size, kernels, kernel_size, hidden, val_fraction, seed, color, normalize,
          out, skip_bad, quiet, **extra):
    """Train the network and save model.npz and history.json (and best.npz, the lowest validation loss)."""
    from . import checkpoint
    from .files import write_text_atomically
    from .train import TrainConfig, Trainer

    config = TrainConfig(lr=lr, epochs=epochs, batch_size=batch_size, kernels=kernels, kernel_size=kernel_size,
                         hidden=hidden, val_fraction=val_fraction, seed=seed, color=color, normalize=normalize,
                         **extra)
    config.check()
    folder = make_output_folder(out)
    dataset = load_dataset(data, skip_bad)
    started = time.perf_counter()
    trainer = Trainer.start(dataset, config)
    arch = trainer.network.arch
    click.echo(
        f"Training on {dataset.name}: {len(trainer.data.y_train)} train / {len(trainer.data.y_val)} validation / "
        f"{len(trainer.data.y_test)} test images, classes {', '.join(dataset.class_names)}"
    )
    click.echo(
        f"Network: {arch.in_channels}x{arch.image_size}x{arch.image_size} -> conv {arch.kernels}x{arch.kernel_size}x"
        f"{arch.kernel_size} -> {arch.features} -> {' -> '.join(str(o) for _, o in arch.dense_widths)}"
    )
    best_path = os.path.join(folder, "best.npz")
    with EpochProgress(quiet) as progress:
        while trainer.epoch < config.epochs:
            record = trainer.run_epoch(progress.epoch(trainer.epoch + 1, trainer.steps_per_epoch))
            click.echo(format_epoch(record))
            if trainer.improved:
                checkpoint.save(best_path, trainer.checkpoint())
            if trainer.should_stop():
                click.echo(f"Early stop: validation loss has not improved for {config.patience} epochs "
                           f"({describe_best(trainer.history)})")
                break
    total = time.perf_counter() - started
    accuracy = trainer.finish(total)
    model_path, history_path = os.path.join(folder, "model.npz"), os.path.join(folder, "history.json")
    checkpoint.save(model_path, trainer.checkpoint())
    write_text_atomically(history_path, json.dumps(trainer.history, indent=2) + "\n")
    correct = round(accuracy * len(trainer.data.y_test))
    click.echo(f"Test Accuracy: {100 * accuracy:.1f}% ({correct}/{len(trainer.data.y_test)})")
    click.echo(f"Total Time: {total:.1f} s")
    click.echo(f"Saved {model_path} and {history_path}")
    if "best_epoch" in trainer.history:
        click.echo(f"Saved {best_path} (epoch {trainer.history['best_epoch']}, lowest validation loss)")


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
