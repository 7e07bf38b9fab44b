"""Stopping and resuming: a resumed run ends bit for bit where an unbroken run ends."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnfruit import checkpoint
from cnnfruit.cli import train as cli_module
from cnnfruit.data.datasets import read_image_folder
from cnnfruit.config import TrainConfig
from cnnfruit.training.loop import TrainingLoop

from helpers import TINY, assert_same_model, cli, saved_arrays, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_one_epoch_then_resume_to_two_equals_two_straight(tmp_path, image_folder):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 2, "--out", straight).exit_code == 0
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", split).exit_code == 0
    result = cli("train", "--resume", split / "model.npz", "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"Resuming {split / 'model.npz'} after epoch 1, to 2 epochs"
    assert_same_model(straight / "model.npz", split / "model.npz")
    assert (split / "history.json").read_text().count('"epoch":') == 2


def test_a_stopped_epoch_resumes_from_its_next_step_bit_for_bit(tmp_path, image_folder):
    dataset = read_image_folder(str(image_folder))
    config = tiny_config(epochs=2, batch_size=2, lr=1e-5)
    straight = TrainingLoop.start(dataset, config)
    while straight.epoch < 2:
        straight.run_epoch()

    stopped = TrainingLoop.start(dataset, config)
    stopped.run_epoch()

    def stop_after_three(done, total):  # what the Ctrl-C handler does, at a step of our choosing
        if done == 3:
            stopped.stop.set()

    assert stopped.run_epoch(stop_after_three) is None
    assert stopped.partial["step"] == 3 and stopped.epoch == 1
    path = str(tmp_path / "model.npz")
    checkpoint.save(path, stopped.checkpoint())
    saved = checkpoint.load(path)
    assert saved.interrupted and saved.epoch == 1

    resumed = TrainingLoop.resume(dataset, TrainConfig.from_dict(saved.config), saved)
    record = resumed.run_epoch()
    assert record.epoch == 2
    stopped.stop.clear()
    assert stopped.run_epoch().epoch == 2  # or carry on in the same process
    for loop in (resumed, stopped):
        for name, value in straight.network.params.items():
            assert np.array_equal(value, loop.network.params[name]), name
        assert loop.history.epochs[1].train_loss == straight.history.epochs[1].train_loss
        assert loop.shuffle_rng.bit_generator.state == straight.shuffle_rng.bit_generator.state


def sigterm_after(step, monkeypatch):
    """Make the CLI's progress callback send this process SIGTERM after `step` steps."""

    def on_step(self, epoch, done, total):
        if epoch == 1 and done == step:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cli_module.EpochProgress, "step", on_step)


def test_sigterm_saves_mid_epoch_and_the_printed_command_resumes(tmp_path, image_folder, monkeypatch):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 2, "--out", straight).exit_code == 0
    sigterm_after(5, monkeypatch)
    result = cli("train", "--data", image_folder, *TINY, "--epochs", 2, "--out", stopped)
    assert result.exit_code == 130
    model = stopped / "model.npz"
    assert result.output.splitlines()[-2:] == [
        f"Interrupted by SIGTERM: saved epoch 1 up to step 5 of 17 to {model}",
        f"Resume with: cnnfruit train --resume {model}",
    ]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
    monkeypatch.undo()
    resumed = cli("train", "--resume", model)
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.splitlines()[0] == f"Resuming {model} in epoch 1 after step 5 of 17, to 2 epochs"
    assert_same_model(straight / "model.npz", model)


