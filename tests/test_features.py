"""Training options past the report: loss reduction, early stopping and best.npz, augmentation,
optimizer state in checkpoints, preprocessing applied by eval/predict, and the pictures."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnfruit import checkpoint
from cnnfruit.architecture import Architecture, init_parameters
from cnnfruit.augment import MAX_SHIFT, augment
from cnnfruit.cli import main
from cnnfruit.data import Dataset, Split
from cnnfruit.errors import CnnfruitError
from cnnfruit.model import Network
from cnnfruit.optim import make_optimizer
from cnnfruit.preprocess import to_inputs
from cnnfruit.train import TrainConfig, Trainer

TINY = {"kernels": 2, "kernel_size": 5, "hidden": (6,)}
TINY_FLAGS = ["--kernels", "2", "--kernel-size", "5", "--hidden", "6", "--batch-size", "64", "-q"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_dataset(rng, n_train=24, n_test=9):
    """Three classes of random 32x32 photos, each class tinted so the task is learnable."""
    def split(n):
        labels = np.arange(n) % 3
        images = rng.integers(0, 120, (n, 32, 32, 3))
        images[np.arange(n), :, :, labels] += 120
        return Split(images.astype(np.uint8), labels.astype(np.int64), [])

    return Dataset("synthetic", ["a", "b", "c"], split(n_train), split(n_test))


# ---- loss reduction


def test_mean_reduction_equals_sum_with_lr_divided_by_batch(rng):
    dataset = synthetic_dataset(rng)
    common = dict(TINY, epochs=1, batch_size=8, val_fraction=0.0, normalize="scale", seed=3)
    summed = Trainer.start(dataset, TrainConfig(lr=0.01 / 8, loss_reduction="sum", **common))
    mean = Trainer.start(dataset, TrainConfig(lr=0.01, loss_reduction="mean", **common))
    before = summed.network.params["conv_w"].copy()
    summed.run_epoch()
    mean.run_epoch()
    assert not np.allclose(before, summed.network.params["conv_w"])
    for name, value in summed.network.params.items():
        np.testing.assert_allclose(mean.network.params[name], value, rtol=1e-4, atol=1e-6)


def test_bad_loss_reduction_and_patience_are_refused():
    with pytest.raises(CnnfruitError, match="--loss-reduction"):
        TrainConfig(loss_reduction="max").check()
    with pytest.raises(CnnfruitError, match="--val-fraction"):
        TrainConfig(patience=2, val_fraction=0.0).check()


# ---- early stopping


def test_patience_counts_epochs_since_the_lowest_validation_loss(rng):
    trainer = Trainer.start(synthetic_dataset(rng), TrainConfig(patience=2, **TINY))
    stops = []
    for epoch, val_loss in enumerate([1.0, 0.5, 0.7, 0.4, 0.6, 0.45], start=1):
        trainer.history["epochs"].append({"epoch": epoch, "val_loss": val_loss})
        trainer._track_best(trainer.history["epochs"][-1])
        stops.append(trainer.should_stop())
    assert stops == [False, False, False, False, False, True]
    assert trainer.history["best_epoch"] == 4
    assert trainer.history["best_val_loss"] == 0.4


def test_train_stops_early_and_keeps_best_npz(tmp_path, monkeypatch):
    """Validation loss frozen at one value: epoch 1 is the best, and patience 2 stops after epoch 3."""
    monkeypatch.setattr(Network, "evaluate", lambda self, x, labels, batch=256: (0.7, 0.5, np.zeros(len(x), int)))
    result = CliRunner().invoke(main, ["train", *TINY_FLAGS, "--epochs", "10", "--patience", "2",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Early stop: validation loss has not improved for 2 epochs (best 0.7000 at epoch 1)" in result.output
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["epochs"]) == 3
    assert history["best_epoch"] == 1
    assert history["hyperparameters"]["loss_reduction"] == "sum"
    assert history["hyperparameters"]["patience"] == 2
    best = checkpoint.load(str(tmp_path / "best.npz"))
    last = checkpoint.load(str(tmp_path / "model.npz"))
    assert best.epoch == 1 and last.epoch == 3
    assert last.config["loss_reduction"] == "sum" and last.config["optimizer"] == "sgd"
    assert not np.array_equal(best.params["conv_w"], last.params["conv_w"])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


# ---- augmentation


def test_flip_mirrors_about_half_the_images_and_nothing_else(rng):
    x = rng.standard_normal((400, 1, 5, 5))
    flipped = augment(x.copy(), "flip", np.random.default_rng(0))
    mirrored = np.array([np.array_equal(a, b[..., ::-1]) for a, b in zip(flipped, x)])
    unchanged = np.array([np.array_equal(a, b) for a, b in zip(flipped, x)])
    assert (mirrored ^ unchanged).all()
    assert 150 < mirrored.sum() < 250
    np.testing.assert_array_equal(flipped, augment(x.copy(), "flip", np.random.default_rng(0)))


def test_rotate_reaches_all_eight_symmetries_of_the_square():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    seen = {augment(x.copy(), "rotate", np.random.default_rng(seed)).tobytes() for seed in range(100)}
    square = x[0, 0]
    symmetries = {np.ascontiguousarray(np.rot90(m, k)).tobytes() for m in (square, square.T) for k in range(4)}
    assert seen == symmetries


def test_shift_moves_content_by_at_most_max_shift(rng):
    x = np.zeros((50, 1, 12, 12))
    x[:, :, 5, 6] = 1.0  # one bright pixel away from the borders
    shifted = augment(x, "shift", np.random.default_rng(1))
    rows, cols = np.nonzero(shifted[:, 0].sum(axis=0))
    assert shifted.sum() == 50  # each image keeps its single pixel
    assert rows.min() >= 5 - MAX_SHIFT and rows.max() <= 5 + MAX_SHIFT
    assert cols.min() >= 5 - MAX_SHIFT and cols.max() <= 6 + MAX_SHIFT  # column 6, or 5 when mirrored
    assert len(set(rows)) > 1


def test_augmented_training_is_repeatable(rng):
    dataset = synthetic_dataset(rng)
    config = dict(TINY, epochs=1, batch_size=8, normalize="scale", augment="flip", lr=1e-3)
    first = Trainer.start(dataset, TrainConfig(**config))
    second = Trainer.start(dataset, TrainConfig(**config))
    plain = Trainer.start(dataset, TrainConfig(**{**config, "augment": "none"}))
    for trainer in (first, second, plain):
        trainer.run_epoch()
    np.testing.assert_array_equal(first.network.params["conv_w"], second.network.params["conv_w"])
    assert not np.array_equal(first.network.params["conv_w"], plain.network.params["conv_w"])


# ---- optimizer state in the checkpoint


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_checkpoint_carries_optimizer_state_back(rng, tmp_path, name):
    trainer = Trainer.start(synthetic_dataset(rng), TrainConfig(optimizer=name, lr=1e-3, batch_size=8, **TINY))
    trainer.run_epoch()
    path = str(tmp_path / "model.npz")
    checkpoint.save(path, trainer.checkpoint())
    loaded = checkpoint.load(path)
    assert loaded.optimizer == name
    restored = make_optimizer(name, loaded.params, lr=1e-3)
    restored.load_state(loaded.optimizer_state)
    assert set(restored.state) == set(trainer.optimizer.state)
    for key, value in trainer.optimizer.state.items():
        assert np.any(value != 0), key
        np.testing.assert_array_equal(restored.state[key], value)


# ---- eval and predict use the checkpoint's preprocessing


def saved_model(rng, tmp_path, color, normalize):
    arch = Architecture(in_channels=3 if color == "rgb" else 1, kernels=2, kernel_size=5, hidden=(6,), classes=3)
    params = init_parameters(arch, rng)
    path = str(tmp_path / f"{color}-{normalize}.npz")
    checkpoint.save(path, checkpoint.Checkpoint(arch, ["Carambula", "Lychee", "Pear"], params,
                                                color=color, normalize=normalize))
    return path, Network(arch, params)


def test_predict_applies_the_checkpoints_colour_and_normalisation(rng, tmp_path):
    pixels = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    image = tmp_path / "photo.png"
    Image.fromarray(pixels).save(image)
    path, network = saved_model(rng, tmp_path, "rgb", "standardize")
    result = CliRunner().invoke(main, ["predict", path, str(image), "--json"])
    assert result.exit_code == 0, result.output
    got = list(json.loads(result.output)[0]["probabilities"].values())
    expected = network.predict_proba(to_inputs(pixels[None], "rgb", "standardize"))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    raw = network.predict_proba(to_inputs(pixels[None], "rgb", "none"))[0]
    assert not np.allclose(got, raw, rtol=1e-3)


@pytest.mark.parametrize("color, normalize", [("grey", "scale"), ("rgb", "standardize")])
def test_eval_applies_the_checkpoints_preprocessing(rng, tmp_path, color, normalize):
    from cnnfruit.data import load_embedded

    path, network = saved_model(rng, tmp_path, color, normalize)
    result = CliRunner().invoke(main, ["eval", path, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    test = load_embedded().test
    _, accuracy, predictions = network.evaluate(to_inputs(test.images, color, normalize), test.labels)
    assert report["accuracy"] == pytest.approx(accuracy)
    assert np.bincount(predictions, minlength=3).tolist() == np.sum(report["confusion_matrix"], axis=0).tolist()


# ---- pictures


@pytest.mark.parametrize("color", ["grey", "rgb"])
def test_model_pictures_are_written(rng, tmp_path, color):
    path, _ = saved_model(rng, tmp_path, color, "scale")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)).save(photo)
    runner = CliRunner()
    outputs = {
        "k.png": ["plot", path, "--kernels", "-o", str(tmp_path / "k.png")],
        "f.png": ["plot", path, "--feature-maps", str(photo), "-o", str(tmp_path / "f.png")],
        "cm.png": ["eval", path, "--plot", str(tmp_path / "cm.png")],
    }
    for name, args in outputs.items():
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert f"Wrote {tmp_path / name}" in result.output
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_plot_of_a_model_needs_one_picture_choice(rng, tmp_path):
    path, _ = saved_model(rng, tmp_path, "grey", "none")
    result = CliRunner().invoke(main, ["plot", path])
    assert result.exit_code == 1
    assert "choose one of --kernels or --feature-maps" in result.output
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"epochs": [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5}]}))
    result = CliRunner().invoke(main, ["plot", str(history), "--kernels"])
    assert result.exit_code == 1
    assert "need a model .npz file" in result.output


def test_plotting_a_history_does_not_import_numba(tmp_path):
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"epochs": [
        {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4},
        {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7},
    ]}))
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cnnfruit.cli import main\n"
        f"result = CliRunner().invoke(main, ['plot', {str(history)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print('numba' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert (tmp_path / "history.png").read_bytes()[:8] == PNG_MAGIC


def test_saved_files_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    from cnnfruit.files import write_text_atomically

    path = tmp_path / "history.json"
    write_text_atomically(str(path), "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_early_stop_when_validation_loss_is_never_finite(tmp_path, monkeypatch):
    monkeypatch.setattr(Network, "evaluate", lambda self, x, labels, batch=256: (float("nan"), 0.0, np.zeros(len(x), int)))
    result = CliRunner().invoke(main, ["train", *TINY_FLAGS, "--epochs", "5", "--patience", "1",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "has not improved for 1 epochs (it was never a finite number)" in result.output
    assert not (tmp_path / "best.npz").exists()
