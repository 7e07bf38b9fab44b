"""Hostile checkpoints: every field checked against the others and against what the code does with it.

A checkpoint is data from anywhere. Each case below takes a real one (a tiny Adam run, stopped
mid-epoch so every field is filled) and changes one thing; loading must refuse it with a message
that names the field, or, where the change is harmless (float16 or big-endian weights), work.
The cases that, unchecked, would reach the Numba kernels with the wrong shapes run in a
subprocess, so that memory corruption fails the test instead of killing pytest.
"""
import io
import json
import os
import re
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

import cnnfruit
from cnnfruit import checkpoint
from cnnfruit.nn import optimizers as optim
from cnnfruit.nn.architecture import init_parameters
from cnnfruit.config import OPTIMIZERS
from cnnfruit.errors import CnnfruitError
from cnnfruit.nn.network import Network

from helpers import TINY_SETTINGS, as_format_1, cli, rewrite, saved_arrays, tinted, tiny_arch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """model.npz of an Adam run stopped after 3 steps of its second epoch: every field is filled."""
    rng = np.random.default_rng(5)
    data = cnnfruit.Dataset("tinted", ["apple", "kiwi", "plum"], tinted(24, rng), tinted(6, rng))
    out = tmp_path_factory.mktemp("hostile") / "run"
    config = cnnfruit.TrainConfig(epochs=2, optimizer="adam", lr=1e-3, batch_size=4, **TINY_SETTINGS)
    first = cnnfruit.fit(data, config, out=out)
    assert first.stopped == "finished"
    stop, steps = threading.Event(), []

    def on_step(done, total):
        steps.append(done)
        if len(steps) == 3:
            stop.set()

    result = cnnfruit.resume(str(out / "model.npz"), epochs=3, data=data, on_step=on_step, stop=stop)
    assert result.interrupted
    return out / "model.npz"


@pytest.fixture(scope="module")
def model_format_1(model, tmp_path_factory):
    """The same checkpoint in format 1, as cnnfruit wrote it before networks were layer specs."""
    path = tmp_path_factory.mktemp("format-1") / "model.npz"
    np.savez(path, **as_format_1(saved_arrays(model)))
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3)).astype(np.uint8)).save(path)
    return path


def text(value):
    return np.array(json.dumps(value))


def edit_json(name, change):
    def edit(arrays):
        value = json.loads(str(arrays[name]))
        arrays[name] = text(change(value))
    return edit


def smaller_images(a):
    """The issue's reproduction: a network for 16x16 images, its weights consistent with that."""
    K, _, S, _ = a["param_conv_w"].shape
    O = a["param_dense0_w"].shape[1]
    a["arch_image_size"] = np.array(16)
    a["param_dense0_w"] = np.zeros((K * (17 - S) ** 2, O), np.float32)


def three_channels(a):
    K, _, S, _ = a["param_conv_w"].shape
    a["arch_in_channels"] = np.array(3)
    a["param_conv_w"] = np.ones((K, 3, S, S), np.float32)
    for slot in ("m", "v"):
        a[f"optstate_conv_w.{slot}"] = np.zeros((K, 3, S, S), np.float32)


def setter(name, value):
    def change(a):
        a[name] = value
    return change


def dropper(name):
    def change(a):
        del a[name]
    return change


def deep(levels):
    return np.array("[" * levels + "]" * levels)


def both(*changes):
    def change(a):
        for c in changes:
            c(a)
    return change


