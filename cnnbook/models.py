"""Keras 3 functional models used by the book, the assignments and the tests.

Every model takes raw images (values 0..255, shape 32x32x3, channels last) and normalises them
with its own first layer, so a saved ``.keras`` model evaluates raw test images the same way in
the book, in a student's notebook and in the grader. The last layer outputs logits (no softmax).
"""

from __future__ import annotations

import keras

# Per-channel statistics of the CIFAR-10 training images (R, G, B; 0..255), rounded as in
# ../shared/data/cifar10/README.md; the normalisation layer standardises with them.
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)
CIFAR10_SHAPE = (32, 32, 3)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


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


def toy_cnn(num_classes: int = 10, filters: int = 12, kernel_size: int = 3) -> keras.Model:
    """The toy network of the sizing chapter (CS231n's example):
    INPUT 32x32x3 -> CONV (12 filters, 3x3, "same") 32x32x12 -> RELU -> POOL (2x2) 16x16x12
    -> FC 10.

    Layer names: ``image``, ``normalize``, ``conv``, ``relu``, ``pool``, ``flatten``, ``fc``.
    """
    images = image_input()
    x = normalization_layer()(images)
    x = keras.layers.Conv2D(filters, kernel_size, padding="same", name="conv")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.MaxPooling2D(pool_size=2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(images, logits, name="toy_cnn")
