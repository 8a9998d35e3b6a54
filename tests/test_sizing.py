"""cnnbook.counting.sizing agrees with Keras/TensorFlow on every combination Keras accepts, and
rejects bad
input with a message that names the argument."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from cnnbook.counting.sizing import (
    conv_output_size,
    layer_output_shape,
    measured_receptive_field,
    receptive_field,
    receptive_field_growth,
    same_padding,
    shape_table,
)
from cnnbook.nets.models import toy_cnn

SIZES = range(1, 14)
KERNELS = range(1, 6)
STRIDES = range(1, 4)
DILATIONS = range(1, 4)


def _keras_accepts(size, kernel, stride, dilation, padding):
    span = dilation * (kernel - 1) + 1
    if stride > 1 and dilation > 1:
        return False  # Keras: "strides > 1 not supported in conjunction with dilation_rate > 1"
    if padding == "valid" and span > size:
        return False  # Keras: "Computed output size would be zero or negative"
    return True


def _sweep():
    for size, kernel, stride, dilation, padding in itertools.product(
        SIZES, KERNELS, STRIDES, DILATIONS, ("valid", "same")
    ):
        if _keras_accepts(size, kernel, stride, dilation, padding):
            yield size, kernel, stride, dilation, padding


def keras_conv_length(size, kernel, stride=1, padding="valid", dilation=1) -> int:
    """Length of the output of ``keras.ops.conv`` (the op that ``Conv2D`` calls) over a
    ``size x 1`` input: Keras itself, without building a thousand layers."""
    output = keras.ops.conv(np.zeros((1, size, 1, 1), "float32"),
                            np.ones((kernel, 1, 1, 1), "float32"), strides=(stride, 1),
                            padding=padding, dilation_rate=(dilation, 1))
    return int(output.shape[1])


def test_conv_output_size_matches_keras_conv2d_on_a_sweep():
    checked = 0
    for size, kernel, stride, dilation, padding in _sweep():
        keras_size = keras_conv_length(size, kernel, stride, padding, dilation)
        ours = conv_output_size(size, kernel, stride, padding, dilation)
        assert ours == keras_size, (size, kernel, stride, dilation, padding)
        checked += 1
    assert checked > 500
    # the op is the one Conv2D runs: spot-check one strided, one dilated case with the layer
    for size, kernel, stride, dilation, padding in ((13, 3, 2, 1, "same"), (12, 3, 1, 3, "valid")):
        layer = keras.layers.Conv2D(1, (kernel, 1), strides=(stride, 1),
                                    dilation_rate=(dilation, 1), padding=padding)
        assert layer(np.zeros((1, size, 1, 1), "float32")).shape[1] == keras_conv_length(
            size, kernel, stride, padding, dilation)


def test_conv_output_size_matches_keras_max_pooling_on_a_sweep():
    paddings = ("valid", "same")
    for size, pool, stride, padding in itertools.product(SIZES, KERNELS, STRIDES, paddings):
        if padding == "valid" and pool > size:
            continue
        layer = keras.layers.MaxPooling2D((pool, 1), strides=(stride, 1), padding=padding)
        keras_size = layer(np.zeros((1, size, 1, 1), "float32")).shape[1]
        assert conv_output_size(size, pool, stride, padding) == keras_size, (
            size, pool, stride, padding)


def test_explicit_zero_padding_matches_keras_zero_padding_then_valid_conv():
    for size, kernel, stride, pad in itertools.product(range(1, 10), KERNELS, STRIDES, range(0, 3)):
        if kernel > size + 2 * pad:
            continue
        assert conv_output_size(size, kernel, stride, pad) == keras_conv_length(
            size + 2 * pad, kernel, stride, "valid"), (size, kernel, stride, pad)
    padding = keras.layers.ZeroPadding2D(((2, 2), (0, 0)))  # Keras pads P zeros on each side
    assert padding(np.zeros((1, 5, 1, 1), "float32")).shape[1] == 5 + 2 * 2


def test_same_padding_reproduces_tensorflow_same_convolution_exactly():
    """Padding the input by (before, after) explicitly and convolving with "valid" gives exactly
    TensorFlow's "same" output, including the asymmetric split of an odd total. (The oracle is
    ``tf.nn.convolution``, the op under Keras' ``Conv2D``, called directly: a thousand layers
    would take minutes to build.)"""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    asymmetric_seen = False
    checked = set()
    for size, kernel, stride, dilation, _ in _sweep():
        if (size, kernel, stride, dilation) in checked:
            continue  # _sweep lists each case once per padding mode
        checked.add((size, kernel, stride, dilation))
        before, after = same_padding(size, kernel, stride, dilation)
        asymmetric_seen |= before != after
        signal = rng.normal(size=(1, size, 1, 1)).astype("float32")
        weights = rng.normal(size=(kernel, 1, 1, 1)).astype("float32")
        options = {"strides": (stride, 1), "dilations": (dilation, 1)}
        expected = tf.nn.convolution(signal, weights, padding="SAME", **options)
        padded = np.pad(signal, ((0, 0), (before, after), (0, 0), (0, 0)))
        explicit = tf.nn.convolution(padded, weights, padding="VALID", **options)
        np.testing.assert_allclose(explicit, expected, rtol=1e-5, atol=1e-6)
    assert asymmetric_seen and len(checked) > 300


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [(5, 2, 1, (0, 1)), (5, 3, 2, (1, 1)), (6, 3, 2, (0, 1)), (32, 3, 1, (1, 1)),
     (7, 1, 3, (0, 0))],
)
def test_same_padding_known_cases(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_output_size_of_the_worked_examples():
    # CS231n: AlexNet's first layer, 227x227 input, 11x11 stride 4, no padding -> 55
    assert conv_output_size(227, 11, 4) == 55
    # 224 does not divide: (224 - 11) / 4 + 1 = 54.25 -> TensorFlow floors to 54
    assert conv_output_size(224, 11, 4) == 54
    with pytest.raises(ValueError, match="not an integer"):
        conv_output_size(224, 11, 4, strict=True)
    # The 28x28 example: 5x5 filters, stride 1, without and with padding 2
    assert conv_output_size(28, 5, 1, 0) == 24
    assert conv_output_size(28, 5, 1, 2) == 28


@pytest.mark.parametrize(
    "layers",
    [
        [(3, 1, 1)] * 3,
        [(3, 1, 1), (2, 2, 1), (3, 1, 1), (2, 2, 1), (3, 1, 1)],
        [(3, 1, 1), (3, 1, 2), (3, 1, 4)],
        [(7, 2, 1), (3, 2, 1), (3, 1, 1)],
    ],
)
def test_receptive_field_matches_the_gradient_footprint_in_keras(layers):
    """The oracle: the input rows with a non-zero gradient of the centre output of the same stack
    built in Keras (``measured_receptive_field`` shares no code with the rule)."""
    assert receptive_field(layers) == measured_receptive_field(layers)


def test_receptive_field_growth_of_stacked_3x3_convolutions():
    assert receptive_field_growth([(3, 1)] * 4) == [3, 5, 7, 9]
    assert receptive_field([]) == 1
    # dilations 1, 2, 4 (Yu and Koltun): 3, 7, 15
    assert receptive_field_growth([(3, 1, 1), (3, 1, 2), (3, 1, 4)]) == [3, 7, 15]


def test_shape_table_of_the_toy_network_matches_keras_and_the_rules():
    model = toy_cnn()
    table = shape_table(model)
    assert list(table["layer"]) == ["image", "normalize", "conv", "relu", "pool", "flatten", "fc"]
    assert list(table["output_shape"]) == [
        (32, 32, 3), (32, 32, 3), (32, 32, 12), (32, 32, 12), (16, 16, 12), (3072,), (10,)
    ]
    assert table["matches"].dtype == bool and table["matches"].all()
    assert list(table["rule_shape"]) == list(table["output_shape"])


def test_shape_table_refuses_a_layer_without_a_rule_instead_of_skipping_it():
    """A ``None`` in ``matches`` would pass ``table["matches"].all()`` silently (pandas skips
    it): the table raises instead, naming the layer, for an unknown type and for a merge."""
    assert layer_output_shape(keras.layers.Reshape((4, 4)), (16,)) is None
    inputs = keras.Input((16,))
    reshaped = keras.Model(inputs, keras.layers.Reshape((4, 4), name="to_grid")(inputs))
    with pytest.raises(NotImplementedError, match="'to_grid' of type Reshape"):
        shape_table(reshaped)
    images = keras.Input((8, 8, 3))
    added = keras.layers.Add(name="sum")([images, keras.layers.ReLU()(images)])
    with pytest.raises(NotImplementedError, match="'sum' of type Add"):
        shape_table(keras.Model(images, added))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"size": 0, "kernel": 3}, "size"),
        ({"size": -4, "kernel": 3}, "size"),
        ({"size": 8, "kernel": 0}, "kernel"),
        ({"size": 8, "kernel": 3, "stride": 0}, "stride"),
        ({"size": 8, "kernel": 3, "dilation": 0}, "dilation"),
        ({"size": 8.0, "kernel": 3}, "size"),
        ({"size": 8, "kernel": 2.5}, "kernel"),
        ({"size": 8, "kernel": 3, "stride": True}, "stride"),
        ({"size": 8, "kernel": 3, "padding": "full"}, "padding"),
        ({"size": 8, "kernel": 3, "padding": -1}, "padding"),
        ({"size": 8, "kernel": 3, "padding": 1.5}, "padding"),
        ({"size": 4, "kernel": 5}, "kernel"),
        ({"size": 4, "kernel": 3, "dilation": 2}, "kernel"),
        ({"size": "32", "kernel": 3}, "size"),
    ],
)
def test_conv_output_size_rejects_bad_input_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        conv_output_size(**kwargs)


def test_kernel_that_fits_only_with_padding_is_accepted():
    assert conv_output_size(4, 5, padding=1) == 2
    assert conv_output_size(4, 5, padding="same") == 4


@pytest.mark.parametrize(
    "args, argument",
    [((0, 3), "size"), ((8, 0), "kernel"), ((8, 3, 0), "stride"), ((8, 3, 1, 0), "dilation"),
     ((8.5, 3), "size")],
)
def test_same_padding_rejects_bad_input(args, argument):
    with pytest.raises(ValueError, match=argument):
        same_padding(*args)


@pytest.mark.parametrize(
    "layers, fragment",
    [([(3,)], "layers\\[0\\]"), ([(3, 1), 5], "layers\\[1\\]"), ([(3, 0)], "stride"),
     ([(0, 1)], "kernel"), ([(3, 1, 0)], "dilation")],
)
def test_receptive_field_rejects_bad_layers(layers, fragment):
    with pytest.raises(ValueError, match=fragment):
        receptive_field(layers)
