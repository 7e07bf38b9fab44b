"""The `cnnfruit` command line: the group, the options the commands share, one module per command,
the terminal's output and the handling of Ctrl-C. Only this folder imports click and rich.
"""
from cnnfruit.cli.group import main

__all__ = ["main"]
