"""`cnnfruit summary`: the layers of a network, their parameters and FLOPs, as a table."""
import json

import click
from click.core import ParameterSource

from cnnfruit.cli.options import computing, setting_options
from cnnfruit.config import IMAGE_SIZE, TrainConfig
from cnnfruit.errors import CnnfruitError

ARCHITECTURE_SETTINGS = ("kernels", "kernel_size", "hidden", "layers", "color")
CONV_METHODS = {"direct": "direct convolution kernels", "im2col": "im2col products",
                "winograd": "Winograd F(2x2, 3x3) products, with 2.25x fewer multiply-adds than the FLOPs above count"}


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@setting_options(*ARCHITECTURE_SETTINGS)
@click.option("--classes", type=int, default=3, show_default=True, help="Number of output classes.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def summary(ctx, model, kernels, kernel_size, hidden, layers, color, classes, as_json):
    """Per-layer output shape, parameters, and forward and backward FLOPs per image, with totals.

    Of the network saved in MODEL, or else of the one the architecture flags describe (the
    defaults: the report's network). FLOPs count 2 per multiply-add; backward is what a training
    step computes.
    """
    from cnnfruit.nn.architecture import Architecture
    from cnnfruit.inference.summary import summarize
    from cnnfruit.cli.terminal import print_summary

    given = [name for name in (*ARCHITECTURE_SETTINGS, "classes")
             if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    if model and given:
        raise CnnfruitError("give a MODEL or architecture flags, not both: the model's own architecture is used")
    if model:
        computing()  # first: reading a checkpoint's optimizer state imports the kernels, and Numba
        result = summarize(model)
    else:
        config = TrainConfig(kernels=kernels, kernel_size=kernel_size, hidden=hidden, layers=layers, color=color)
        if classes < 2:
            raise CnnfruitError(f"--classes must be at least 2, got {classes}")
        result = summarize(Architecture.from_config(config, classes, IMAGE_SIZE))
    from cnnfruit.nn.gemm import products

    conv_layers = {unit.name: unit.runs_as for unit in result.arch.units() if unit.kind == "conv"}
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "matrix_products": products().describe(),
                               "conv_layers_run_as": conv_layers}, indent=2))
    else:
        print_summary(result)
        line = products().describe()
        click.echo(line[0].upper() + line[1:])
        for how, text in CONV_METHODS.items():
            names = [name for name, runs_as in conv_layers.items() if runs_as == how]
            if names:
                click.echo(f"{', '.join(names)}: {text}")
