"""Each command's -h speaks of its own flags only: a flag that commands share is described as it
works in each (lr-find has no --resume, so its --epochs does not mention one)."""
import re

import click
import pytest

from cnnfruit.cli import main
from cnnfruit.cli.group import COMMAND_MODULES
from helpers import cli


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_help_names_only_flags_the_command_has(name):
    result = cli(name, "-h")
    assert result.exit_code == 0, result.output
    command = main.get_command(click.Context(main), name)
    shown = {opt for param in command.params if not getattr(param, "hidden", False) for opt in param.opts}
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", result.output)) - {"--help"}
    assert mentioned <= shown, f"{name} -h mentions {sorted(mentioned - shown)}"


def test_lr_find_accepts_train_s_run_length_flags_and_says_it_does_not_use_them(tmp_path, image_folder):
    help_text = cli("lr-find", "-h").output
    for absent in ("--resume", "--epochs", "--lr ", "--patience", "--lr-schedule"):
        assert absent not in help_text
    result = cli("lr-find", "--data", image_folder, "--kernels", 2, "--kernel-size", 5, "--hidden", 6, "--epochs", 8,
                 "--lr-schedule", "cosine", "--steps", 6, "--probe", 2, "-o", tmp_path / "lr.png")
    assert result.exit_code == 0, result.output
    assert "Ignoring --epochs 8: lr-find trains --steps steps" in result.stderr
    assert "Ignoring --lr-schedule cosine: the sweep sets the learning rate" in result.stderr
