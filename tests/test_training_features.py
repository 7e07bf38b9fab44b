"""The training options end to end (schedules, class weights, dropout, label smoothing): balanced
accuracy, the lr panel, the flags, and training with every option bit-identical on one thread or two."""
import json

import numpy as np
import pytest

import cnnfruit
from cnnfruit.config import TrainConfig
from cnnfruit.inference.metrics import balanced_accuracy, classification_report, confusion_matrix
from cnnfruit.training.loop import TrainingLoop, class_weights_for

from helpers import TINY, assert_same_model, cli
from test_determinism import train_in_process


# ---- class weights


def test_auto_class_weights_are_inverse_frequency_averaging_one_per_image():
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    weights = class_weights_for(TrainConfig(class_weights="auto"), labels, ["a", "b", "c"])
    np.testing.assert_allclose(weights, [9 / (3 * 6), 9 / (3 * 2), 9 / (3 * 1)])
    assert weights[labels].mean() == pytest.approx(1)
    balanced = class_weights_for(TrainConfig(class_weights="auto"), np.array([0, 1, 2, 0, 1, 2]), ["a", "b", "c"])
    assert balanced.tolist() == [1, 1, 1]
    assert class_weights_for(TrainConfig(), labels, ["a", "b", "c"]) is None
    assert class_weights_for(TrainConfig(class_weights="1, 2,3.5"), labels, ["a", "b", "c"]).tolist() == [1, 2, 3.5]


def test_class_weights_must_fit_the_classes(synthetic_dataset):
    with pytest.raises(cnnfruit.SettingError, match=r"^class_weights gives 2 weights for 3 classes \(a, b, c\)$"):
        TrainingLoop.start(synthetic_dataset, TrainConfig(class_weights="1,2"))
    labels = np.array([0, 0, 2])
    with pytest.raises(cnnfruit.SettingError, match="^class_weights auto needs training images of every class; the "
                                                    "training split has none of b$"):
        class_weights_for(TrainConfig(class_weights="auto"), labels, ["a", "b", "c"])


@pytest.mark.parametrize("value, message", [
    ("heavy", "Error: --class-weights must be none, auto or one positive number per class, comma-separated "
              "(e.g. 1,2.5,1), got 'heavy'"),
    ("1,0,1", "Error: --class-weights must all be positive numbers, got 1.0,0.0,1.0"),
])
def test_bad_class_weights_are_one_clean_line(value, message, image_folder):
    result = cli("train", "--data", image_folder, *TINY, "--class-weights", value)
    assert result.exit_code == 1
    assert result.output == message + "\n"


@pytest.mark.parametrize("flag, value, message", [
    ("--dropout", "1", "--dropout must be in [0, 1), got 1.0"),
    ("--label-smoothing", "-0.1", "--label-smoothing must be in [0, 1), got -0.1"),
    ("--lr-schedule", "linear", "Invalid value for '--lr-schedule'"),
])
def test_bad_regularisation_settings_are_refused(flag, value, message, image_folder):
    result = cli("train", "--data", image_folder, *TINY, flag, value)
    assert result.exit_code != 0 and message in result.output


def test_weights_count_images_of_a_class_more_in_the_training_loss(synthetic_dataset):
    """The training loss is the weighted one; a class weighted 3 raises the epoch's loss sum."""
    base = {"kernels": 2, "kernel_size": 5, "hidden": (6,), "epochs": 1, "normalize": "scale", "lr": 1e-9}
    plain = cnnfruit.fit(synthetic_dataset, TrainConfig(**base)).history.epochs[0]
    weighted = cnnfruit.fit(synthetic_dataset, TrainConfig(**base, class_weights="3,3,3")).history.epochs[0]
    assert weighted.train_loss == pytest.approx(3 * plain.train_loss, rel=1e-4)
    assert weighted.val_loss == pytest.approx(plain.val_loss, rel=1e-4)  # validation stays plain cross-entropy


# ---- balanced accuracy


def test_balanced_accuracy_is_the_mean_recall_over_present_classes():
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    always_zero = np.zeros(10, np.int64)
    report = classification_report(labels, always_zero, ["common", "rare", "absent"])
    assert report["accuracy"] == 0.8 and report["balanced_accuracy"] == 0.5
    assert balanced_accuracy(confusion_matrix(labels, labels, 3)) == 1.0
    assert balanced_accuracy(np.zeros((3, 3), np.int64)) == 0.0


