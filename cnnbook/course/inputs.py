"""The input end of every CIFAR model: a batch of raw images and the layer that normalises them.

The assignments hand these two helpers to students (:data:`cnnbook.grading.verdicts.STUDENT_MODULES`
lists this module among the few files of ``cnnbook`` a graded student process can import), and
the book's and the grader's models start with them, so that a saved ``.keras`` model evaluates raw
test images the same way everywhere.
"""

from __future__ import annotations

import keras

from cnnbook.course.data import CIFAR10_MEAN, CIFAR10_SHAPE, CIFAR10_STD

__all__ = ["normalization_layer", "image_input"]


def normalization_layer(name: str = "normalize") -> keras.layers.Normalization:
    """``(x - mean) / std`` per channel with the CIFAR-10 training statistics (a built-in,
    serialisable Keras layer: no ``Lambda``)."""
    return keras.layers.Normalization(
        mean=list(CIFAR10_MEAN),
        variance=[std**2 for std in CIFAR10_STD],
        name=name,
    )


def image_input(name: str = "image") -> keras.KerasTensor:
    """The input of every CIFAR model: a batch of raw 32x32x3 images, values 0..255."""
    return keras.Input(shape=CIFAR10_SHAPE, name=name)
