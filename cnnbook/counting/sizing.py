"""Sizing a CNN: output sizes, padding and receptive fields.

The rules here are the ones the chapter "Sizing a CNN" (``book/sizing.md``) derives, written so
that they agree with Keras/TensorFlow for every combination Keras accepts (``tests/test_sizing.py``
checks them against real ``Conv2D`` and ``MaxPooling2D`` layers).

Notation, along one spatial axis: input size ``W``, kernel size ``F``, stride ``S``, zero padding
``P`` on each side, dilation ``D``. A dilated kernel covers ``F_eff = D * (F - 1) + 1`` input
positions.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np

from cnnbook.checks import check_int as _check_int

__all__ = [
    "effective_kernel_size",
    "conv_output_size",
    "same_padding",
    "receptive_field",
    "receptive_field_growth",
    "layer_output_shape",
    "shape_table",
    "measured_receptive_field",
]

PADDING_MODES = ("valid", "same")




def effective_kernel_size(kernel: int, dilation: int = 1) -> int:
    """Input positions a dilated kernel spans: ``F_eff = D * (F - 1) + 1``."""
    kernel = _check_int("kernel", kernel, 1)
    dilation = _check_int("dilation", dilation, 1)
    return dilation * (kernel - 1) + 1


def conv_output_size(size, kernel, stride=1, padding="valid", dilation=1, *, strict=False) -> int:
    """Output size of a convolution or pooling window along one axis.

    * explicit zero padding ``P`` (an int, zeros on each side):
      ``floor((W - F_eff + 2P) / S) + 1``;
    * ``"valid"`` is the same rule with ``P = 0``;
    * ``"same"`` (Keras/TensorFlow): ``ceil(W / S)``, whatever the kernel; TensorFlow pads
      ``max((ceil(W/S) - 1) * S + F_eff - W, 0)`` zeros in total, see :func:`same_padding`.

    When ``(W - F_eff + 2P)`` is not a multiple of ``S`` the last window does not fit: TensorFlow
    (and PyTorch) drop the input rows it would need, which is the ``floor``. With ``strict=True``
    such a combination raises ``ValueError`` instead, as the CS231n notes' "invalid
    hyperparameters" do.

    Raises ``ValueError`` for a size, kernel, stride or dilation that is not an integer >= 1, a
    negative or non-integer padding, an unknown padding string, or a kernel that does not fit in
    the padded input.
    """
    size = _check_int("size", size, 1)
    kernel = _check_int("kernel", kernel, 1)
    stride = _check_int("stride", stride, 1)
    dilation = _check_int("dilation", dilation, 1)
    span = effective_kernel_size(kernel, dilation)

    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in PADDING_MODES:
            raise ValueError(
                f"padding must be 'valid', 'same' or a non-negative integer, got {padding!r}"
            )
        if mode == "same":
            return math.ceil(size / stride)
        pad_each_side = 0
    else:
        pad_each_side = _check_int("padding", padding, 0)

    padded_size = size + 2 * pad_each_side
    if span > padded_size:
        raise ValueError(
            f"kernel (dilated span {span}) does not fit in the padded input of size {padded_size}: "
            f"use a kernel of at most {padded_size} positions, more padding, or padding='same'"
        )
    if strict and (padded_size - span) % stride != 0:
        raise ValueError(
            "(size - kernel + 2*padding) / stride = "
            f"({size} - {span} + 2*{pad_each_side}) / {stride} is not an integer: the last "
            f"{(padded_size - span) % stride} input position(s) would be dropped; change the "
            "stride, kernel or padding"
        )
    return (padded_size - span) // stride + 1


def same_padding(size, kernel, stride=1, dilation=1) -> tuple[int, int]:
    """Zeros TensorFlow adds before and after an axis for ``padding="same"``.

    ``total = max((ceil(W/S) - 1) * S + F_eff - W, 0)``; ``before = total // 2`` and
    ``after = total - before``: an odd total puts the extra zero at the end (bottom/right),
    unlike a symmetric explicit padding.
    """
    size = _check_int("size", size, 1)
    kernel = _check_int("kernel", kernel, 1)
    stride = _check_int("stride", stride, 1)
    dilation = _check_int("dilation", dilation, 1)
    span = effective_kernel_size(kernel, dilation)
    output_size = math.ceil(size / stride)
    total = max((output_size - 1) * stride + span - size, 0)
    before = total // 2
    return before, total - before


def _layer_triples(layers: Iterable[Sequence[int]]) -> list[tuple[int, int, int]]:
    triples = []
    for index, layer in enumerate(layers):
        if isinstance(layer, numbers.Integral) or len(layer) not in (2, 3):
            raise ValueError(
                f"layers[{index}] must be (kernel, stride) or (kernel, stride, dilation), "
                f"got {layer!r}"
            )
        kernel, stride, *rest = layer
        dilation = rest[0] if rest else 1
        triples.append(
            (
                _check_int(f"layers[{index}] kernel", kernel, 1),
                _check_int(f"layers[{index}] stride", stride, 1),
                _check_int(f"layers[{index}] dilation", dilation, 1),
            )
        )
    return triples


def receptive_field_growth(layers) -> list[int]:
    """Receptive field (in input pixels, along one axis) after each layer of a stack.

    With ``r_0 = 1`` and jump (distance in input pixels between adjacent outputs) ``j_0 = 1``:
    ``r_l = r_{l-1} + (F_eff,l - 1) * j_{l-1}`` and ``j_l = j_{l-1} * S_l``.
    ``layers`` is a list of ``(kernel, stride)`` or ``(kernel, stride, dilation)``.
    """
    field, jump, growth = 1, 1, []
    for kernel, stride, dilation in _layer_triples(layers):
        field += (effective_kernel_size(kernel, dilation) - 1) * jump
        jump *= stride
        growth.append(field)
    return growth


def receptive_field(layers) -> int:
    """Receptive field of the last layer of a stack: see :func:`receptive_field_growth`.

    An empty stack sees one pixel.
    """
    growth = receptive_field_growth(layers)
    return growth[-1] if growth else 1


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return (int(value), int(value))


def layer_output_shape(layer, input_shape: Sequence[int]) -> tuple[int, ...] | None:
    """The output shape (without the batch axis) that the sizing rules predict for a Keras layer.

    Covers ``Conv2D`` (and ``DepthwiseConv2D``/``SeparableConv2D``), 2-D max/average pooling,
    global pooling, ``ZeroPadding2D``, ``Flatten``, ``Dense`` and the shape-keeping layers
    (activations, batch norm, dropout, rescaling, normalization). Returns ``None`` for a layer
    type the chapter has no rule for. Assumes channels-last data.
    """
    kind = type(layer).__name__
    config = layer.get_config()
    if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D"):
        height, width, channels = input_shape
        if "Pooling" in kind:
            kernel = _pair(config["pool_size"])
            stride = _pair(config["strides"] or config["pool_size"])
            dilation = (1, 1)
        else:
            kernel = _pair(config["kernel_size"])
            stride = _pair(config["strides"])
            dilation = _pair(config["dilation_rate"])
        out = [
            conv_output_size(size, k, s, config["padding"], d)
            for size, k, s, d in zip((height, width), kernel, stride, dilation, strict=True)
        ]
        if kind == "DepthwiseConv2D":
            out_channels = channels * config["depth_multiplier"]
        elif "Pooling" in kind:
            out_channels = channels
        else:
            out_channels = config["filters"]
        return (out[0], out[1], out_channels)
    if kind == "ZeroPadding2D":
        (top, bottom), (left, right) = config["padding"]
        height, width, channels = input_shape
        return (height + top + bottom, width + left + right, channels)
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        if config.get("keepdims"):
            return (1, 1, input_shape[-1])
        return (input_shape[-1],)
    if kind == "Flatten":
        return (math.prod(input_shape),)
    if kind == "Dense":
        return (*input_shape[:-1], config["units"])
    if kind in (
        "Activation", "ReLU", "BatchNormalization", "Dropout", "Rescaling", "Normalization",
        "InputLayer", "LayerNormalization",
    ):
        return tuple(input_shape)
    return None


def _shape_without_batch(tensor) -> tuple:
    return tuple(tensor.shape[1:])


def shape_table(model):
    """One row per layer of a built Keras model, as a pandas DataFrame.

    Columns: ``layer`` (name), ``type`` (class name), ``output_shape`` (Keras' own, without the
    batch axis), ``rule_shape`` (what :func:`layer_output_shape` predicts from the layer's input
    shape) and ``matches`` (a bool: the two agree). The book prints it and asserts ``matches``;
    the input layer is the first row. A layer without a rule (or with several inputs) raises
    ``NotImplementedError`` naming it, so ``table["matches"].all()`` never passes over a layer
    the rules cannot predict.
    """
    import pandas as pd  # slow to import: only the table needs it, not the sizing rules

    rows = []
    for layer in model.layers:
        output_shape = _shape_without_batch(layer.output)
        if type(layer).__name__ == "InputLayer":
            rule_shape = output_shape
        else:
            inputs = layer.input
            rule_shape = (
                layer_output_shape(layer, _shape_without_batch(inputs))
                if not isinstance(inputs, (list, tuple))
                else None
            )
        if rule_shape is None:
            raise NotImplementedError(
                f"cnnbook.counting.sizing has no shape rule for layer {layer.name!r} of type "
                f"{type(layer).__name__} (one input, channels last): shape_table does not mark a "
                "layer it cannot predict as matching; add a rule to layer_output_shape or "
                "tabulate a model without that layer"
            )
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": output_shape,
                "rule_shape": rule_shape,
                "matches": rule_shape == output_shape,
            }
        )
    return pd.DataFrame(rows, columns=["layer", "type", "output_shape", "rule_shape", "matches"])


def measured_receptive_field(layers, size: int = 96) -> int:
    """The receptive field of a stack of ``(kernel, stride, dilation)`` convolutions measured in
    Keras, independently of :func:`receptive_field`'s rule: build the stack as ``Conv2D`` layers
    (one filter, all-ones kernels, no bias) on a ``size x size`` image of ones and return the
    width of the input region whose gradient with respect to the centre output is non-zero.

    ``size`` must leave at least one output; 96 suits the chapter's stacks.
    """
    # Keras and TensorFlow take seconds to import: the sizing rules of this module need neither,
    # only this measurement does
    import keras
    import tensorflow as tf  # as above

    size = _check_int("size", size, 1)
    model = keras.Sequential([keras.Input((size, size, 1))] + [
        keras.layers.Conv2D(1, kernel, strides=stride, dilation_rate=dilation,
                            kernel_initializer="ones", use_bias=False)
        for kernel, stride, dilation in _layer_triples(layers)
    ])
    image = tf.ones((1, size, size, 1))
    with tf.GradientTape() as tape:
        tape.watch(image)
        output = model(image)
        centre = output[0, output.shape[1] // 2, output.shape[2] // 2, 0]
    gradient = tape.gradient(centre, image).numpy()[0, :, :, 0]
    touched = np.flatnonzero(np.abs(gradient).sum(axis=1))  # the rows the centre output reads
    return int(touched[-1] - touched[0] + 1)
