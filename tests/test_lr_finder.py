"""The learning-rate finder: the run's own start, an exponential sweep, a stop on divergence, a suggestion."""
import json

import numpy as np
import pytest

from cnnfruit import TrainConfig
from cnnfruit.training.lr_finder import LrSweep, find_lr, lr_schedule, smooth, suggest
from cnnfruit.training.loop import TrainingLoop

from helpers import TINY, TINY_SETTINGS, cli

TINY = [flag for flag in TINY if flag != "-q"]  # lr-find shows no progress bar

SETTINGS = {**TINY_SETTINGS, "normalize": "scale", "batch_size": 4, "val_fraction": 0.25}


def test_the_schedule_is_geometric():
    lrs = lr_schedule(1e-6, 1e-2, 5)
    assert lrs[0] == 1e-6 and lrs[-1] == pytest.approx(1e-2)
    assert np.allclose(lrs[1:] / lrs[:-1], 10.0)


def test_the_sweep_starts_from_the_runs_own_weights_and_order(synthetic_dataset):
    config = TrainConfig(seed=4, **SETTINGS)
    sweep = find_lr(synthetic_dataset, config, start=1e-4, end=1.0, steps=12, probe=6)
    loop = TrainingLoop.start(synthetic_dataset, TrainConfig(seed=4, lr=1e-4, **SETTINGS))
    first = []
    loop.run_epoch(lambda done, total: first.append(float(loop.network.losses.mean())))
    assert sweep.train_losses[0] == first[0]  # the first step's batch, from the same weights
    again = find_lr(synthetic_dataset, config, start=1e-4, end=1.0, steps=12, probe=6)
    assert np.array_equal(sweep.losses, again.losses)  # a seed makes the sweep repeatable
    assert sweep.probe == 6 and len(sweep.lrs) == len(sweep.losses) == len(sweep.smoothed)
    assert np.all(np.diff(sweep.lrs) > 0) and sweep.lrs[0] == 1e-4


def test_a_diverging_sweep_stops_before_its_last_step(synthetic_dataset):
    raw = {**SETTINGS, "normalize": "none"}  # 0..255 pixels: large learning rates blow up at once
    sweep = find_lr(synthetic_dataset, TrainConfig(**raw), start=1e-7, end=1e3, steps=60, probe=6)
    assert len(sweep.lrs) < 60
    assert "diverged" in sweep.stopped or "finite" in sweep.stopped
    assert np.isfinite(sweep.losses).all()


def test_the_suggestion_is_read_off_the_curve():
    lrs = lr_schedule(1e-6, 1.0, 61)
    decades = np.log10(lrs)
    losses = 1.0 + (decades + 2) ** 2 - 5 * np.tanh(decades + 4)  # falls fastest near 1e-4, lowest near 1e-2
    sweep = LrSweep(lrs, losses, smooth(losses), 1e-6, 1.0, 61, "the end of the range", TrainConfig())
    s = suggest(sweep)
    assert s.minimum == lrs[np.argmin(sweep.smoothed)] and 1e-3 < s.minimum < 1e-1
    assert s.high == pytest.approx(s.minimum / 10)
    assert s.low <= s.high and 1e-5 < s.steepest < 1e-3
    assert any("falls fastest" in reason for reason in s.reasons)


def test_smoothing_keeps_a_straight_line_and_has_no_lag():
    line = np.arange(50, dtype=float)
    assert np.allclose(smooth(line)[5:-5], line[5:-5])


def test_bad_ranges_are_setting_errors(synthetic_dataset):
    result = cli("lr-find", "--start", 1e-2, "--end", 1e-3, *TINY)
    assert result.exit_code == 1 and "Error: the learning-rate range needs 0 < --start < --end" in result.output


def test_the_command_draws_the_curve_and_explains(tmp_path, image_folder):
    picture = tmp_path / "lr.png"
    result = cli("lr-find", "--data", image_folder, *TINY, "--normalize", "scale", "--batch-size", 4,
                 "--steps", 10, "--start", 1e-4, "--end", 1, "--probe", 4, "-o", picture, "--lr", 0.1)
    assert result.exit_code == 0, result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Ignoring --lr 0.1: the sweep sets the learning rate" in result.output
    assert result.output.splitlines()[1].startswith("Suggested learning rate: ")
    as_json = cli("lr-find", "--data", image_folder, *TINY, "--normalize", "scale", "--batch-size", 4,
                  "--steps", 10, "--start", 1e-4, "--end", 1, "--probe", 4, "-o", picture, "--json")
    sweep = json.loads(as_json.output)
    assert sweep["probe_images"] == 4 and sweep["suggestion"]["low"] <= sweep["suggestion"]["high"]


def test_a_learning_rate_schedule_does_not_override_the_sweep(synthetic_dataset):
    plain = find_lr(synthetic_dataset, TrainConfig(**SETTINGS), start=1e-4, end=1.0, steps=12, probe=6)
    scheduled = find_lr(synthetic_dataset, TrainConfig(**SETTINGS, lr_schedule="onecycle"), start=1e-4, end=1.0,
                        steps=12, probe=6)
    assert np.array_equal(plain.losses, scheduled.losses)
