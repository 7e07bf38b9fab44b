"""Learning-rate schedules: their curves, and runs resumed mid-schedule that end bit for bit as
unbroken ones, for every schedule, with and without dropout, class weights and label smoothing."""
import math
import threading

import numpy as np
import pytest

import cnnfruit
from cnnfruit import checkpoint
from cnnfruit.config import LR_SCHEDULES
from cnnfruit.data.datasets import Dataset, Split
from cnnfruit.nn.schedules import ONECYCLE_END, ONECYCLE_START, SCHEDULES, make_schedule

from helpers import TINY, TINY_SETTINGS, assert_same_model, cli, saved_arrays


def config(**overrides):
    return cnnfruit.TrainConfig(**{**TINY_SETTINGS, "epochs": 4, "batch_size": 4, "lr": 1e-3,
                                   "normalize": "scale", **overrides})


def curve(schedule_config, steps_per_epoch):
    schedule = make_schedule(schedule_config, steps_per_epoch)
    return np.array([schedule.lr(t) for t in range(schedule.total_steps)])


# ---- the curves


def test_every_setting_choice_has_a_schedule():
    assert tuple(SCHEDULES) == LR_SCHEDULES


def test_constant_never_moves_and_is_never_set():
    schedule = make_schedule(config(), 5)
    assert not schedule.varies and {schedule.lr(t) for t in range(20)} == {1e-3}


def test_step_multiplies_by_the_factor_every_few_epochs():
    lrs = curve(config(lr_schedule="step", epochs=7, lr_step_epochs=3, lr_factor=0.5), 10)
    per_epoch = lrs.reshape(7, 10)
    assert (per_epoch == per_epoch[:, :1]).all()  # it moves between epochs only
    assert per_epoch[:, 0].tolist() == [1e-3] * 3 + [5e-4] * 3 + [2.5e-4]


def test_cosine_falls_smoothly_from_lr_to_zero_at_every_step():
    lrs = curve(config(lr_schedule="cosine", epochs=8), 33)
    assert lrs[0] == 1e-3 and (np.diff(lrs) < 0).all()
    assert lrs[len(lrs) // 2] == pytest.approx(5e-4)
    assert 0 < lrs[-1] < 1e-7


def test_onecycle_warms_up_over_its_share_then_anneals():
    lrs = curve(config(lr_schedule="onecycle", epochs=10, lr_warmup=0.3), 10)  # 100 steps, 30 of warm-up
    assert lrs[0] == pytest.approx(1e-3 * ONECYCLE_START)
    assert (np.diff(lrs[:31]) > 0).all() and (np.diff(lrs[30:]) < 0).all()
    assert lrs.argmax() == 30 and lrs[30] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-3 * ONECYCLE_END, rel=1e-2)
    no_warmup = curve(config(lr_schedule="onecycle", epochs=10, lr_warmup=0), 10)
    assert no_warmup[0] == 1e-3 and (np.diff(no_warmup) < 0).all()


def test_plateau_reduces_after_more_than_patience_epochs_without_a_new_lowest_loss():
    schedule = make_schedule(config(lr_schedule="plateau", lr_patience=1, lr_factor=0.5), 5)
    scales = []
    for loss in (1.0, 0.9, 0.95, 0.96, 0.8, math.nan, 0.85, 0.7):
        schedule.end_epoch(loss)
        scales.append(schedule.scale)
    assert scales == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert schedule.lr(0) == 2.5e-4 and schedule.best == 0.7
    again = make_schedule(config(lr_schedule="plateau", lr_patience=1, lr_factor=0.5), 5)
    again.load_state(schedule.state)
    assert again.state == schedule.state and again.lr(99) == schedule.lr(99)


@pytest.mark.parametrize("state", [{"name": "cosine"}, {"name": "plateau", "scale": 2.0, "best": None, "bad_epochs": 0},
                                   {"name": "plateau", "scale": 0.5, "best": "low", "bad_epochs": 0}, None])
def test_a_schedule_refuses_a_state_that_is_not_its_own(state):
    with pytest.raises(ValueError):
        make_schedule(config(lr_schedule="plateau"), 5).load_state(state)


