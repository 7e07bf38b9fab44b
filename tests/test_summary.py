"""cnnfruit summary: layer shapes, parameters and FLOPs, all derived from Architecture."""
import json

import numpy as np
import pytest

from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.inference.classifier import Classifier
from cnnfruit.inference.summary import summarize

from helpers import cli

ARCHS = [Architecture(), Architecture(in_channels=3, kernels=4, kernel_size=5, hidden=(16,), classes=7),
         Architecture(image_size=9, kernels=2, kernel_size=9, hidden=(), classes=2)]


@pytest.mark.parametrize("arch", ARCHS)
def test_totals_agree_with_the_parameters_and_the_step_cost(arch):
    summary = summarize(arch)
    shapes = arch.parameter_shapes()
    assert summary.total_parameters == sum(int(np.prod(shape)) for shape in shapes.values())
    assert summary.training_flops == arch.flops_per_image()
    assert summary.layers[-1].output_shape == (arch.classes,)
    assert [layer.output_shape for layer in summary.layers[:2]] == [
        (arch.in_channels, arch.image_size, arch.image_size), (arch.kernels, arch.conv_side, arch.conv_side)]


def test_the_conv_layer_counts_its_kernel_gradient_only():
    arch = Architecture()
    conv, dense0 = summarize(arch).layers[1], summarize(arch).layers[3]
    multiply_adds = arch.kernels * arch.conv_side**2 * arch.in_channels * arch.kernel_size**2
    assert conv.forward_flops == conv.backward_flops == 2 * multiply_adds
    assert dense0.backward_flops == 2 * dense0.forward_flops == 4 * arch.features * arch.hidden[0]


def test_the_command_reads_a_model_or_flags(tmp_path):
    arch = Architecture(kernels=2, kernel_size=5, hidden=(6,), classes=4)
    model = tmp_path / "m.npz"
    Classifier(arch, init_parameters(arch, np.random.default_rng(0)), list("abcd")).save(model)
    from_model = cli("summary", model, "--json")
    assert from_model.exit_code == 0, from_model.output
    from_flags = cli("summary", "--kernels", 2, "--kernel-size", 5, "--hidden", 6, "--classes", 4, "--json")
    assert json.loads(from_model.output) == json.loads(from_flags.output) == summarize(arch).to_dict()
    table = cli("summary")
    assert table.exit_code == 0 and "5,683,733" in table.output and "dense0 + ReLU" in table.output
    both = cli("summary", model, "--kernels", 3)
    assert both.exit_code == 1 and "Error: give a MODEL or architecture flags, not both" in both.output
