"""`cnnfruit gradcheck`: backprop against centred finite differences, as a table."""
import sys

import click

from cnnfruit.cli.options import computing, setting_options
from cnnfruit.config import TrainConfig, class_weight_values
from cnnfruit.errors import CnnfruitError


@click.command()
@setting_options("kernels", "kernel_size", "hidden", "layers", "color", "dropout", "label_smoothing")
@click.option("--class-weights", default=None, help="Weight of each class in the loss, comma-separated (W1,W2,...).")
@click.option("--image-size", type=int, default=8, show_default=True,
              help="Side of the random square test images (small keeps it quick).")
@click.option("--classes", type=int, default=3, show_default=True, help="Number of output classes.")
@click.option("--images", type=int, default=2, show_default=True, help="Images in the batch whose summed loss is checked.")
@click.option("--max-entries", type=int, default=300, show_default=True,
              help="Check at most this many randomly chosen entries of each parameter.")
@click.option("--threshold", type=float, default=1e-6, show_default=True,
              help="Fail (exit 1) if any parameter's relative error is above this.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the weights, images and sampled entries.")
def gradcheck(kernels, kernel_size, hidden, layers, color, dropout, label_smoothing, class_weights, image_size, classes,
              images, max_entries, threshold, seed):
    """Check backprop against centred finite differences (float64) on a small random network.

    For each parameter it prints the relative error ||backprop - numeric|| / (||backprop|| +
    ||numeric||) over the checked entries, and exits with status 1 if any is above --threshold.
    """
    if images < 1 or max_entries < 1:
        raise CnnfruitError("--images and --max-entries must be at least 1")
    if not 0 < threshold < float("inf"):
        raise CnnfruitError(f"--threshold must be a positive number, got {threshold}")
    config = TrainConfig(kernels=kernels, kernel_size=kernel_size, hidden=hidden, layers=layers, color=color,
                         dropout=dropout, label_smoothing=label_smoothing, class_weights=class_weights or "none")
    weights = class_weight_values(config.class_weights)
    if config.class_weights == "auto" or (weights is not None and len(weights) != classes):
        raise CnnfruitError(f"--class-weights needs {classes} numbers here, one per class (see --classes)")
    computing()  # first: it is where Numba is imported
    from cnnfruit.nn.architecture import Architecture
    from cnnfruit.nn.gradcheck import check_gradients

    arch = Architecture.from_config(config, classes, image_size)
    click.echo(f"Network: {arch.describe()}, float64, {images} random images")
    results = check_gradients(arch, seed=seed, images=images, max_entries=max_entries, dropout=dropout,
                              class_weights=weights, label_smoothing=label_smoothing)
    width = max(len("parameter"), *(len(r.name) for r in results))
    click.echo(f"{'parameter':<{width}}  {'shape':<14} {'checked':>7}  {'rel. error':>10}  {'max |diff|':>10}")
    for r in results:
        verdict = "ok" if r.relative_error <= threshold else "FAIL"
        click.echo(f"{r.name:<{width}}  {str(r.shape):<14} {r.checked:>7}  {r.relative_error:>10.2e}  "
                   f"{r.max_abs_difference:>10.2e}  {verdict}")
    failed = [r.name for r in results if not r.relative_error <= threshold]
    if failed:
        click.echo(f"Gradient check FAILED for {', '.join(failed)} (threshold {threshold:g})", err=True)
        sys.exit(1)
    click.echo(f"Gradient check passed: every relative error is at most {threshold:g}")
