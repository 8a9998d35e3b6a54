"""The networks the accuracy grader builds itself: the ``resnet`` assignment's ResNet-20
(:func:`reference_resnet20`) and the two networks of the ``architectures`` assignment.

``python -m cnnbook.grading accuracy`` loads only a student's weights, by layer name and shape, into
a network it builds here, apart from the notebook's solution, so that what is measured is the
architecture asked for and nothing else the submitted file computes
(:data:`REFERENCE_ARCHITECTURES` names them as ``c.AccuracyGrader`` does). The layer names are
those the notebooks ask for.

The two networks of ``architectures`` (``solutions/architectures/architectures.ipynb``, part 6):
``image`` (32x32x3, values 0..255), ``normalize``, a plain stem
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

__all__ = ["PLAIN_WIDTHS", "SEPARABLE_WIDTHS", "reference_plain_cnn", "reference_separable_cnn",
           "reference_resnet20", "REFERENCE_ARCHITECTURES"]

STEM_FILTERS = 32
PLAIN_WIDTHS = (32, 64, 64, 128, 128)
"""Filters of blocks 1..5 of the plain CNN."""
SEPARABLE_WIDTHS = (104, 208, 208, 416, 416)
"""Filters (pointwise outputs) of blocks 1..5 of the separable CNN."""
_POOL_AFTER = {1: "pool1", 3: "pool2"}

# The grader's own description of the two networks: a layer list per block, as data. Each entry
# is (Keras layer class, name suffix, keyword arguments); the student's notebook builds the same
# layers with code of their own, which the grader never runs.
_BN = ("BatchNormalization", {"momentum": 0.9})
_BLOCK_LAYERS = {
    "plain": lambda filters: [
        ("Conv2D", "conv", {"filters": filters, "kernel_size": 3, "padding": "same",
                            "use_bias": False}),
        (_BN[0], "bn", _BN[1]),
        ("ReLU", "relu", {}),
    ],
    "separable": lambda filters: [
        ("DepthwiseConv2D", "dw", {"kernel_size": 3, "padding": "same", "use_bias": False}),
        (_BN[0], "dw_bn", _BN[1]),
        ("ReLU", "dw_relu", {}),
        ("Conv2D", "pw", {"filters": filters, "kernel_size": 1, "use_bias": False}),
        (_BN[0], "pw_bn", _BN[1]),
        ("ReLU", "pw_relu", {}),
    ],
}


def _layer_list(kind: str, widths) -> list[tuple[str, str, dict]]:
    """The whole network after normalisation, as (class, full name, kwargs) in order."""
    stem = [(cls, f"stem_{suffix}", dict(kwargs))
            for cls, suffix, kwargs in _BLOCK_LAYERS["plain"](STEM_FILTERS)]
    layers = list(stem)
    for index, filters in enumerate(widths, start=1):
        layers += [(cls, f"block{index}_{suffix}", dict(kwargs))
                   for cls, suffix, kwargs in _BLOCK_LAYERS[kind](filters)]
        if index in _POOL_AFTER:
            layers.append(("MaxPooling2D", _POOL_AFTER[index], {"pool_size": 2}))
    layers.append(("GlobalAveragePooling2D", "pool", {}))
    layers.append(("Dense", "logits", {"units": 10}))
    return layers


def _network(kind: str, widths, name: str):
    # Keras (and cnnbook.course's inputs and layers, which import it) take seconds: the accuracy
    # grader imports this module for REFERENCE_ARCHITECTURES and must stay cheap to import
    import keras

    from cnnbook.course.inputs import image_input, normalization_layer  # imports Keras

    images = image_input()
    tensor = normalization_layer()(images)
    for class_name, layer_name, kwargs in _layer_list(kind, widths):
        tensor = getattr(keras.layers, class_name)(name=layer_name, **kwargs)(tensor)
    return keras.Model(images, tensor, name=name)


def reference_plain_cnn():
    """The plain CNN of the ``architectures`` assignment (289,642 parameters, count_params)."""
    return _network("plain", PLAIN_WIDTHS, "plain_cnn")


def reference_separable_cnn():
    """The depthwise separable CNN of the ``architectures`` assignment (350,962 parameters)."""
    return _network("separable", SEPARABLE_WIDTHS, "separable_cnn")


def reference_resnet20():
    """The ResNet-20 of the ``resnet`` assignment (He et al. 2015, section 4.2, option A), with
    the layer names the notebook asks for: ``image``, ``normalize``, ``stem_conv``/``_bn``/
    ``_relu``, ``stage{s}_block{b}_conv1``/``_bn1``/``_relu1``/``_conv2``/``_bn2``/
    ``_shortcut``/``_add``/``_relu2`` and ``pool``, ``logits``. 269,722 trainable parameters.

    Written here, apart from the notebook's solution and from :mod:`cnnbook.nets.models`, so that
    the
    network a submission is measured with is the grader's own: only the weights come from the
    student."""
    import keras  # slow to import: only when a network is built (see _network)

    from cnnbook.course.inputs import image_input, normalization_layer  # imports Keras
    from cnnbook.course.layers import ZeroPadShortcut  # imports Keras

    images = image_input()
    x = normalization_layer()(images)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, filters in ((1, 16), (2, 32), (3, 64)):
        for block in (1, 2, 3):
            name, stride = f"stage{stage}_block{block}", (2 if stage > 1 and block == 1 else 1)
            branch = keras.layers.Conv2D(filters, 3, strides=stride, padding="same",
                                         use_bias=False, name=f"{name}_conv1")(x)
            branch = keras.layers.BatchNormalization(name=f"{name}_bn1")(branch)
            branch = keras.layers.ReLU(name=f"{name}_relu1")(branch)
            branch = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                         name=f"{name}_conv2")(branch)
            branch = keras.layers.BatchNormalization(name=f"{name}_bn2")(branch)
            shortcut = x if stride == 1 else ZeroPadShortcut(filters, stride,
                                                             name=f"{name}_shortcut")(x)
            x = keras.layers.ReLU(name=f"{name}_relu2")(
                keras.layers.Add(name=f"{name}_add")([branch, shortcut]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(images, keras.layers.Dense(10, name="logits")(x), name="resnet20")


REFERENCE_ARCHITECTURES = {"resnet20": reference_resnet20, "plain_cnn": reference_plain_cnn,
                           "separable_cnn": reference_separable_cnn}
"""Networks the accuracy grader can rebuild, by the name ``c.AccuracyGrader`` gives them."""