def test_settings_of_the_schedules_are_checked():
    with pytest.raises(cnnfruit.SettingError, match="^lr_schedule plateau watches the validation loss: give a "
                                                    "val_fraction above 0$"):
        config(lr_schedule="plateau", val_fraction=0)
    with pytest.raises(cnnfruit.SettingError, match=r"^lr_factor must be between 0 and 1 \(both excluded\), got 1.0$"):
        config(lr_factor=1)
    with pytest.raises(cnnfruit.SettingError, match="^lr_schedule must be one of constant, step, cosine, onecycle, "
                                                    "plateau, got 'linear'$"):
        config(lr_schedule="linear")


# ---- resumed mid-schedule = unbroken


def noisy_dataset(seed=0):
    """Random pictures with random labels: validation loss soon stops improving, so plateau acts."""
    rng = np.random.default_rng(seed)

    def split(n):
        return Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, n).astype(np.int64), [])

    return Dataset("noise", ["a", "b", "c"], split(28), split(6))


# Every training option at once (dropout, class weights, label smoothing, Adam), beside each schedule alone.
EXTRAS = {"plain": {}, "all": {"dropout": 0.3, "class_weights": "auto", "label_smoothing": 0.1, "optimizer": "adam"}}
SCHEDULE_SETTINGS = {"lr_step_epochs": 1, "lr_factor": 0.5, "lr_patience": 0, "lr_warmup": 0.3}


def stopper(when, steps):
    """An on_step callback and a stop event: stop mid-epoch 2 (after step 3) or at the end of epoch 3."""
    stop, calls = threading.Event(), []
    target = steps + 3 if when == "mid-epoch" else 3 * steps

    def on_step(done, total):
        calls.append(done)
        if len(calls) == target:
            stop.set()

    return stop, on_step


@pytest.mark.parametrize("when, extras", [("mid-epoch", "plain"), ("between epochs", "plain"), ("mid-epoch", "all")])
@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_a_run_stopped_mid_schedule_resumes_bit_for_bit(tmp_path, schedule, when, extras):
    data = noisy_dataset()
    settings = config(lr_schedule=schedule, **SCHEDULE_SETTINGS, **EXTRAS[extras])
    straight = cnnfruit.fit(data, settings)
    lrs = [e.lr for e in straight.history.epochs]
    if schedule == "constant":
        assert lrs == [1e-3] * 4
    else:
        assert len(set(lrs)) > 1, lrs  # the schedule did move within these 4 epochs
    steps = -(-round(28 * 0.7) // 4)
    stop, on_step = stopper(when, steps)
    stopped = cnnfruit.fit(data, settings, out=tmp_path / "run", stop=stop, on_step=on_step)
    assert stopped.interrupted
    assert stopped.saved_at == ("epoch 2 up to step 3 of 5" if when == "mid-epoch" else "the end of epoch 3")
    assert checkpoint.load(stopped.model_path).schedule["name"] == schedule
    resumed = cnnfruit.resume(stopped.model_path, data=data)
    assert resumed.stopped == "finished"
    for name, value in straight.classifier.params.items():
        assert np.array_equal(value, resumed.classifier.params[name]), name
    assert [e.lr for e in resumed.history.epochs] == lrs
    assert [e.train_loss for e in resumed.history.epochs] == [e.train_loss for e in straight.history.epochs]


def test_the_checkpoint_keeps_the_plateau_state(tmp_path):
    data = noisy_dataset()
    result = cnnfruit.fit(data, config(lr_schedule="plateau", lr_patience=0, lr_factor=0.5), out=tmp_path / "run")
    saved = checkpoint.load(result.model_path).schedule
    assert saved["name"] == "plateau" and saved["scale"] < 1 and saved["best"] == result.history.best_val_loss


def test_resuming_to_more_epochs_plans_cosine_for_the_new_total(tmp_path, synthetic_dataset):
    first = cnnfruit.fit(synthetic_dataset, config(lr_schedule="cosine", epochs=2), out=tmp_path / "run")
    longer = cnnfruit.resume(first.model_path, epochs=4, data=synthetic_dataset)
    steps = -(-round(24 * 0.7) // 4)
    two, four = make_schedule(config(lr_schedule="cosine", epochs=2), steps), make_schedule(config(
        lr_schedule="cosine", epochs=4), steps)
    # the first two epochs ran on the 2-epoch curve; the next two follow the curve of a 4-epoch run
    assert [e.lr for e in longer.history.epochs] == [two.lr(0), two.lr(steps), four.lr(2 * steps), four.lr(3 * steps)]
    # so the rate rises again after the 2-epoch run's last step: the documented price of a longer total
    assert four.lr(2 * steps) > 10 * two.lr(2 * steps - 1)


def test_the_cli_says_when_a_resume_plans_the_curve_anew(tmp_path, image_folder):
    out = tmp_path / "run"
    flags = [*TINY, "--lr", "1e-4", "--normalize", "scale", "--out", out]
    assert cli("train", "--data", image_folder, *flags, "--epochs", 1, "--lr-schedule", "cosine").exit_code == 0
    result = cli("train", "--resume", out / "model.npz", "--epochs", 2)
    assert result.output.splitlines()[1] == ("Note: the cosine schedule is planned anew for 2 epochs: the next step's "
                                             "learning rate is 5e-05 (on the 1-epoch plan: 0)")


def test_a_checkpoint_without_the_state_of_its_schedule_is_refused(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--lr-schedule", "plateau",
               "--out", out).exit_code == 0
    arrays = saved_arrays(out / "model.npz")
    del arrays["train_schedule"]
    np.savez(tmp_path / "old.npz", **arrays)
    result = cli("train", "--resume", tmp_path / "old.npz", "--epochs", 2)
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'old.npz'}: cannot resume: the checkpoint lacks the state of its "
                             "learning-rate schedule\n")


