"""Classification metrics: confusion matrix, per-class precision and recall."""
import numpy as np


def confusion_matrix(labels, predictions, classes):
    """(M, M) counts; row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_report(labels, predictions, class_names):
    """A JSON-ready dict: accuracy, per-class precision/recall/support, and the confusion matrix."""
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
        "per_class": per_class,
        "class_names": list(class_names),
        "confusion_matrix": matrix.tolist(),
    }
