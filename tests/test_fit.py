"""cnnfruit.fit owns a whole run: it learns, repeats itself, stops early, keeps the best epoch,
stops on request and resumes bit for bit. Everything here goes through the public API."""
import threading

import numpy as np
import pytest

import cnnfruit
from cnnfruit import checkpoint
from cnnfruit.data.datasets import Dataset, Split

from helpers import TINY_SETTINGS, tiny_config


def tiny(**overrides):
    return tiny_config(**{"epochs": 2, "batch_size": 4, "lr": 1e-3, "normalize": "scale", **overrides})


def same_weights(a, b):
    return all(np.array_equal(a[name], b[name]) for name in a) and a.keys() == b.keys()


def noise_dataset(n_train=40, n_test=12, seed=0):
    """Random images with random labels: nothing to learn, so validation loss soon stops improving."""
    rng = np.random.default_rng(seed)

    def split(n):
        return Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 2, n).astype(np.int64), [])

    return Dataset("noise", ["heads", "tails"], split(n_train), split(n_test))


def test_learns_the_fruit_well_above_chance():
    # A slimmer network than the report's, on pixels scaled to 0..1, so two epochs take seconds.
    config = cnnfruit.TrainConfig(lr=1e-2, epochs=2, batch_size=1, kernels=4, hidden=(32,), normalize="scale")
    result = cnnfruit.fit(cnnfruit.load_embedded(), config)
    assert result.stopped == "finished" and result.folder is None
    assert result.test_accuracy > 0.7  # chance is 1/3
    assert [e.epoch for e in result.history.epochs] == [1, 2]
    assert result.history.epochs[-1].train_loss < result.history.epochs[0].train_loss


def test_same_seed_same_weights_bit_for_bit(synthetic_dataset):
    first = cnnfruit.fit(synthetic_dataset, tiny())
    second = cnnfruit.fit(synthetic_dataset, tiny())
    other_seed = cnnfruit.fit(synthetic_dataset, tiny(seed=1))
    assert same_weights(first.classifier.params, second.classifier.params)
    assert not np.array_equal(first.classifier.params["conv_w"], other_seed.classifier.params["conv_w"])


def test_a_folder_run_saves_model_history_and_best(tmp_path, synthetic_dataset):
    records = []
    result = cnnfruit.fit(synthetic_dataset, tiny(), out=tmp_path / "run", on_epoch=records.append)
    assert [r.epoch for r in records] == [1, 2] and records == result.history.epochs
    saved = cnnfruit.Classifier.load(result.model_path)
    assert same_weights(saved.params, result.classifier.params)
    assert cnnfruit.History.load(result.history_path) == result.history
    best = cnnfruit.Classifier.load(result.best_path)
    assert best.history.best_epoch == result.history.best_epoch
    assert result.saved_at == "the end of epoch 2"


def test_mean_reduction_equals_sum_with_lr_divided_by_batch(synthetic_dataset):
    common = dict(TINY_SETTINGS, epochs=1, batch_size=8, val_fraction=0.0, normalize="scale", seed=3)
    summed = cnnfruit.fit(synthetic_dataset, cnnfruit.TrainConfig(lr=0.01 / 8, loss_reduction="sum", **common))
    mean = cnnfruit.fit(synthetic_dataset, cnnfruit.TrainConfig(lr=0.01, loss_reduction="mean", **common))
    for name, value in summed.classifier.params.items():
        np.testing.assert_allclose(mean.classifier.params[name], value, rtol=1e-4, atol=1e-6)


def test_early_stop_keeps_the_best_epoch(tmp_path):
    """On labels without a pattern the validation loss stops improving; patience 1 then ends the
    run one epoch after its best, and best.npz holds exactly the weights of a run cut at the best."""
    config = tiny(lr=1e-2, epochs=12, patience=1, val_fraction=0.5)
    result = cnnfruit.fit(noise_dataset(), config, out=tmp_path / "early")
    history = result.history
    assert result.stopped == "early"
    assert len(history.epochs) == history.best_epoch + 1 < 12
    assert history.best_val_loss == min(e.val_loss for e in history.epochs)
    cut = cnnfruit.fit(noise_dataset(), tiny(lr=1e-2, epochs=history.best_epoch, patience=1, val_fraction=0.5))
    assert same_weights(result.best.params, cut.classifier.params)
    assert not same_weights(result.best.params, result.classifier.params)


