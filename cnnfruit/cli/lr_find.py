"""`cnnfruit lr-find`: sweep the learning rate from a run's initial weights, plot and suggest."""
import json

import click
from click.core import ParameterSource

from cnnfruit.cli.options import TRAIN_SETTINGS, computing, data_options, load_data, setting_options, write_figure
from cnnfruit.config import LR_FIND_END, LR_FIND_PROBE, LR_FIND_START, LR_FIND_STEPS, TrainConfig


@click.command(name="lr-find")
@setting_options(*TRAIN_SETTINGS)
@data_options
@click.option("--start", type=float, default=LR_FIND_START, show_default=True, help="First learning rate of the sweep.")
@click.option("--end", type=float, default=LR_FIND_END, show_default=True, help="Last learning rate of the sweep.")
@click.option("--steps", type=int, default=LR_FIND_STEPS, show_default=True,
              help="Training steps from --start to --end (fewer if the loss diverges first).")
@click.option("--probe", type=int, default=LR_FIND_PROBE, show_default=True,
              help="Validation images whose loss is measured after every step (0: each step's own batch).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="lr-find.png", show_default=True,
              help="PNG file for the loss-against-learning-rate curve.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep and the suggestion as JSON.")
@click.pass_context
def lr_find(ctx, source, start, end, steps, probe, output, as_json, **settings):
    """Find a learning rate: train from the run's initial weights while the rate grows exponentially.

    Takes the train command's flags; the run it would start (its initial weights, data order,
    optimizer and batch size) is trained for --steps steps while the learning rate grows from
    --start to --end, and the loss on a fixed set of validation images is measured after each
    step. Prints a suggested range with its reasoning and draws the curve. Nothing is saved
    besides the picture. The suggestion moves with the range and the seed: judge it by the curve.
    """
    from cnnfruit.training.lr_finder import find_lr
    from cnnfruit.plots import lr_sweep_figure

    if ctx.get_parameter_source("lr") == ParameterSource.COMMANDLINE:
        click.echo(f"Ignoring --lr {settings['lr']:g}: the sweep sets the learning rate", err=True)
    if probe < 0:
        raise click.BadParameter("must be zero or positive", param_hint="--probe")
    config = TrainConfig(**settings)
    computing()
    sweep = find_lr(load_data(source), config, start=start, end=end, steps=steps, probe=probe)
    write_figure(lr_sweep_figure(sweep), output)
    if as_json:
        click.echo(json.dumps(sweep.to_dict(), indent=2))
        return
    s = sweep.suggestion
    click.echo(f"Suggested learning rate: {s.low:.0e} to {s.high:.0e} (lowest loss at {s.minimum:.1e}"
               + (f", steepest fall at {s.steepest:.1e})" if s.steepest < s.minimum else ")"))
    for reason in s.reasons:
        click.echo(f"  {reason}")
    click.echo(f"Wrote {output}")