HOSTILE = {
    # sizes, against each other and against the preprocessing
    "image size 16": (smaller_images, "arch_image_size is 16, but cnnfruit resizes every image to 32x32"),
    "image size 0": (setter("arch_image_size", np.array(0)), "arch_image_size is 0, but cnnfruit resizes"),
    "3 channels for grey": (three_channels, "arch_in_channels is 3, but preprocess_color grey gives 1 channel"),
    "rgb for 1 channel": (both(setter("preprocess_color", np.array("rgb")),
                               edit_json("train_config", lambda c: {**c, "color": "rgb"})),
                          "arch_in_channels is 1, but preprocess_color rgb gives 3 channels"),
    "layers typo": (setter("arch_layers", np.array("conv2x5, dnse6")),
                    "arch_layers: layer 2 'dnse6' is not a layer; did you mean dense?"),
    "layers odd pool": (setter("arch_layers", np.array("conv2x5, maxpool3, dense6")),
                        "arch_layers: layer 2 maxpool3 cannot pool the 2x28x28 maps of layer 1 (conv2x5): 3 does not "
                        "divide 28"),
    "layers kernel too big": (setter("arch_layers", np.array("conv2x40, dense6")),
                              "arch_layers: layer 1 conv2x40 has a 40x40 kernel, larger than the 1x32x32 input"),
    "layers conv after dense": (setter("arch_layers", np.array("dense6, conv2x5")),
                                "arch_layers: layer 2 conv2x5 needs maps as its input, but follows the 6 vector of "
                                "layer 1 (dense6)"),
    "layers another network": (setter("arch_layers", np.array("conv2x5, dense7")),
                               "param_dense0_w has shape (1568, 6), the architecture needs (1568, 7)"),
    "layers huge": (setter("arch_layers", np.array("dense6," * 20_000)), "arch_layers is 140000 characters long"),
    "layers as a number": (setter("arch_layers", np.array(6)), "arch_layers must be text, got int64"),
    "layers of format 1": (setter("arch_kernels", np.array(2)),
                           "has arrays this cnnfruit does not know in format 2: arch_kernels"),
    "epoch -1": (setter("train_epoch", np.array(-1)), "train_epoch must be from 0 to 1000000, got -1"),
    "epoch text": (setter("train_epoch", np.array("1")), "train_epoch must be a whole number, got <U1"),
    # text fields
    "colour purple": (setter("preprocess_color", np.array("purple")),
                      "preprocess_color must be one of grey, rgb, got 'purple'"),
    "colour as a number": (setter("preprocess_color", np.array(1)), "preprocess_color must be text, got int64"),
    "normalize max": (setter("preprocess_normalize", np.array("max")),
                      "preprocess_normalize must be one of none, scale, standardize, got 'max'"),
    "optimizer lion": (setter("optimizer_name", np.array("lion")),
                       "optimizer_name must be one of sgd, momentum, adam, got 'lion'"),
    "names repeat": (setter("class_names", np.array(["apple", "kiwi", "apple"])), "class name 'apple' appears twice"),
    "empty name": (setter("class_names", np.array(["apple", "", "plum"])), "class name 2 is empty"),
    "blank name": (setter("class_names", np.array(["apple", "   ", "plum"])), "class name 2 is empty"),
    "newline in a name": (setter("class_names", np.array(["apple", "ki\nwi", "plum"])),
                          "class name 'ki\\nwi' has a control character"),
    "escape in a name": (setter("class_names", np.array(["apple", "\x1b[2Jkiwi", "plum"])),
                         "class name '\\x1b[2Jkiwi' has a control character"),
    "bidi override": (setter("class_names", np.array(["apple", "\u202ekiwi", "plum"])),
                      "has a control character"),
    "names as numbers": (setter("class_names", np.array([1, 2, 3])), "class_names must be a list of text"),
    "one class": (setter("class_names", np.array(["apple"])), "class_names holds 1 name; a classifier needs at least 2"),
    "very long name": (setter("class_names", np.array(["apple", "k" * 300, "plum"])),
                       "class name 2 is longer than 255 characters"),
    # weights
    "weights as int32": (setter("param_conv_b", np.zeros(2, np.int32)),
                         "param_conv_b holds int32; weights must be float32 or float64"),
    "weights as complex": (setter("param_conv_b", np.zeros(2, np.complex64)),
                           "param_conv_b holds complex64; weights must be float32 or float64"),
    "weights as text": (setter("param_conv_b", np.array(["a", "b"])),
                        "param_conv_b holds <U1; weights must be float32 or float64"),
    "NaN weight": (lambda a: a["param_dense0_w"].__setitem__((0, 0), np.nan), "param_dense0_w holds NaN or infinite"),
    "inf weight": (lambda a: a["param_conv_b"].__setitem__(0, np.inf), "param_conv_b holds NaN or infinite"),
    "mixed precision": (lambda a: a.__setitem__("param_conv_b", a["param_conv_b"].astype(np.float64)),
                        "the weights mix float32 and float64"),
    "missing weights": (dropper("param_dense1_b"), "lacks the array param_dense1_b"),
    "unknown array": (setter("virus", np.zeros(3)), "has arrays this cnnfruit does not know in format 2: virus"),
    # the optimizer state
    "state of sgd": (setter("optimizer_name", np.array("sgd")), "the sgd optimizer state does not fit"),
    "state missing": (dropper("optstate_conv_w.m"), "missing optstate_conv_w.m"),
    "state unknown": (setter("optstate_conv_w.zeta", np.zeros((2, 1, 5, 5), np.float32)),
                      "unexpected optstate_conv_w.zeta"),
    "state shape": (setter("optstate_dense0_w.v", np.zeros(3, np.float32)),
                    "optstate_dense0_w.v has shape (3,), its parameter has (1568, 6)"),
    "state NaN": (lambda a: a["optstate_conv_b.v"].__setitem__(0, np.nan), "optstate_conv_b.v holds NaN or infinite"),
    "step negative": (setter("optstate_step", np.array(-1)), "optstate_step must be from 0 to"),
    "step float": (setter("optstate_step", np.array(1.5)), "optstate_step must be a whole number, got float64"),
    # JSON text fields
    "config not JSON": (setter("train_config", np.array("{not json")), "train_config is not valid JSON"),
    "config nested deep": (setter("train_config", deep(100_000)), "train_config is nested more than 20 levels deep"),
    "history nested deep": (setter("train_history", deep(100_000)), "train_history is nested more than 20 levels deep"),
    "rng nested deep": (setter("train_rng_state", deep(50)), "train_rng_state is nested more than 20 levels deep"),
    "data nested deep": (setter("train_data", deep(30)), "train_data is nested more than 20 levels deep"),
    "config as a list": (setter("train_config", text([1, 2])), "train_config must be a JSON object"),
    "config as an array of texts": (setter("train_config", np.array(["{}", "{}"])), "train_config must be text"),
    "config lr negative": (edit_json("train_config", lambda c: {**c, "lr": -1}),
                           "train_config: lr must be a positive number, got -1.0"),
    "config hidden elsewhere": (edit_json("train_config", lambda c: {**c, "hidden": [7]}),
                                "train_config describes another network than the checkpoint's arrays"),
    "config layers elsewhere": (edit_json("train_config", lambda c: {**c, "kernels": 8, "kernel_size": 4,
                                                                     "hidden": [841, 29], "layers": "conv2x3, dense6"}),
                                "train_config describes another network than the checkpoint's arrays"),
    "config colour elsewhere": (edit_json("train_config", lambda c: {**c, "color": "rgb"}),
                                "train_config describes another network than the checkpoint's arrays"),
    "config normalize elsewhere": (edit_json("train_config", lambda c: {**c, "normalize": "scale"}),
                                   "train_config's normalize scale differs from preprocess_normalize none"),
    "config optimizer elsewhere": (edit_json("train_config", lambda c: {**c, "optimizer": "momentum"}),
                                   "train_config's optimizer momentum differs from optimizer_name adam"),
    "epoch beyond config": (edit_json("train_config", lambda c: {**c, "epochs": 1}),
                            "train_epoch 2 and an interrupted epoch do not fit train_config's 1 epochs"),
    "training state without config": (setter("train_config", text({})),
                                      "its training state (train_rng_state) needs train_config"),
    "history epochs differ": (edit_json("train_history", lambda h: {**{k: v for k, v in h.items() if not k.startswith("best_")},
                                                                    "epochs": h["epochs"][:1]}),
                              "train_history must hold epochs 1 to 2"),
    "history of other classes": (edit_json("train_history", lambda h: {**h, "class_names": ["a", "b", "c"]}),
                                 "train_history's class names differ from class_names"),
    "history loss text": (edit_json("train_history", lambda h: {**h, "epochs": [{**h["epochs"][0], "train_loss": "x"}]}),
                          "epoch 1 has a train_loss that is not a number"),
    "rng of another generator": (edit_json("train_rng_state", lambda s: {**s, "bit_generator": "MT19937"}),
                                 "train_rng_state is not a usable state of the PCG64 generator"),
    "rng state huge": (edit_json("train_rng_state", lambda s: {**s, "state": {"state": 2**200, "inc": 1}}),
                       "train_rng_state is not a usable state of the PCG64 generator"),
    "rng state text": (edit_json("train_rng_state", lambda s: {**s, "state": "x"}),
                       "train_rng_state is not a usable state of the PCG64 generator"),
    "data source number": (edit_json("train_data", lambda d: {**d, "source": 5}),
                           "train_data's source must be a folder name or null"),
    "data unknown option": (edit_json("train_data", lambda d: {**d, "surprise": 1}),
                            "train_data has an option that image folders do not take: surprise"),
    "data digest odd": (edit_json("train_data", lambda d: {**d, "digest": "abc"}),
                        "train_data's digest must be 64 hexadecimal digits"),
    "partial step text": (edit_json("train_partial", lambda p: {**p, "step": "3"}),
                          "train_partial must be null or step, loss_sum, correct, seconds with numbers"),
    "partial step 0": (edit_json("train_partial", lambda p: {**p, "step": 0}),
                       "train_partial must be null or step, loss_sum, correct, seconds with numbers"),
    "partial loss NaN": (edit_json("train_partial", lambda p: {**p, "loss_sum": float("nan")}),
                         "train_partial must be null or step, loss_sum, correct, seconds with numbers"),
    "partial extra key": (edit_json("train_partial", lambda p: {**p, "more": 1}),
                          "train_partial must be null or step, loss_sum, correct, seconds with numbers"),
    "partial correct too many": (edit_json("train_partial", lambda p: {**p, "correct": 10**6}),
                                 "train_partial counts 1000000 correct answers in 3 steps of 4 images"),
}