def test_a_run_in_memory_keeps_its_best_epoch_too():
    config = tiny(lr=1e-2, epochs=12, patience=1, val_fraction=0.5)
    in_memory = cnnfruit.fit(noise_dataset(), config)
    assert in_memory.stopped == "early" and in_memory.best is not None
    cut = cnnfruit.fit(noise_dataset(), tiny(lr=1e-2, epochs=in_memory.history.best_epoch, val_fraction=0.5,
                                             patience=1))
    assert same_weights(in_memory.best.params, cut.classifier.params)


def test_resume_to_more_epochs_equals_a_straight_run(tmp_path, synthetic_dataset):
    straight = cnnfruit.fit(synthetic_dataset, tiny(epochs=3))
    cnnfruit.fit(synthetic_dataset, tiny(epochs=1), out=tmp_path / "split")
    resumed = cnnfruit.resume(tmp_path / "split" / "model.npz", epochs=3, data=synthetic_dataset)
    assert same_weights(straight.classifier.params, resumed.classifier.params)
    assert [e.train_loss for e in resumed.history.epochs] == [e.train_loss for e in straight.history.epochs]


def test_stop_on_request_then_resume_bit_for_bit(tmp_path, synthetic_dataset):
    straight = cnnfruit.fit(synthetic_dataset, tiny())
    stop, calls = threading.Event(), []

    def stop_at_step_3_of_epoch_2(done, total):  # what the CLI's Ctrl-C handler does, at a step we choose
        calls.append(done)
        if len(calls) == total + 3:
            stop.set()

    stopped = cnnfruit.fit(synthetic_dataset, tiny(), out=tmp_path / "run", stop=stop,
                           on_step=stop_at_step_3_of_epoch_2)
    assert stopped.interrupted and stopped.saved_at == "epoch 2 up to step 3 of 5"
    assert checkpoint.load(stopped.model_path).interrupted
    resumed = cnnfruit.resume(stopped.model_path, data=synthetic_dataset)
    assert resumed.stopped == "finished"
    assert same_weights(straight.classifier.params, resumed.classifier.params)


def test_resume_refuses_a_setting_that_differs_from_the_checkpoint(tmp_path, synthetic_dataset):
    cnnfruit.fit(synthetic_dataset, tiny(epochs=1), out=tmp_path / "run")
    with pytest.raises(cnnfruit.SettingError, match=r"^lr 0\.5 conflicts with .*, trained with lr 0\.001; a resumed "
                                                     r"run keeps its checkpoint's settings, so leave out lr"):
        cnnfruit.Run.resume(tmp_path / "run" / "model.npz", epochs=2, expect={"lr": 0.5}, data=synthetic_dataset)
    run = cnnfruit.Run.resume(tmp_path / "run" / "model.npz", epochs=2, expect={"lr": 1e-3, "hidden": "6"},
                              data=synthetic_dataset)
    assert run.resumed_at == "after epoch 1" and run.config.epochs == 2


def test_settings_are_checked_with_their_own_names():
    with pytest.raises(cnnfruit.SettingError, match=r"^lr must be a positive number, got -1\.0$"):
        cnnfruit.TrainConfig(lr=-1)
    with pytest.raises(cnnfruit.SettingError, match=r"^patience watches the validation loss: give a val_fraction"):
        cnnfruit.TrainConfig(patience=2, val_fraction=0.0)
    with pytest.raises(cnnfruit.SettingError, match=r"^loss_reduction must be one of sum, mean, got 'max'$"):
        cnnfruit.TrainConfig(loss_reduction="max")


def test_a_diverging_run_names_the_learning_rate(synthetic_dataset):
    with pytest.raises(cnnfruit.SettingError) as caught:
        cnnfruit.fit(synthetic_dataset, tiny(lr=1e30, normalize="none"))
    assert "try a smaller learning rate than lr 1e+30, e.g. lr 1e+29" in str(caught.value)
    assert "--lr 1e+30" in caught.value.render(lambda name: "--" + name)


