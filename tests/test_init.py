"""Initialisation schemes: what each draws, that he is unchanged, and that runs stay exact with every one."""
import numpy as np
import pytest

from cnnfruit.nn import architecture
from cnnfruit import checkpoint
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.cli.train import train as train_command
from cnnfruit.config import INIT_SCHEMES, TrainConfig
from cnnfruit.data.datasets import read_image_folder
from cnnfruit.errors import CnnfruitError, SettingError
from cnnfruit.data.splits import generators
from cnnfruit.training.loop import TrainingLoop

from helpers import TINY, assert_same_model, cli, saved_arrays, tiny_config

ARCH = Architecture(in_channels=3, kernels=4, kernel_size=5, hidden=(60, 9), classes=7)


def old_he(arch, rng):
    """cnnfruit's initialisation before schemes existed, as it was written then."""
    params = {}
    for name, shape in arch.parameter_shapes().items():
        if name.endswith("_b"):
            params[name] = np.zeros(shape, dtype=np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if name == "conv_w" else shape[0]
            params[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return params


def test_he_draws_what_cnnfruit_always_drew():
    new = init_parameters(ARCH, np.random.default_rng(5), scheme="he")
    old = old_he(ARCH, np.random.default_rng(5))
    assert list(new) == list(old)
    for name in old:
        assert new[name].dtype == np.float32 and new[name].tobytes() == old[name].tobytes(), name


def test_the_default_is_he_zero_and_the_cli_offers_exactly_the_library_schemes():
    option = next(p for p in train_command.params if p.name == "init")
    assert tuple(option.type.choices) == INIT_SCHEMES
    assert option.default == TrainConfig().init == "he-zero"


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_every_scheme_is_a_fixed_float64_draw_then_cast(scheme):
    wide = init_parameters(ARCH, np.random.default_rng(9), dtype=np.float64, scheme=scheme)
    narrow = init_parameters(ARCH, np.random.default_rng(9), scheme=scheme)
    again = init_parameters(ARCH, np.random.default_rng(9), scheme=scheme)
    assert list(wide) == list(ARCH.parameter_shapes())
    for name, value in wide.items():
        assert value.shape == ARCH.parameter_shapes()[name] and value.dtype == np.float64
        assert narrow[name].dtype == np.float32
        assert np.array_equal(narrow[name], value.astype(np.float32)), name
        assert np.array_equal(narrow[name], again[name]), name


def fan_in(name):
    layer = name.rsplit("_", 1)[0]
    return architecture.fans(f"{layer}_w", ARCH.parameter_shapes()[f"{layer}_w"])[0]


def test_torch_is_uniform_within_one_over_root_fan_in_for_weights_and_biases():
    params = init_parameters(Architecture(kernels=8, hidden=(841, 29), classes=5), np.random.default_rng(0),
                             dtype=np.float64, scheme="torch")
    assert architecture.fans("conv_w", (8, 1, 4, 4)) == (16, 128)
    for name, value in params.items():
        fan = 16 if name.startswith("conv") else params[name.replace("_b", "_w")].shape[0]
        bound = 1 / np.sqrt(fan)
        assert np.abs(value).max() <= bound, name
        if value.size > 500:  # a uniform on [-b, b] has standard deviation b / sqrt(3)
            assert value.std() == pytest.approx(bound / np.sqrt(3), rel=0.05), name
            assert np.abs(value).max() > 0.99 * bound, name


def test_glorot_is_uniform_within_its_bound_with_zero_biases():
    params = init_parameters(ARCH, np.random.default_rng(0), dtype=np.float64, scheme="glorot")
    shapes = ARCH.parameter_shapes()
    for name, value in params.items():
        if name.endswith("_b"):
            assert not value.any(), name
            continue
        fan_in, fan_out = architecture.fans(name, shapes[name])
        bound = np.sqrt(6 / (fan_in + fan_out))
        assert np.abs(value).max() <= bound and np.abs(value).max() > 0.9 * bound, name


def test_he_zero_is_he_with_a_zero_logit_layer():
    he = init_parameters(ARCH, np.random.default_rng(2), scheme="he")
    zero = init_parameters(ARCH, np.random.default_rng(2), scheme="he-zero")
    logits = f"dense{len(ARCH.dense_widths) - 1}"
    for name in he:
        if name.startswith(logits):
            assert not zero[name].any(), name
        else:
            assert np.array_equal(zero[name], he[name]), name


def test_an_unknown_scheme_is_refused_by_name():
    with pytest.raises(CnnfruitError, match="init must be one of he, torch, glorot, he-zero, got 'kaiming'"):
        init_parameters(ARCH, np.random.default_rng(0), scheme="kaiming")
    with pytest.raises(SettingError, match="^init must be one of he, torch, glorot, he-zero, got 'kaiming'"):
        TrainConfig(init="kaiming")


def test_a_checkpoint_config_without_init_means_he():
    assert TrainConfig.from_dict({"lr": 1e-6}).init == "he"
    assert TrainConfig.from_dict({"lr": 1e-6, "init": "torch"}).init == "torch"


def test_an_old_checkpoint_resumes_with_he_and_refuses_another_init(tmp_path, image_folder):
    """A checkpoint written before init was a setting: its train_config has no "init"."""
    out = tmp_path / "run"
    assert cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--init", "he", "--out", out).exit_code == 0
    model = out / "model.npz"
    ckpt = checkpoint.load(str(model))
    del ckpt.config["init"]
    checkpoint.save(str(model), ckpt)
    result = cli("train", "--resume", model, "--epochs", 2, "--init", "torch")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: --init torch conflicts with {model}, trained with --init he;")
    result = cli("train", "--resume", model, "--epochs", 2, "--init", "he")
    assert result.exit_code == 0, result.output
    assert checkpoint.load(str(model)).config["init"] == "he"


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_each_scheme_trains_the_same_twice_and_resumes_bit_for_bit(tmp_path, image_folder, scheme):
    dataset = read_image_folder(str(image_folder))
    config = tiny_config(epochs=2, batch_size=2, lr=1e-3, seed=1,
                         optimizer="adam", normalize="standardize", init=scheme)
    straight, again = TrainingLoop.start(dataset, config), TrainingLoop.start(dataset, config)
    for loop in (straight, again):
        while loop.epoch < 2:
            loop.run_epoch()
    stopped = TrainingLoop.start(dataset, config)
    stopped.run_epoch()
    stopped.stop.set()
    assert stopped.run_epoch() is None  # stops after the first step of epoch 2
    path = str(tmp_path / "model.npz")
    checkpoint.save(path, stopped.checkpoint())
    saved = checkpoint.load(path)
    assert saved.config["init"] == scheme
    resumed = TrainingLoop.resume(dataset, TrainConfig.from_dict(saved.config), saved)
    resumed.run_epoch()
    for name, value in straight.network.params.items():
        assert np.array_equal(value, again.network.params[name]), name
        assert np.array_equal(value, resumed.network.params[name]), name
    init_rng, _, _ = generators(config.seed)
    first = init_parameters(Architecture.from_config(config, 3), init_rng, scheme=scheme)
    assert all(not np.array_equal(first[name], value) for name, value in straight.network.params.items())


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_each_scheme_is_recorded_and_a_cli_rerun_is_identical(tmp_path, image_folder, scheme):
    runs = [tmp_path / name for name in ("a", "b")]
    for out in runs:
        result = cli("train", "--data", image_folder, *TINY, "--epochs", 1, "--init", scheme, "--out", out)
        assert result.exit_code == 0, result.output
    assert_same_model(runs[0] / "model.npz", runs[1] / "model.npz")
    assert checkpoint.load(str(runs[0] / "model.npz")).config["init"] == scheme
    assert '"init": "%s"' % scheme in str(saved_arrays(runs[0] / "model.npz")["train_history"])
