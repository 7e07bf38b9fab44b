"""The `cnnfruit` command group: it finds each command in a module of its own and turns the
library's errors into one-line messages.

Each command parses its flags, calls the library, and formats what comes back; the work itself
is in the library, where a notebook can call it too. A command's module is imported only when the
command is named, and heavy modules are imported inside the commands, so `cnnfruit --help` starts
at once without Numba.
"""
import sys

import click

from cnnfruit.version import __version__
from cnnfruit.cli.options import CONTEXT_SETTINGS, flag
from cnnfruit.errors import CnnfruitError, SettingError

# command name -> (its module under cnnfruit/cli/, the function in it), imported only when named
COMMAND_MODULES = {
    "train": ("train", "train"),
    "eval": ("eval", "evaluate"),
    "predict": ("predict", "predict"),
    "plot": ("plot", "plot"),
    "export": ("export", "export"),
    "gradcheck": ("gradcheck", "gradcheck"),
    "summary": ("summary", "summary"),
    "lr-find": ("lr_find", "lr_find"),
    "explain": ("explain", "explain"),
    "sweep": ("sweep", "sweep"),
    "serve": ("serve", "serve"),
}


class Group(click.Group):
    """Finds the commands of COMMAND_MODULES, and turns the library's errors into click's
    `Error: ...` line and exit code 1, naming flags."""

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *COMMAND_MODULES])

    def get_command(self, ctx, name):
        if name in COMMAND_MODULES:
            from importlib import import_module

            module, function = COMMAND_MODULES[name]
            return getattr(import_module(f"cnnfruit.cli.{module}"), function)
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


if __name__ == "__main__":
    sys.exit(main())