def test_the_cli_resumes_a_run_stopped_by_sigterm_with_every_option(tmp_path, image_folder, monkeypatch):
    import os
    import signal

    from cnnfruit.cli import train as cli_module

    flags = [*TINY, "--epochs", 3, "--batch-size", 2, "--lr", "1e-4", "--normalize", "scale", "--lr-schedule",
             "onecycle", "--dropout", "0.5", "--class-weights", "1,2,0.5", "--label-smoothing", "0.1"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    result = cli("train", "--data", image_folder, *flags, "--out", straight)
    assert result.exit_code == 0, result.output
    assert "Class weights (1.0,2.0,0.5): apple 1, kiwi 2, plum 0.5" in result.output
    assert result.output.splitlines()[3].endswith(" | LR 4e-06")  # epoch 1 starts at lr / 25

    def on_step(self, epoch, done, total):
        if epoch == 2 and done == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cli_module.EpochProgress, "step", on_step)
    assert cli("train", "--data", image_folder, *flags, "--out", stopped).exit_code == 130
    monkeypatch.undo()
    resumed = cli("train", "--resume", stopped / "model.npz")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.splitlines()[0] == f"Resuming {stopped / 'model.npz'} in epoch 2 after step 4 of 9, to 3 epochs"
    assert_same_model(straight / "model.npz", stopped / "model.npz")


def test_a_checkpoint_from_before_schedules_resumes_at_its_constant_rate(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    arrays = saved_arrays(out / "model.npz")
    del arrays["train_schedule"]
    np.savez(tmp_path / "old.npz", **arrays)
    result = cli("train", "--resume", tmp_path / "old.npz", "--epochs", 2)
    assert result.exit_code == 0, result.output


def test_a_damaged_schedule_state_is_refused_on_load(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--lr-schedule", "plateau",
               "--out", out).exit_code == 0
    arrays = saved_arrays(out / "model.npz")
    arrays["train_schedule"] = np.array('{"name": "plateau", "scale": 5, "best": null, "bad_epochs": 0}')
    np.savez(tmp_path / "odd.npz", **arrays)
    with pytest.raises(cnnfruit.CnnfruitError, match=r"cannot be used: train_schedule: the saved plateau schedule "
                                                      r"needs a scale in \(0, 1\]"):
        checkpoint.load(str(tmp_path / "odd.npz"))
