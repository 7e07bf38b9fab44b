"""The training loop learns, repeats itself bit for bit, and records its history."""
import numpy as np

from cnnfruit.data import load_embedded
from cnnfruit.train import TrainConfig, Trainer


def small_config(**overrides):
    settings = dict(lr=1e-6, epochs=2, batch_size=8, kernels=4, kernel_size=4, hidden=(32,), seed=0)
    settings.update(overrides)
    return TrainConfig(**settings)


def train(dataset, config):
    trainer = Trainer.start(dataset, config)
    while trainer.epoch < config.epochs:
        trainer.run_epoch()
    trainer.finish(0.0)
    return trainer


def test_learns_the_fruit_well_above_chance():
    # A slimmer network than the report's, on pixels scaled to 0..1, so two epochs take seconds.
    trainer = train(load_embedded(), small_config(batch_size=1, normalize="scale", lr=1e-2))
    history = trainer.history
    assert history["test_accuracy"] > 0.7  # chance is 1/3
    assert history["epochs"][-1]["train_loss"] < history["epochs"][0]["train_loss"]
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]


def test_same_seed_same_weights_bit_for_bit():
    dataset = load_embedded()
    first = train(dataset, small_config(epochs=1, batch_size=1, hidden=(16,)))
    second = train(dataset, small_config(epochs=1, batch_size=1, hidden=(16,)))
    for name, value in first.network.params.items():
        assert np.array_equal(value, second.network.params[name]), name
    third = train(dataset, small_config(epochs=1, batch_size=1, hidden=(16,), seed=1))
    assert not np.array_equal(first.network.params["conv_w"], third.network.params["conv_w"])
