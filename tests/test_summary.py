"""cnnfruit summary: layer shapes, parameters and FLOPs, all derived from Architecture."""
import json

import numpy as np
import pytest

from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.inference.classifier import Classifier
from cnnfruit.inference.summary import summarize

from helpers import cli

ARCHS = [Architecture(), Architecture(in_channels=3, kernels=4, kernel_size=5, hidden=(16,), classes=7),
         Architecture(image_size=9, kernels=2, kernel_size=9, hidden=(), classes=2),
         Architecture(in_channels=3, image_size=12, layers="conv4x3 same, conv6x3, maxpool2, dense8", classes=5)]
VGG = "conv32x3 same, conv32x3 same, maxpool2, conv64x3 same, conv64x3 same, maxpool2, dense256"


@pytest.mark.parametrize("arch", ARCHS)
def test_totals_agree_with_the_parameters_and_the_step_cost(arch):
    summary = summarize(arch)
    shapes = arch.parameter_shapes()
    assert summary.total_parameters == sum(int(np.prod(shape)) for shape in shapes.values())
    assert summary.training_flops == arch.flops_per_image()
    assert summary.layers[-1].output_shape == (arch.classes,)
    first = arch.layers[0]
    side = arch.image_size - first.size + 1
    assert [layer.output_shape for layer in summary.layers[:2]] == [
        (arch.in_channels, arch.image_size, arch.image_size),
        (first.kernels, arch.image_size, arch.image_size) if first.padding == "same" else (first.kernels, side, side)]


def test_the_conv_layer_counts_its_kernel_gradient_only():
    arch = Architecture()
    conv, dense0 = summarize(arch).layers[1], summarize(arch).layers[3]
    multiply_adds = 8 * 29**2 * 1 * 4**2
    assert conv.forward_flops == conv.backward_flops == 2 * multiply_adds
    assert dense0.backward_flops == 2 * dense0.forward_flops == 4 * arch.features * 841


def test_every_layer_of_a_deep_stack_is_counted_from_its_shapes():
    """The VGG-style stack, by hand: a conv layer of K kernels S x S over C channels makes K x P x P
    outputs of C x S x S multiply-adds; above the first conv layer backward is 2x forward."""
    layers = summarize(Architecture(in_channels=3, layers=VGG, classes=10)).layers
    assert [(layer.name, layer.spec, layer.output_shape) for layer in layers] == [
        ("input", "", (3, 32, 32)), ("conv0 + ReLU", "conv32x3 same", (32, 32, 32)),
        ("conv1 + ReLU", "conv32x3 same", (32, 32, 32)), ("pool0", "maxpool2", (32, 16, 16)),
        ("conv2 + ReLU", "conv64x3 same", (64, 16, 16)), ("conv3 + ReLU", "conv64x3 same", (64, 16, 16)),
        ("pool1", "maxpool2", (64, 8, 8)), ("flatten", "", (4096,)), ("dense0 + ReLU", "dense256", (256,)),
        ("dense1 (logits)", "dense10", (10,)), ("softmax", "", (10,))]
    macs = [32 * 32**2 * 3 * 9, 32 * 32**2 * 32 * 9, 0, 64 * 16**2 * 32 * 9, 64 * 16**2 * 64 * 9, 0, 0, 4096 * 256,
            256 * 10]
    assert [layer.forward_flops for layer in layers[1:-1]] == [2 * m for m in macs]
    assert [layer.backward_flops for layer in layers[1:-1]] == [2 * macs[0]] + [4 * m for m in macs[1:]]
    assert [layer.parameters for layer in layers[1:-1]] == [896, 9248, 0, 18496, 36928, 0, 0, 4096 * 256 + 256,
                                                            2570]


def test_the_command_reads_a_model_or_flags(tmp_path):
    arch = Architecture(kernels=2, kernel_size=5, hidden=(6,), classes=4)
    model = tmp_path / "m.npz"
    Classifier(arch, init_parameters(arch, np.random.default_rng(0)), list("abcd")).save(model)
    from_model = cli("summary", model, "--json")
    assert from_model.exit_code == 0, from_model.output
    from_flags = cli("summary", "--kernels", 2, "--kernel-size", 5, "--hidden", 6, "--classes", 4, "--json")
    read, flagged = json.loads(from_model.output), json.loads(from_flags.output)
    assert read.pop("matrix_products") == flagged.pop("matrix_products")  # the BLAS library: tests/test_gemm.py
    assert read.pop("conv_layers_run_as") == flagged.pop("conv_layers_run_as") == {"conv": "direct"}
    assert read == flagged == summarize(arch).to_dict()
    table = cli("summary")
    assert table.exit_code == 0 and "5,683,733" in table.output and "dense841" in table.output
    assert "conv: direct convolution kernels" in table.output
    both = cli("summary", model, "--kernels", 3)
    assert both.exit_code == 1 and "Error: give a MODEL or architecture flags, not both" in both.output


def test_the_command_reads_a_layer_spec_and_refuses_a_bad_one_in_one_line():
    deep = cli("summary", "--layers", VGG, "--color", "rgb", "--classes", 10, "--json")
    assert deep.exit_code == 0, deep.output
    read = json.loads(deep.output)
    assert read.pop("matrix_products").startswith("matrix products: ")  # the BLAS library: tests/test_gemm.py
    assert read.pop("conv_layers_run_as") == {"conv0": "im2col", "conv1": "winograd", "conv2": "winograd",
                                              "conv3": "winograd"}
    assert read == summarize(Architecture(in_channels=3, layers=VGG, classes=10)).to_dict()
    table = cli("summary", "--layers", VGG, "--color", "rgb", "--classes", 10)
    assert "conv0: im2col products" in table.output
    assert "conv1, conv2, conv3: Winograd F(2x2, 3x3) products" in table.output
    assert read["architecture"]["layers"] == VGG
    odd = cli("summary", "--layers", "conv8x4, maxpool2")
    assert odd.exit_code == 1
    assert odd.output == ("Error: --layers: layer 2 maxpool2 cannot pool the 8x29x29 maps of layer 1 (conv8x4): 2 does "
                          "not divide 29\n")
    both = cli("summary", "--layers", "dense8", "--hidden", "8")
    assert both.output == "Error: give the network as --layers or by its shorthands (--hidden), not both\n"
