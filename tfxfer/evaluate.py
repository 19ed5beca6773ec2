"""Validation metrics from logits: accuracy, loss, per-class accuracy, confusion matrix.

Example:
    >>> import numpy as np
    >>> from tfxfer.evaluate import metrics_from_logits
    >>> m = metrics_from_logits(np.array([[2., 0.], [0., 1.], [3., 0.]]), np.array([0, 1, 1]),
    ...                         ["a", "b"])
    >>> m["val_accuracy"], m["confusion_matrix"]
    (0.6667, [[1, 0], [1, 1]])
"""

from __future__ import annotations

import numpy as np


def metrics_from_logits(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """The ``metrics.json`` content. Rows of the confusion matrix are true classes."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    pred = logits.argmax(axis=1)
    k = len(class_names)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {
        name: round(float(confusion[i, i] / max(1, confusion[i].sum())), 4)
        for i, name in enumerate(class_names)
    }
    return {
        "val_accuracy": round(float((pred == labels).mean()), 4),
        "val_loss": round(float(-log_probs[np.arange(len(labels)), labels].mean()), 4),
        "num_val": int(len(labels)),
        "correct": int((pred == labels).sum()),
        "per_class_accuracy": per_class,
        "class_names": list(class_names),
        "confusion_matrix": confusion.tolist(),
    }
