"""The most confident mistakes (eval --misclassified) and unsure answers (predict --min-confidence)."""
import json

import numpy as np
import pytest

from cnnfruit.nn.architecture import init_parameters
from cnnfruit.inference.classifier import Classifier, Evaluation
from cnnfruit.data.datasets import Split, load_embedded
from cnnfruit.inference.mistakes import confident_mistakes

from helpers import cli, tiny_arch


def test_mistakes_come_most_confident_first_with_their_files():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.7, 0.3]])
    labels = np.array([0, 0, 0, 0, 1])
    evaluation = Evaluation(0.2, 1.0, labels, probs.argmax(axis=1), ["x", "y"], probs)
    split = Split(np.zeros((5, 32, 32, 3), np.uint8), labels, [f"f{i}.png" for i in range(5)])
    mistakes = confident_mistakes(evaluation, split, top=3)
    assert [(m.index, m.path, m.true, m.predicted) for m in mistakes] == [
        (3, "f3.png", "x", "y"), (1, "f1.png", "x", "y"), (4, "f4.png", "y", "x")]
    assert mistakes[0].confidence == 0.95 and mistakes[0].true_probability == 0.05
    assert confident_mistakes(evaluation, None, top=16)[0].path is None


def test_the_embedded_set_knows_its_files():
    data = load_embedded()
    assert len(data.test.paths) == len(data.test) and data.test.paths[0].startswith("test/Carambula/")
    assert len(data.train.paths) == len(data.train)


@pytest.fixture
def model(tmp_path):
    arch = tiny_arch()
    path = tmp_path / "m.npz"
    # scaled pixels keep the random network's probabilities away from exactly 0 and 1
    Classifier(arch, init_parameters(arch, np.random.default_rng(1)), ["apple", "kiwi", "plum"], "grey", "scale").save(path)
    return path


def test_eval_draws_and_lists_the_mistakes(tmp_path, model, image_folder):
    gallery = tmp_path / "gallery.png"
    result = cli("eval", model, "--data", image_folder, "--misclassified", gallery, "--top", 4, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    wrong = sum(sum(row) - row[i] for i, row in enumerate(report["confusion_matrix"]))
    assert len(report["mistakes"]) == min(4, wrong) > 0
    first = report["mistakes"][0]
    assert first["path"].startswith(str(image_folder / "test")) and first["true"] != first["predicted"]
    assert [m["confidence"] for m in report["mistakes"]] == sorted((m["confidence"] for m in report["mistakes"]),
                                                                    reverse=True)
    assert gallery.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_says_unsure_below_the_threshold(model, image_folder):
    photo = sorted((image_folder / "test" / "kiwi").iterdir())[0]
    sure = json.loads(cli("predict", model, photo, "--json").output)[0]
    top = max(sure["probabilities"].values())
    assert sure["class"] is not None
    unsure = json.loads(cli("predict", model, photo, "--json", "--min-confidence", min(1, top + 1e-6)).output)[0]
    assert unsure["class"] is None and unsure["probabilities"] == sure["probabilities"]
    text = cli("predict", model, photo, "--min-confidence", 1).output
    assert text.split()[:2] == [str(photo), "unsure"]
    assert cli("predict", model, photo, "--min-confidence", 1.5).exit_code == 2
