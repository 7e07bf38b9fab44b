"""`cnnfruit gradcheck`: passes on the real backward pass, fails when a gradient is corrupted."""
import pytest
from click.testing import CliRunner

from cnnfruit.nn import dispatch
from cnnfruit.nn.architecture import Architecture
from cnnfruit.cli import main
from cnnfruit.nn.gradcheck import check_gradients, relative_error

SMALL = ["--kernels", "2", "--kernel-size", "3", "--hidden", "6,4", "--image-size", "6", "--max-entries", "40"]


@pytest.mark.parametrize("color", ["grey", "rgb"])
def test_gradcheck_passes_on_a_correct_network(color):
    result = CliRunner().invoke(main, ["gradcheck", *SMALL, "--color", color])
    assert result.exit_code == 0, result.output
    assert "Gradient check passed" in result.output
    for name in ("conv_w", "conv_b", "dense0_w", "dense0_b", "dense1_w", "dense2_b"):
        assert name in result.output


def test_gradcheck_fails_when_the_conv_gradient_is_wrong(monkeypatch):
    real = dispatch.conv_backward

    def off_by_one_percent(dw, db, x, dout):
        real(dw, db, x, dout)
        dw *= 1.01

    monkeypatch.setattr(dispatch, "conv_backward", off_by_one_percent)
    result = CliRunner().invoke(main, ["gradcheck", *SMALL])
    assert result.exit_code == 1
    assert "FAILED for conv_w" in result.output
    assert "conv_b" not in result.output.splitlines()[-1]


def test_check_samples_large_parameters_and_reports_small_errors():
    arch = Architecture(in_channels=1, image_size=6, kernels=2, kernel_size=3, hidden=(30,), classes=3)
    results = {r.name: r for r in check_gradients(arch, max_entries=25)}
    assert results["dense0_w"].checked == 25  # 32 x 30 entries, sampled
    assert results["conv_b"].checked == 2
    assert all(r.relative_error < 1e-6 for r in results.values())


def test_relative_error_is_scale_free_and_zero_for_zeros():
    assert relative_error([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error([1.0], [1.1]) == pytest.approx(relative_error([1000.0], [1100.0]))


def test_gradcheck_passes_with_dropout_class_weights_and_label_smoothing():
    result = CliRunner().invoke(main, ["gradcheck", *SMALL, "--dropout", "0.4", "--label-smoothing", "0.1",
                                       "--class-weights", "0.5,2,1"])
    assert result.exit_code == 0, result.output
    assert "Gradient check passed" in result.output


def test_gradcheck_with_dropout_fails_when_dropout_is_left_out_of_the_backward_pass(monkeypatch):
    from cnnfruit.nn.layers import Dropout

    monkeypatch.setattr(Dropout, "backward", lambda self, *arrays: None)
    result = CliRunner().invoke(main, ["gradcheck", *SMALL, "--dropout", "0.4"])
    assert result.exit_code == 1
    assert "Gradient check FAILED for" in result.output
