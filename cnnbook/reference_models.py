"""The networks of the ``architectures`` assignment, as the accuracy grader builds them itself.

``python -m cnnbook.grade accuracy`` loads only a student's weights, by layer name and shape, into
a network it builds here, apart from the notebook's solution, so that what is measured is the
architecture asked for and nothing else the submitted file computes. The layer names are those the
notebook (``solutions/architectures/architectures.ipynb``, part 6) asks for.

Both networks: ``image`` (32x32x3, values 0..255), ``normalize``, a plain stem
``stem_conv``/``_bn``/``_relu`` (3x3, 32 filters), five blocks ``block1`` .. ``block5`` with a 2x2
max pooling ``pool1`` after block 1 and ``pool2`` after block 3, global average pooling ``pool``
and 10 ``logits``.

* :func:`reference_plain_cnn`: each block a 3x3 convolution (no bias) ``block{i}_conv``, batch
  norm ``_bn``, ReLU ``_relu``; widths :data:`PLAIN_WIDTHS`. 38,634,752 MACs per image.
* :func:`reference_separable_cnn`: each block a depthwise 3x3 ``block{i}_dw`` (no bias), ``_dw_bn``,
  ``_dw_relu``, a pointwise 1x1 ``_pw`` (no bias), ``_pw_bn``, ``_pw_relu``; widths
  :data:`SEPARABLE_WIDTHS`, about 3.25 times as wide for about the same MACs (38,896,704).

Importing this module does not import Keras (the grader's module must stay cheap to import).
"""

from __future__ import annotations

__all__ = ["PLAIN_WIDTHS", "SEPARABLE_WIDTHS", "reference_plain_cnn", "reference_separable_cnn"]

STEM_FILTERS = 32
PLAIN_WIDTHS = (32, 64, 64, 128, 128)
"""Filters of blocks 1..5 of the plain CNN."""
SEPARABLE_WIDTHS = (104, 208, 208, 416, 416)
"""Filters (pointwise outputs) of blocks 1..5 of the separable CNN."""
_POOL_AFTER = {1: "pool1", 3: "pool2"}


def _network(block, widths, name):
    import keras

    from cnnbook.models import image_input, normalization_layer

    images = image_input()
    x = normalization_layer()(images)
    x = keras.layers.Conv2D(STEM_FILTERS, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for index, filters in enumerate(widths, start=1):
        x = block(keras, x, filters, f"block{index}")
        if index in _POOL_AFTER:
            x = keras.layers.MaxPooling2D(2, name=_POOL_AFTER[index])(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(images, keras.layers.Dense(10, name="logits")(x), name=name)


def _plain_block(keras, x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _separable_block(keras, x, filters, name):
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_dw_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(name=f"{name}_pw_relu")(x)


def reference_plain_cnn():
    """The plain CNN of the ``architectures`` assignment (289,642 parameters, count_params)."""
    return _network(_plain_block, PLAIN_WIDTHS, "plain_cnn")


def reference_separable_cnn():
    """The depthwise separable CNN of the ``architectures`` assignment (350,962 parameters)."""
    return _network(_separable_block, SEPARABLE_WIDTHS, "separable_cnn")