def test_eval_reports_balanced_accuracy_in_the_table_and_the_json(tmp_path, image_folder):
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--out", out).exit_code == 0
    as_json = cli("eval", out / "model.npz", "--data", image_folder, "--json")
    report = json.loads(as_json.output)
    recalls = [row["recall"] for row in report["per_class"]]
    assert report["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    table = cli("eval", out / "model.npz", "--data", image_folder)
    assert f"Balanced accuracy: {100 * report['balanced_accuracy']:.1f}% (the mean of the per-class recalls)" \
        in table.output


# ---- the learning rate in the history and its plot


def test_history_and_plot_show_the_learning_rate_of_a_schedule(tmp_path, synthetic_dataset):
    from cnnfruit import plots

    settings = {"kernels": 2, "kernel_size": 5, "hidden": (6,), "epochs": 3, "normalize": "scale", "lr": 1e-3}
    cosine = cnnfruit.fit(synthetic_dataset, TrainConfig(**settings, lr_schedule="cosine"), out=tmp_path / "c")
    saved = cnnfruit.History.load(cosine.history_path)
    assert [e.lr for e in saved.epochs] == [e.lr for e in cosine.history.epochs]
    assert saved.epochs[0].lr == 1e-3 and saved.epochs[0].lr > saved.epochs[1].lr > saved.epochs[2].lr > 0
    assert len(plots.history_figure(saved).axes) == 3
    assert plots.history_figure(saved).axes[2].get_title() == "Learning rate"
    constant = cnnfruit.fit(synthetic_dataset, TrainConfig(**settings))
    assert [e.lr for e in constant.history.epochs] == [1e-3] * 3
    assert len(plots.history_figure(constant.history).axes) == 2  # a constant rate: the report's two panels
    assert cli("plot", cosine.history_path, "-o", tmp_path / "h.png").exit_code == 0


def test_an_old_history_without_learning_rates_still_loads_and_plots(tmp_path):
    from cnnfruit import plots

    old = {"hyperparameters": {"lr": 1e-6}, "epochs": [
        {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4, "seconds": 1.0}]}
    history = cnnfruit.History.from_dict(old)
    assert history.epochs[0].lr is None and len(plots.history_figure(history).axes) == 2
    with pytest.raises(cnnfruit.CnnfruitError, match="epoch 1 has a lr that is not a number"):
        cnnfruit.History.from_dict({"epochs": [{**old["epochs"][0], "lr": "fast"}]})


# ---- repeatable whatever the thread count


@pytest.mark.parametrize("flags", [
    # BLAS and kernel dense paths (17 images in batches of 8), Adam, every training option
    ["--batch-size", 8, "--optimizer", "adam", "--lr", "1e-3", "--normalize", "scale", "--lr-schedule", "onecycle",
     "--dropout", "0.3", "--class-weights", "auto", "--label-smoothing", "0.1"],
    # batch 1: the fused SGD backward with dropout; a per-epoch schedule
    ["--lr-schedule", "step", "--lr-step-epochs", 1, "--dropout", "0.5", "--class-weights", "2,1,1",
     "--label-smoothing", "0.2"],
])
def test_every_new_option_trains_bit_identically_on_one_or_two_threads(tmp_path, image_folder, flags):
    two = train_in_process(image_folder, tmp_path / "two", 2, *flags)
    one = train_in_process(image_folder, tmp_path / "one", 1, *flags)
    assert_same_model(two, one)
    history = json.loads(str(np.load(two)["train_history"]))
    assert history["epochs"][0]["lr"] != history["epochs"][1]["lr"]  # the schedule was in force


def test_the_new_options_change_the_model(tmp_path, image_folder):
    """The comparison above can fail: each option on its own gives other weights than none."""
    base = ["--data", image_folder, *TINY, "--epochs", 1, "--lr", "1e-4", "--normalize", "scale"]
    assert cli("train", *base, "--out", tmp_path / "base").exit_code == 0
    reference = np.load(tmp_path / "base" / "model.npz")["param_dense0_w"]
    for i, option in enumerate([["--dropout", "0.3"], ["--label-smoothing", "0.1"], ["--class-weights", "1,3,1"],
                                ["--lr-schedule", "cosine"]]):
        assert cli("train", *base, *option, "--out", tmp_path / str(i)).exit_code == 0
        assert not np.array_equal(np.load(tmp_path / str(i) / "model.npz")["param_dense0_w"], reference), option
