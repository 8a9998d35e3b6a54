"""cnnbook.training.metrics against Keras' own accuracy metric, and its argument checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnbook.training import metrics


def test_top1_accuracy_equals_keras_sparse_categorical_accuracy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(257, 10)).astype("float32")
    labels = rng.integers(0, 10, size=257)
    keras_metric = keras.metrics.SparseCategoricalAccuracy()
    keras_metric.update_state(labels, logits)
    assert metrics.top1_accuracy(logits, labels) == pytest.approx(float(keras_metric.result()))
    assert metrics.top1_correct(logits, labels.reshape(-1, 1)) == round(
        float(keras_metric.result()) * 257)


def test_softmax_does_not_change_the_top1_prediction():
    logits = np.array([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0], [0.5, 0.2, 0.9]])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = [0, 2, 2]
    assert metrics.top1_accuracy(logits, labels) == metrics.top1_accuracy(probabilities, labels)
    assert metrics.top1_correct(logits, labels) == 2


@pytest.mark.parametrize("scores, labels, message", [
    (np.zeros((3, 10)), [1, 2], "labels N integers"),
    (np.zeros(10), [1] * 10, r"scores must be \(N, classes\)"),
    (np.zeros((0, 10)), [], "at least one example"),
])
def test_bad_shapes_raise(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        metrics.top1_accuracy(scores, labels)