def test_sigint_mid_epoch_in_a_real_process_then_resume(tmp_path, make_image_folder):
    """The real thing: `python -m cnnfruit train`, Ctrl-C once it is training, then --resume."""
    data = make_image_folder(tmp_path / "data", train=40)  # 84 steps an epoch
    out = tmp_path / "run"
    args = [sys.executable, "-m", "cnnfruit", "train", "--data", data, *TINY, "--epochs", 2, "--out", out]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([str(a) for a in args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Network:"):  # the handler is in place, no step has run yet
            process.send_signal(signal.SIGINT)
            break
    lines += process.stdout.read().splitlines()
    assert process.wait(timeout=300) == 130, lines
    model = out / "model.npz"
    assert re.fullmatch(rf"Interrupted by SIGINT: saved epoch 1 up to step \d+ of 84 to {re.escape(str(model))}",
                        lines[-2]), lines
    assert lines[-1] == f"Resume with: cnnfruit train --resume {model}"
    assert checkpoint.load(str(model)).interrupted

    resumed = subprocess.run([sys.executable, "-m", "cnnfruit", *shlex.split(lines[-1])[3:]], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "Epoch: 2 |" in resumed.stdout

    dataset = read_image_folder(str(data))
    reference = TrainingLoop.start(dataset, tiny_config(epochs=2))
    reference.run_epoch()
    reference.run_epoch()
    saved = saved_arrays(model)
    for name, value in reference.network.params.items():
        assert np.array_equal(saved[f"param_{name}"], value), name


def test_resume_refuses_a_flag_that_conflicts_with_the_checkpoint(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    model = out / "model.npz"
    result = cli("train", "--resume", model, "--epochs", 2, "--lr", "0.1")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: --lr 0.1 conflicts with {model}, trained with --lr 1e-06; a resumed run keeps its "
        "checkpoint's settings, so leave out --lr (or start a new run)\n"
    )
    result = cli("train", "--resume", model, "--epochs", 2, "--hidden", "9")
    assert result.output.startswith("Error: --hidden 9 conflicts with")
    result = cli("train", "--resume", model, "--epochs", 2, "--hidden", "6", "--lr", "1e-6", "-q")
    assert result.exit_code == 0, result.output  # repeating the checkpoint's own settings is fine


def test_resume_needs_more_epochs_than_done(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    model = out / "model.npz"
    result = cli("train", "--resume", model)
    assert result.exit_code == 1
    assert result.output == f"Error: {model} has already completed its 1 epochs; pass --epochs N with N > 1 to train on\n"
    result = cli("train", "--resume", model, "--epochs", 1)
    assert result.output == f"Error: --epochs 1: {model} has already completed 1 epochs; give a larger total\n"


def test_resume_refuses_different_data(tmp_path, image_folder, make_image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    other = make_image_folder(tmp_path / "other", seed=1)
    result = cli("train", "--resume", out / "model.npz", "--epochs", 2, "--data", other)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: the images in {other} differ from those {out / 'model.npz'} was trained on; resuming needs the same data\n"
    )


@pytest.mark.parametrize("stop_after", [0, 1])
def test_a_diverged_run_keeps_its_last_good_checkpoint(tmp_path, image_folder, monkeypatch, stop_after):
    """A weight that turns infinite in epoch stop_after + 1 stops the run; epoch stop_after stays saved."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    if stop_after:
        assert cli("train", "--data", image_folder, *TINY, "--epochs", stop_after, "--out", good).exit_code == 0
    run_epoch = TrainingLoop.run_epoch

    def poisoned(self, on_step=None):
        if self.epoch == stop_after:
            self.network.params["dense0_w"][0, 0] = np.inf
        return run_epoch(self, on_step)

    monkeypatch.setattr(TrainingLoop, "run_epoch", poisoned)
    result = cli("train", "--data", image_folder, *TINY, "--epochs", 3, "--out", bad)
    assert result.exit_code == 1
    kept = "the initial weights" if stop_after == 0 else f"the end of epoch {stop_after}"
    assert result.output.splitlines()[-1] == (
        f"Error: training diverged at epoch {stop_after + 1}, step 1: the loss is not finite; try a smaller "
        f"learning rate than --lr 1e-06, e.g. --lr 1e-07. The last good checkpoint, {kept}, is {bad / 'model.npz'}"
    )
    saved = checkpoint.load(str(bad / "model.npz"))
    assert saved.epoch == stop_after and all(np.isfinite(p).all() for p in saved.params.values())
    if stop_after:
        assert np.array_equal(saved.params["dense0_w"], checkpoint.load(str(good / "model.npz")).params["dense0_w"])


def test_a_huge_learning_rate_diverges_with_a_clean_error(tmp_path, image_folder):
    result = cli("train", "--data", image_folder, *TINY, "--epochs", 2, "--lr", "1e20", "--out", tmp_path)
    assert result.exit_code == 1
    assert re.fullmatch(
        r"Error: training diverged at epoch 1, step \d+: the (loss|weight \w+) is not finite; try a smaller learning "
        r"rate than "
        rf"--lr 1e\+20, e\.g\. --lr 1e\+19\. The last good checkpoint, the initial weights, is {re.escape(str(tmp_path))}/model\.npz",
        result.output.splitlines()[-1],
    ), result.output


def test_non_finite_weights_at_the_end_of_an_epoch_stop_training(image_folder):
    dataset = read_image_folder(str(image_folder))
    loop = TrainingLoop.start(dataset, tiny_config(epochs=1))

    def on_step(done, total):
        if done == total:  # after the last update: no loss is computed with these weights any more
            loop.network.params["conv_b"][1] = np.nan

    with pytest.raises(Exception, match=r"^training diverged at epoch 1, step 17: the weight conv_b is not finite"):
        loop.run_epoch(on_step)


def test_a_second_signal_stops_at_once_and_handlers_are_restored():
    from cnnfruit.interrupt import StopOnSignal

    requests = []
    # What was there before: Python's default_int_handler, or SIG_IGN in a process started in the
    # background by a shell without job control (nohup, `cmd &` in a script), which Python keeps.
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with StopOnSignal(requests.append) as stopper:
            os.kill(os.getpid(), signal.SIGINT)
            assert requests == [signal.SIGINT] and stopper.received == signal.SIGINT
            os.kill(os.getpid(), signal.SIGTERM)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_resume_writes_to_another_folder_and_reports_a_vanished_data_folder(tmp_path, make_image_folder):
    data = make_image_folder(tmp_path / "data")
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli("train", "--data", data, *TINY, "--epochs", 1, "--out", first).exit_code == 0
    result = cli("train", "--resume", first / "model.npz", "--epochs", 2, "--out", second)
    assert result.exit_code == 0, result.output
    assert checkpoint.load(str(second / "model.npz")).epoch == 2
    assert checkpoint.load(str(first / "model.npz")).epoch == 1  # the checkpoint resumed from is left alone
    data.rename(tmp_path / "moved")
    result = cli("train", "--resume", first / "model.npz", "--epochs", 2)
    assert result.exit_code == 1
    assert result.output == f"Error: the data folder {data} that {first / 'model.npz'} was trained on is gone; pass --data\n"
    result = cli("train", "--resume", first / "model.npz", "--epochs", 2, "--data", tmp_path / "moved")
    assert result.exit_code == 0, result.output


def test_resume_needs_the_training_state(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    arrays = saved_arrays(out / "model.npz")
    arrays["train_rng_state"] = np.array("{}")  # as Classifier.save writes it
    np.savez(tmp_path / "weights-only.npz", **arrays)
    result = cli("train", "--resume", tmp_path / "weights-only.npz", "--epochs", 2)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tmp_path / 'weights-only.npz'} holds a model but not the training state needed to resume\n"
    )


@pytest.mark.parametrize("partial, problem", [
    ('{"step": 3}', "checkpoint {path} cannot be used: train_partial must be null or step, loss_sum, correct, "
                    "seconds with numbers"),  # checkpoint.load checks what it can alone
    ('{"step": 99, "correct": 1, "loss_sum": 2.0, "seconds": 0.1}',
     "{path}: cannot resume: the checkpoint's interrupted epoch does not fit its data and batch size"),
])
def test_resume_checks_the_interrupted_epoch(tmp_path, image_folder, partial, problem):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    arrays = saved_arrays(out / "model.npz")
    arrays["train_partial"] = np.array(partial)
    config = json.loads(str(arrays["train_config"]))
    arrays["train_config"] = np.array(json.dumps({**config, "epochs": 3}))  # an interrupted epoch 2 of 3
    np.savez(tmp_path / "odd.npz", **arrays)
    result = cli("train", "--resume", tmp_path / "odd.npz")
    assert result.exit_code == 1
    assert result.output == f"Error: {problem.format(path=tmp_path / 'odd.npz')}\n"


def test_ctrl_c_while_loading_exits_130_and_saves_nothing(tmp_path, image_folder, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    from cnnfruit.data.sources import DataSource

    monkeypatch.setattr(DataSource, "load", interrupted)
    result = cli("train", "--data", image_folder, *TINY, "--out", tmp_path / "run")
    assert result.exit_code == 130
    assert result.output == "Interrupted by SIGINT before training started; nothing was saved\n"
    assert not (tmp_path / "run").exists()
