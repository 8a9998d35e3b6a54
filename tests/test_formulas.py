"""cnnbook.counting.formulas against Keras' own weight counts (the oracle), its argument checks,
and the
one-home rule: the block formulas and the accounting rules call these very functions."""

from __future__ import annotations

import keras
import pytest

from cnnbook.counting import formulas
from cnnbook.nets import blocks


def keras_params(layer, input_shape) -> int:
    layer.build((None, *input_shape))
    return layer.count_params()


@pytest.mark.parametrize("make_layer, input_shape, formula", [
    (lambda: keras.layers.Conv2D(64, 3), (32, 32, 3), lambda: formulas.conv_params(3, 3, 64)),
    (lambda: keras.layers.Conv2D(6, (1, 7)), (9, 9, 5), lambda: formulas.conv_params((1, 7), 5, 6)),
    (lambda: keras.layers.Conv2D(64, 3, groups=4, use_bias=False), (8, 8, 32),
     lambda: formulas.conv_params(3, 32, 64, groups=4, use_bias=False)),
    (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 32),
     lambda: formulas.depthwise_conv_params(3, 32, 2)),
    (lambda: keras.layers.SeparableConv2D(64, 3), (8, 8, 32),
     lambda: formulas.separable_conv_params(3, 32, 64)),
    (lambda: keras.layers.Dense(4096), (25_088,), lambda: formulas.dense_params(25_088, 4096)),
    (lambda: keras.layers.BatchNormalization(), (8, 8, 64),
     lambda: formulas.batch_norm_params(64)),
], ids=["conv", "conv-1x7", "conv-grouped", "depthwise", "separable", "dense", "batch-norm"])
def test_parameter_formulas_equal_keras_count_params(make_layer, input_shape, formula):
    assert formula() == keras_params(make_layer(), input_shape)


def test_batch_norm_split_equals_keras_trainable_and_non_trainable_weights():
    layer = keras.layers.BatchNormalization(center=False)
    layer.build((None, 4, 4, 16))
    trainable = sum(w.numpy().size for w in layer.trainable_weights)
    non_trainable = sum(w.numpy().size for w in layer.non_trainable_weights)
    assert formulas.batch_norm_param_counts(16, center=False) == (trainable, non_trainable)


def test_mac_formulas_against_the_products_written_out():
    # each MAC is one weight times one input value: weights without bias x output positions
    assert formulas.conv_macs(30 * 30, 3, 3, 16) == 30 * 30 * formulas.conv_params(
        3, 3, 16, use_bias=False)
    assert formulas.conv_macs(10 * 10, 3, 4, 8, groups=2) == 10 * 10 * 3 * 3 * 2 * 8
    assert formulas.depthwise_conv_macs(7 * 7, (3, 5), 6, 2) == 7 * 7 * formulas.\
        depthwise_conv_params((3, 5), 6, 2, use_bias=False)
    assert formulas.separable_conv_macs(4, 3, 2, 5) == 4 * formulas.separable_conv_params(
        3, 2, 5, use_bias=False)
    assert formulas.dense_macs(512, 10, positions=49) == 49 * formulas.dense_params(
        512, 10, use_bias=False)


@pytest.mark.parametrize("call, message", [
    (lambda: formulas.conv_params(3, 4, 8, groups=3), r"in_channels \(4\) must be a multiple of "
                                                      r"groups \(3\)"),
    (lambda: formulas.conv_params(3, 8, 6, groups=4), r"filters \(6\) must be a multiple"),
    (lambda: formulas.check_groups(0, channels=8), "groups must be an integer >= 1"),
    (lambda: formulas.conv_macs(10, 0, 3, 8), "kernel_size must be an integer >= 1"),
    (lambda: formulas.conv_params("3", 3, 8), "kernel_size must be an int or a tuple"),
    (lambda: formulas.conv_params((), 3, 8), "non-empty tuple"),
    (lambda: formulas.dense_params(2.5, 10), "in_features must be an integer >= 1"),
    (lambda: formulas.batch_norm_params(0), "channels must be an integer >= 1"),
])
def test_bad_arguments_raise_value_errors_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_block_formulas_report_errors_as_the_counting_formulas_do():
    """The block formulas call these formulas, so a block error and a counting error read
    alike."""
    with pytest.raises(ValueError, match=r"filters \(30\) must be a multiple of groups \(4\)"):
        blocks.bottleneck_block(keras.Input((8, 8, 24)), filters=30, groups=4)
    with pytest.raises(ValueError, match=r"in_channels \(4\) must be a multiple of groups \(3\)"):
        blocks.conv2d_params(3, 4, 6, groups=3)
