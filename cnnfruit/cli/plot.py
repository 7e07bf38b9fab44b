"""`cnnfruit plot`: a history's curves, a sweep's results, or what a model's conv layers learned."""
import json
import os

import click

from cnnfruit.cli.options import check_figure_path, computing, write_figure
from cnnfruit.errors import CnnfruitError
from cnnfruit.files import check_regular


def is_checkpoint_file(path):
    """A .npz checkpoint is a zip archive; a history is JSON text. Decided by the first bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError as err:
        raise CnnfruitError(f"cannot read {path}: {err.strerror}") from None


def is_sweep_file(path):
    """A sweep.json says so in its "kind"; anything else that is JSON is read as a history."""
    from cnnfruit.sweep.report import is_sweep_record

    try:
        with open(path, encoding="utf-8") as f:
            return is_sweep_record(json.load(f))
    except (OSError, ValueError, RecursionError):
        return False


@click.command()
@click.argument("file", metavar="HISTORY_OR_MODEL", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="File to write, in the format its suffix names (.png, .jpg, .svg or .pdf). Default: FILE's name "
                   "with a .png suffix (-kernels.png / -features.png for a model), in the current folder.")
@click.option("--kernels", "show_kernels", is_flag=True,
              help="MODEL.npz: draw the first conv layer's learned kernels as a grid.")
@click.option("--feature-maps", "feature_image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="MODEL.npz: draw this image and the ReLU maps a conv layer makes of it (see --layer).")
@click.option("--layer", default=None, metavar="NAME",
              help="With --feature-maps: the conv layer, by name (conv1; see cnnfruit summary) or by position "
                   "among the conv layers (0 for the first). Default: the first.")
def plot(file, output, show_kernels, feature_image, layer):
    """Plot a history.json (loss and accuracy per epoch), a sweep.json (accuracy against each swept
    setting) or what a model.npz learned, into a picture in the current folder (or -o).

    \b
      cnnfruit plot runs/x/history.json
      cnnfruit plot sweeps/x/sweep.json
      cnnfruit plot runs/x/model.npz --kernels -o kernels.png
      cnnfruit plot runs/x/model.npz --feature-maps photo.jpg -o features.png
      cnnfruit plot runs/x/model.npz --feature-maps photo.jpg --layer conv3
    """
    check_regular(file)  # before it is opened: a FIFO would block for ever
    check_figure_path(output, file, feature_image)
    if layer is not None and not feature_image:
        raise CnnfruitError("--layer chooses the conv layer of --feature-maps; give --feature-maps IMAGE too")
    from cnnfruit import plots

    stem = os.path.splitext(os.path.basename(file))[0]  # written here, not beside FILE: its folder may be shared
    if not is_checkpoint_file(file) and is_sweep_file(file):
        from cnnfruit.sweep.report import SweepReport

        report = SweepReport.load(file)
        if not any(run["outcome"] == "finished" for run in report.runs):
            raise CnnfruitError(f"{file} holds no finished run to plot")
        fig, output = plots.sweep_figure(report), output or stem + ".png"
    elif not is_checkpoint_file(file):
        if show_kernels or feature_image:
            raise CnnfruitError(f"--kernels and --feature-maps need a model .npz file; {file} is not one")
        from cnnfruit.history import History

        history = History.load(file)
        if not history.epochs:
            raise CnnfruitError(f"{file} holds no finished epoch to plot")
        fig, output = plots.history_figure(history), output or stem + ".png"
    elif show_kernels == bool(feature_image):
        raise CnnfruitError(f"{file} is a model: choose one of --kernels or --feature-maps IMAGE")
    else:
        computing()  # first: it is where Numba is imported
        from cnnfruit.inference.classifier import Classifier

        clf = Classifier.load(file)
        if show_kernels:
            unit = clf.network.layers[clf.network.conv_index()]
            fig = plots.kernels_figure(clf.params[f"{unit.name}_w"], title=(
                f"{unit.kernels} learned {unit.size}x{unit.size} kernels of {unit.name} ({clf.color}, "
                f"{os.path.basename(file)})"))
            output = output or stem + "-kernels.png"
        else:
            chosen = int(layer) if layer is not None and layer.isdigit() else layer
            unit = clf.network.layers[clf.network.conv_index(chosen)]
            pixels = clf.images(feature_image)
            probs = clf.predict_proba(pixels)[0]
            shown = clf.inputs(pixels)[0, 0] if clf.color == "grey" else pixels[0]
            fig = plots.feature_maps_figure(shown, clf.feature_maps(pixels[0], unit.name), title=(
                f"{os.path.basename(feature_image)}: {unit.name}'s maps; predicted "
                f"{clf.class_names[int(probs.argmax())]} ({100 * probs.max():.1f}%)"))
            output = output or stem + "-features.png"
    check_figure_path(output, file, feature_image)  # again: the default name may be that of an input
    click.echo(f"Wrote {write_figure(fig, output)}")
