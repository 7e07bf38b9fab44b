"""history.csv beside history.json, and TensorBoard event files through fit's on_epoch."""
import csv
import json
import os
import struct
import sys

import pytest

from cnnfruit import TrainConfig, fit
from cnnfruit.history import EpochRecord, History
from cnnfruit.training.logs import history_csv

from helpers import TINY, TINY_SETTINGS, cli


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_history_csv_is_written_at_every_epoch_and_matches_the_json(tmp_path, synthetic_dataset):
    from cnnfruit import Run

    out = tmp_path / "run"
    rows_seen = []
    run = Run.start(synthetic_dataset, TrainConfig(epochs=3, lr=1e-5, **TINY_SETTINGS), out=str(out))

    def on_epoch(record):
        run.run_folder.flush()  # saves are written by a background thread; wait for the ones queued so far
        rows_seen.append(len(read_csv(out / "history.csv")))

    result = run.fit(on_epoch=on_epoch)
    # on_epoch runs before the epoch is saved: the file then holds the epochs before it
    assert rows_seen == [0, 1, 2]
    rows = read_csv(result.history_csv_path)
    epochs = json.loads((out / "history.json").read_text())["epochs"]
    assert len(rows) == len(epochs) == 3
    for row, epoch in zip(rows, epochs):
        assert {name: float(value) for name, value in row.items()} == pytest.approx(epoch, rel=0, abs=0)
    assert not [name for name in os.listdir(out) if name.startswith(".tmp")]


def test_unknown_values_are_empty_cells():
    history = History(epochs=[EpochRecord(epoch=1, train_loss=0.5, train_accuracy=0.75, seconds=1.5)])
    assert history_csv(history) == ("epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,lr\n"
                                    "1,0.5,0.75,,,1.5,\n")


# ---- TensorBoard: event files are TFRecords of Event protobufs; read them back with tensorboardX's own classes


def scalars(folder):
    """{tag: [(step, value), ...]} of every event file in folder."""
    from tensorboardX.proto import event_pb2

    found = {}
    for name in sorted(os.listdir(folder)):
        data = (folder / name).read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4  # length, its CRC, the record, its CRC
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_tensorboard_log_holds_every_epoch(tmp_path, synthetic_dataset):
    pytest.importorskip("tensorboardX")
    from cnnfruit.training.logs import TensorBoardLog

    with TensorBoardLog(str(tmp_path / "tb")) as log:
        result = fit(synthetic_dataset, TrainConfig(epochs=3, lr=1e-5, **TINY_SETTINGS), on_epoch=log)
        log.finish(result.history)
    train, validation, test = (scalars(tmp_path / "tb" / run) for run in ("train", "validation", "test"))
    epochs = result.history.epochs
    assert train["loss"] == [(e.epoch, pytest.approx(e.train_loss, rel=1e-6)) for e in epochs]
    assert train["learning_rate"] == [(e.epoch, pytest.approx(1e-5)) for e in epochs]
    assert validation["accuracy"] == [(e.epoch, pytest.approx(e.val_accuracy, rel=1e-6)) for e in epochs]
    assert test["accuracy"] == [(3, pytest.approx(result.test_accuracy, rel=1e-6))]


def test_train_tensorboard_flag(tmp_path, image_folder):
    pytest.importorskip("tensorboardX")
    result = cli("train", "--data", image_folder, *TINY, "--epochs", 2, "--out", tmp_path / "run",
                 "--tensorboard", tmp_path / "tb")
    assert result.exit_code == 0, result.output
    assert [step for step, _ in scalars(tmp_path / "tb" / "validation")["loss"]] == [1, 2]
    assert f"and {tmp_path / 'run' / 'history.csv'}" in result.output


def test_without_tensorboardx_the_flag_is_one_clean_error(tmp_path, image_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import tensorboardX now raises ImportError
    result = cli("train", "--data", image_folder, *TINY, "--out", tmp_path / "run", "--tensorboard", tmp_path / "tb")
    assert result.exit_code == 1
    assert result.output.startswith("Error: TensorBoard logs need the tensorboardX package")
