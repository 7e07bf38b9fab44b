"""Checkpoints of format 1, written by cnnfruit before networks were layer specs, still load,
predict and resume bit for bit (tests/data/make_format_1.py says how they were made)."""
import shutil
from pathlib import Path

import numpy as np

import cnnfruit
from cnnfruit import checkpoint
from cnnfruit.nn.architecture import Architecture

from data.make_format_1 import CONFIG, dataset
from helpers import saved_arrays

FORMAT_1 = Path(__file__).parent / "data" / "format_1"


def test_a_format_1_checkpoint_reads_as_the_report_shape_it_describes():
    ckpt = checkpoint.load(str(FORMAT_1 / "interrupted.npz"))
    assert ckpt.arch == Architecture(kernels=2, kernel_size=5, hidden=(6,), classes=3)
    assert ckpt.arch.spec == "conv2x5, dense6"
    assert list(ckpt.params) == ["conv_w", "conv_b", "dense0_w", "dense0_b", "dense1_w", "dense1_b"]
    assert ckpt.interrupted and ckpt.epoch == 1 and ckpt.optimizer == "adam"


def test_a_format_1_checkpoint_predicts_what_it_did():
    """To float32's rounding: scoring runs on blocks of a fixed size since, whose products may round
    the last bit of a probability otherwise than the 6-image batch the old code scored."""
    clf = cnnfruit.Classifier.load(str(FORMAT_1 / "interrupted.npz"))
    expected = np.load(FORMAT_1 / "probabilities.npy")
    probabilities = clf.predict_proba(dataset().test.images)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    assert np.array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))


def test_a_format_1_checkpoint_resumes_to_the_unbroken_run_bit_for_bit(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FORMAT_1 / "interrupted.npz", run / "model.npz")
    result = cnnfruit.resume(str(run / "model.npz"), data=dataset())
    assert result.stopped == "finished" and result.history.epochs[-1].epoch == CONFIG["epochs"]
    unbroken = saved_arrays(FORMAT_1 / "unbroken.npz")
    for name, value in result.classifier.params.items():
        assert value.tobytes() == unbroken[name].tobytes(), name
    saved = saved_arrays(run / "model.npz")
    assert int(saved["format_version"]) == checkpoint.FORMAT_VERSION == 2
    assert str(saved["arch_layers"]) == "conv2x5, dense6"
    assert checkpoint.load(str(run / "model.npz")).arch == checkpoint.load(str(FORMAT_1 / "interrupted.npz")).arch