# Format 1 said the network by these fields: every checkpoint written then must still be checked.
HOSTILE_FORMAT_1 = {
    "kernels 0": (setter("arch_kernels", np.array(0)), "arch_kernels must be from 1 to"),
    "kernels 2.0": (setter("arch_kernels", np.array(2.0)), "arch_kernels must be a whole number, got float64"),
    "kernels True": (setter("arch_kernels", np.array(True)), "arch_kernels must be a whole number, got bool"),
    "kernels as a list": (setter("arch_kernels", np.array([2])), "arch_kernels must be a whole number, got int64 of "
                                                                "shape (1,)"),
    "kernel size 40": (setter("arch_kernel_size", np.array(40)), "arch_kernel_size must be from 1 to 32, got 40"),
    "huge kernel count": (setter("arch_kernels", np.array(2**40)), "arch_kernels must be from 1 to"),
    "hidden 10^9": (setter("arch_hidden", np.array([10**9])),
                    "param_dense0_w has shape (1568, 6), the architecture needs (1568, 1000000000)"),
    "hidden negative": (setter("arch_hidden", np.array([-6])), "arch_hidden sizes must be from 1 to"),
    "hidden 2-D": (setter("arch_hidden", np.array([[6]])), "arch_hidden must be a list of whole numbers"),
    "hidden floats": (setter("arch_hidden", np.array([6.0])), "arch_hidden must be a list of whole numbers"),
    "layers in format 1": (setter("arch_layers", np.array("conv2x5, dense6")),
                           "has arrays this cnnfruit does not know in format 1: arch_layers"),
    "image size 16 in format 1": (smaller_images, "arch_image_size is 16, but cnnfruit resizes every image to 32x32"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_checkpoint_is_refused_with_a_message_naming_the_field(model, tmp_path, case):
    assert_refused(model, tmp_path, *HOSTILE[case])


@pytest.mark.parametrize("case", list(HOSTILE_FORMAT_1))
def test_hostile_checkpoint_of_format_1_is_refused_with_a_message_naming_the_field(model_format_1, tmp_path, case):
    assert_refused(model_format_1, tmp_path, *HOSTILE_FORMAT_1[case])


def assert_refused(model, tmp_path, change, message):
    path = rewrite(model, tmp_path / "hostile.npz", change)
    with pytest.raises(CnnfruitError) as caught:
        checkpoint.load(str(path))
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"checkpoint {path}")
    assert "\n" not in str(caught.value)


def test_a_format_before_the_first_is_refused(model, tmp_path):
    path = rewrite(model, tmp_path / "zero.npz", setter("format_version", np.array(0)))
    with pytest.raises(CnnfruitError, match="has checkpoint format 0, older than any cnnfruit wrote"):
        checkpoint.load(str(path))


def test_the_untouched_checkpoint_loads(model, model_format_1):
    ckpt = checkpoint.load(str(model))
    assert ckpt.interrupted and ckpt.optimizer == "adam" and ckpt.epoch == 2
    old = checkpoint.load(str(model_format_1))
    assert old.arch == ckpt.arch and old.arch.spec == "conv2x5, dense6"
    assert all(np.array_equal(old.params[name], value) for name, value in ckpt.params.items())


@pytest.mark.parametrize("case", ["image size 16", "3 channels for grey"])
def test_kernel_crashers_are_refused_in_a_real_process(model, tmp_path, photo, case):
    """The issue's reproduction ended in 'double free or corruption' (exit 134) or in confident garbage."""
    path = rewrite(model, tmp_path / "crafted.npz", HOSTILE[case][0])
    for args in (["predict", path, photo], ["eval", path]):
        done = subprocess.run([sys.executable, "-m", "cnnfruit", *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
        assert done.stderr.splitlines()[-1].startswith(f"Error: checkpoint {path} cannot be used: "), done.stderr
        assert done.stdout == ""


def test_float16_and_big_endian_weights_are_widened_to_float32(model, tmp_path, photo):
    """Widening float16 to float32 is exact, so a half-precision copy of a model still predicts."""
    reference = cnnfruit.Classifier.load(str(model))
    for name, change in {
        "half": lambda a: a.update({k: v.astype(np.float16) for k, v in a.items() if k.startswith(("param_", "optstate_"))
                                    and v.dtype.kind == "f"}),
        "big": lambda a: a.update({k: v.astype(">f4") for k, v in a.items() if k.startswith(("param_", "optstate_"))
                                   and v.dtype.kind == "f"}),
    }.items():
        path = rewrite(model, tmp_path / f"{name}.npz", change)
        clf = cnnfruit.Classifier.load(str(path))
        assert all(p.dtype == np.float32 for p in clf.params.values())
        if name == "half":
            expected = {k: v.astype(np.float16).astype(np.float32) for k, v in reference.params.items()}
        else:
            expected = reference.params
        for k, v in clf.params.items():
            np.testing.assert_array_equal(v, expected[k])
        result = cli("predict", path, photo)
        assert result.exit_code == 0, result.output


def write_member(path, name, header, payload=b""):
    """Replace one .npy member of the archive at path with a hand-made header and payload."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    members[f"{name}.npy"] = buffer.getvalue() + payload
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)


def test_an_array_that_declares_more_than_it_holds_is_refused_before_allocation(model, tmp_path):
    """A header may claim any shape: numpy would allocate it first (terabytes) and fail later."""
    path = tmp_path / "liar.npz"
    path.write_bytes(model.read_bytes())
    write_member(path, "param_dense0_w", {"descr": "<f4", "fortran_order": False, "shape": (1568, 10**12)}, b"\0" * 64)
    with pytest.raises(CnnfruitError, match=r"array param_dense0_w declares [\d.]+ PiB but the archive holds 192 B of it"):
        checkpoint.load(str(path))


def test_an_archive_larger_than_memory_is_refused(model, tmp_path, monkeypatch):
    from cnnfruit.nn import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(CnnfruitError, match=r"its arrays take .* more than the 1000 B of memory available"):
        checkpoint.load(str(model))


def test_pickled_arrays_are_still_refused_from_the_header(model, tmp_path):
    path = tmp_path / "pickled.npz"
    path.write_bytes(model.read_bytes())
    write_member(path, "class_names", {"descr": "|O", "fortran_order": False, "shape": (3,)}, b"\x80\x04N.")
    with pytest.raises(CnnfruitError, match="holds pickled Python objects; cnnfruit never unpickles files"):
        checkpoint.load(str(path))


def test_every_optimizer_declares_the_state_it_keeps():
    """checkpoint.load checks optimizer state against optim.state_shapes: it must say what step() keeps."""
    arch = tiny_arch()
    params = init_parameters(arch, np.random.default_rng(0))
    shapes = {name: p.shape for name, p in params.items()}
    for name in OPTIMIZERS:
        kept = optim.make_optimizer(name, params, lr=0.1)
        assert optim.state_shapes(name, shapes) == {k: v.shape for k, v in kept.state.items()}, name


# ---------------------------------------------------------------------------------------------
# the kernel boundary: Network refuses what its kernels were not written for


def small_network():
    arch = tiny_arch()
    return arch, init_parameters(arch, np.random.default_rng(0))


@pytest.mark.parametrize("problem", ["shape", "missing", "dtype", "mixed", "order"])
def test_network_checks_its_parameters_against_its_architecture(problem):
    arch, params = small_network()
    if problem == "shape":
        params["dense0_w"] = np.zeros((100, 6), np.float32)
    elif problem == "missing":
        del params["dense1_b"]
    elif problem == "dtype":
        params = {k: v.astype(np.float16) for k, v in params.items()}
    elif problem == "mixed":
        params["conv_b"] = params["conv_b"].astype(np.float64)
    else:
        params["dense0_w"] = np.asfortranarray(params["dense0_w"])
    with pytest.raises(CnnfruitError, match="the network's parameters do not fit its architecture"):
        Network(arch, params)


def test_network_checks_each_batch_and_its_labels():
    arch, params = small_network()
    net = Network(arch, params)
    for bad in (np.zeros((2, 1, 16, 16)), np.zeros((2, 3, 32, 32)), np.zeros((1, 32, 32)), np.zeros((2, 1, 32, 31))):
        with pytest.raises(CnnfruitError, match=r"the network takes inputs \(N, 1, 32, 32\), got"):
            net.forward(bad)
        with pytest.raises(CnnfruitError, match=r"the network takes inputs \(N, 1, 32, 32\), got"):
            net.feature_maps(bad)
    net.forward(np.zeros((2, 1, 32, 32)))
    for labels in (np.array([0, 3]), np.array([-1, 0]), np.array([0]), np.array([0.0, 1.0])):
        with pytest.raises(CnnfruitError, match="labels must be 2 class indices from 0 to 2"):
            net.loss(labels)
    assert net.loss(np.array([0, 2])).shape == (2,)


def test_training_refuses_class_names_that_a_checkpoint_could_not_hold(tmp_path):
    rng = np.random.default_rng(0)
    data = cnnfruit.Dataset("odd", ["apple", "ki\nwi", "plum"], tinted(12, rng), tinted(3, rng))
    with pytest.raises(CnnfruitError, match=r"class name 'ki\\nwi' has a control character"):
        cnnfruit.fit(data, cnnfruit.TrainConfig(epochs=1, **TINY_SETTINGS), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_eval_shows_rich_markup_in_class_names_as_written(tmp_path, make_image_folder):
    """`[red]Lychee` is a fine folder name; rich must not take it for a colour and eat it."""
    names = ["Pear", "[bold]", "[red]Lychee"]  # sorted, as folders are
    arch = tiny_arch()
    clf = cnnfruit.Classifier(arch, init_parameters(arch, np.random.default_rng(0)), names)
    clf.save(str(tmp_path / "model.npz"))
    data = make_image_folder(tmp_path / "data", classes=names, train=2, test=2)
    result = cli("eval", tmp_path / "model.npz", "--data", data)
    assert result.exit_code == 0, result.output
    assert re.search(r"^│ \[red\]Lychee +│", result.output, re.M), result.output
    assert re.search(r"^│ \[bold\] +│", result.output, re.M), result.output
    assert "[red]Lychee" in result.output.split("Confusion matrix")[1]
