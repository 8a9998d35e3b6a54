"""Top-1 accuracy, written once for the trainer, the lesion studies and the accuracy grader.

A prediction is correct when the class with the largest score is the label. Scores may be
logits or probabilities: softmax keeps the order, so the argmax is the same. Ties go to the
lowest class index (``numpy.argmax``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["top1_correct", "top1_accuracy"]


def _scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(
            f"scores must be (N, classes) and labels N integers, got shapes {scores.shape} and "
            f"{labels.shape}"
        )
    return scores, labels


def top1_correct(scores, labels) -> int:
    """How many rows of ``scores`` (shape ``(N, classes)``) have their largest score at the
    integer label: ``sum_i [argmax_c scores[i, c] == labels[i]]``. For counting batch by batch."""
    scores, labels = _scores_and_labels(scores, labels)
    return int(np.sum(np.argmax(scores, axis=-1) == labels))


def top1_accuracy(scores, labels) -> float:
    """The share of rows whose largest score is the label: :func:`top1_correct` ``/ N``.
    ``ValueError`` for no rows, or shapes that do not pair one label with each row."""
    scores, labels = _scores_and_labels(scores, labels)
    if len(labels) == 0:
        raise ValueError("top-1 accuracy needs at least one example, got none")
    return top1_correct(scores, labels) / len(labels)
