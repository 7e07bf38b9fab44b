"""Classification metrics: confusion matrix, per-class precision and recall, balanced accuracy."""
import numpy as np


def confusion_matrix(labels, predictions, classes):
    """(M, M) counts; row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def balanced_accuracy(matrix):
    """The mean of the per-class recalls, over the classes that have images (rows of the (M, M)
    confusion matrix with a non-zero sum): what accuracy would be if every class were equally
    common, so a model that ignores a rare class cannot score well. 0 for no images at all."""
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def classification_report(labels, predictions, class_names):
    """A JSON-ready dict: accuracy, balanced accuracy, per-class precision/recall/support, and the
    confusion matrix."""
    matrix = confusion_matrix(labels, predictions, len(class_names))
    per_class = []
    for m, name in enumerate(class_names):
        predicted, support = matrix[:, m].sum(), matrix[m, :].sum()
        per_class.append({
            "class": name,
            "precision": float(matrix[m, m] / predicted) if predicted else 0.0,
            "recall": float(matrix[m, m] / support) if support else 0.0,
            "support": int(support),
        })
    return {
        "images": int(len(labels)),
        "accuracy": float(np.trace(matrix) / max(len(labels), 1)),
        "balanced_accuracy": balanced_accuracy(matrix),
        "per_class": per_class,
        "class_names": list(class_names),
        "confusion_matrix": matrix.tolist(),
    }
