"""The mistakes a classifier is surest of: where to look first when it is wrong.

    evaluation = clf.evaluate(data.test)
    for m in confident_mistakes(evaluation, data.test, top=16):
        print(m.path, m.true, "->", m.predicted, f"{m.confidence:.0%}")
"""
from dataclasses import asdict, dataclass

import numpy as np

from cnnfruit.errors import CnnfruitError


@dataclass
class Mistake:
    index: int  # the image's position in the split
    path: str  # its file, or None when the split does not know it
    true: str
    predicted: str
    confidence: float  # the probability given to the predicted class
    true_probability: float  # and to the true one

    def to_dict(self):
        return asdict(self)


def confident_mistakes(evaluation, split=None, top=16):
    """The `top` wrongly classified images of an Evaluation, the most confident first (ties: in order).

    split: the Split that was evaluated, for the file paths (Split.paths) of the images.
    """
    if evaluation.probabilities is None:
        raise CnnfruitError("the evaluation holds no probabilities; make it with Classifier.evaluate")
    if top < 1:
        raise CnnfruitError(f"top must be at least 1, got {top}")
    probs, labels, predictions = evaluation.probabilities, evaluation.labels, evaluation.predictions
    wrong = np.flatnonzero(predictions != labels)
    confidence = probs[wrong, predictions[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:top]
    paths = split.paths if split is not None and len(split.paths) == len(labels) else None
    names = evaluation.class_names
    return [Mistake(int(i), paths[i] if paths else None, names[labels[i]], names[predictions[i]],
                    float(probs[i, predictions[i]]), float(probs[i, labels[i]])) for i in order]
