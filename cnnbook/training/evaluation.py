"""Evaluating a trained classifier: class probabilities (with test-time flips) and accuracy.

:func:`evaluate` is the accuracy the book, the benchmarks and
:func:`cnnbook.training.train.fit_cifar`'s
callers report: the top-1 accuracy (:func:`cnnbook.training.metrics.top1_accuracy`) of the softmax
of the
model's logits, optionally averaged with those of the mirrored images.
"""

from __future__ import annotations

import keras
import numpy as np

from cnnbook.training import metrics

__all__ = ["predict_probabilities", "evaluate", "check_images"]


def check_images(part: str, pair, model: keras.Model):
    """``(images, labels)`` of ``pair`` as arrays (labels flattened), or ``ValueError`` naming
    ``part`` when ``pair`` is not a pair or its images do not fit ``model``'s input."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{part} must be a pair (images, labels), got {type(pair).__name__}")
    images, labels = np.asarray(pair[0]), np.asarray(pair[1]).reshape(-1)
    expected = tuple(model.input.shape[1:])
    if images.shape[1:] != expected or len(images) != len(labels):
        raise ValueError(
            f"{part} must hold images of shape (N, {', '.join(map(str, expected))}) and N labels, "
            f"got {images.shape} and {labels.shape}"
        )
    return images, labels


def predict_probabilities(model: keras.Model, images, batch_size: int = 500, flip: bool = False):
    """Class probabilities ``softmax(logits)`` for ``images``; with ``flip=True`` the mean of those
    of each image and its mirror image (test-time flip augmentation)."""
    images = np.asarray(images)

    def probabilities(batch):
        logits = model.predict(batch, batch_size=batch_size, verbose=0)
        return keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype("float32"), axis=-1))

    result = probabilities(images)
    if flip:
        result = (result + probabilities(images[:, :, ::-1])) / 2
    return result


def evaluate(model: keras.Model, test, batch_size: int = 500, flip: bool = False) -> float:
    """Accuracy of ``model`` on ``test = (images, labels)``: the fraction of images whose most
    probable class (:func:`predict_probabilities`, with test-time flips if ``flip``) is the label
    (:func:`cnnbook.training.metrics.top1_accuracy`)."""
    images, labels = check_images("test", test, model)
    return metrics.top1_accuracy(predict_probabilities(model, images, batch_size, flip), labels)