def test_patience_counts_epochs_since_the_lowest_validation_loss(synthetic_dataset):
    from cnnfruit.history import EpochRecord
    from cnnfruit.training.loop import TrainingLoop

    loop = TrainingLoop.start(synthetic_dataset, cnnfruit.TrainConfig(patience=2, **TINY_SETTINGS))
    stops = []
    for epoch, val_loss in enumerate([1.0, 0.5, 0.7, 0.4, float("nan"), 0.45], start=1):
        loop.history.epochs.append(EpochRecord(epoch, 1.0, 0.5, val_loss, 0.5))
        loop._track_best(loop.history.epochs[-1])
        stops.append(loop.should_stop())
    assert stops == [False, False, False, False, False, True]
    assert loop.history.best_epoch == 4 and loop.history.best_val_loss == 0.4


def test_images_stay_uint8_until_a_batch_is_formed(synthetic_dataset):
    """70,000 colour photos are 215 MB as uint8 and 860 MB as float32 inputs: only batches are converted."""
    run = cnnfruit.Run.start(synthetic_dataset, tiny(color="rgb"))
    data = run.loop.splits
    for images in (data.images_train, data.images_val, data.images_test):
        assert images.dtype == np.uint8 and images.ndim == 4
    assert not any(isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim == 4
                   for value in vars(run.loop).values())


def test_a_save_is_a_snapshot_written_in_the_background(tmp_path, synthetic_dataset):
    """What is saved is the state when save() was called, even if training goes on changing it."""
    run = cnnfruit.Run.start(synthetic_dataset, tiny(epochs=1), out=tmp_path / "run")
    before = {name: value.copy() for name, value in run.loop.network.params.items()}
    run.run_folder.save(run.loop)
    for value in run.loop.network.params.values():
        value += 1  # what the next steps would do while the write is under way
    run.run_folder.flush()
    assert same_weights(cnnfruit.Classifier.load(run.run_folder.model_path).params, before)
    assert run.run_folder.saved_at == "the initial weights"
    run.close()


def test_saves_at_one_point_of_training_share_one_copy_of_the_weights(tmp_path, synthetic_dataset):
    """best.npz and model.npz after an epoch, and model.npz once the test score is in, hold the same
    weights: one copy serves them all, and a step later a new copy is made."""
    run = cnnfruit.Run.start(synthetic_dataset, tiny(epochs=2, optimizer="adam"), out=tmp_path / "run")
    loop = run.loop
    loop.run_epoch()
    first, best = run.run_folder._snapshot(loop), run.run_folder._snapshot(loop)
    assert all(first.params[name] is best.params[name] for name in first.params)
    assert all(first.optimizer_state[name] is best.optimizer_state[name] for name in first.optimizer_state)
    assert all(value is not loop.network.params[name] for name, value in first.params.items())
    loop.run_epoch()
    later = run.run_folder._snapshot(loop)
    assert all(later.params[name] is not first.params[name] for name in first.params)
    assert not same_weights(later.params, first.params)
    assert same_weights(later.params, loop.network.params)
    run.close()


def test_the_validation_cut_reads_the_dataset_s_images_without_copying_them(synthetic_dataset):
    """Training and validation batches gather rows of the dataset's own array, and hold exactly the
    images and labels that training_split gives."""
    from cnnfruit.data.splits import training_split

    config = tiny(val_fraction=0.3)
    data = cnnfruit.Run.start(synthetic_dataset, config).loop.splits
    train, val = training_split(synthetic_dataset, config.seed, config.val_fraction)
    for rows, split, labels in ((data.images_train, train, data.y_train), (data.images_val, val, data.y_val)):
        assert rows.source is synthetic_dataset.train.images
        assert np.array_equal(rows[:], split.images) and np.array_equal(labels, split.labels)
        assert np.array_equal(rows[np.array([2, 0])], split.images[[2, 0]])
