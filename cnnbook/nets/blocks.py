"""The building blocks of the known ConvNets, as small Keras builders with their parameter formulas.

Chapter "Known ConvNet architectures" (``book/architectures.md``) draws and counts each of them;
``tests/test_blocks.py`` checks every ``*_params`` formula against Keras' own count and, where a
paper prints a number or ``keras.applications`` holds the same block, against that too.

Every builder takes a channels-last Keras tensor ``inputs`` of shape ``(batch, H, W, C)`` and
returns the block's output tensor (the functional style of ``keras.applications``); wrap one in a
model with :func:`block_model`. Layer names start with the block's ``name`` (a unique name is
made up when it is ``None``).

Parameter counts use Keras' convention (``model.count_params()``), which includes the
non-trainable statistics of batch normalisation:

* ``k x k`` convolution from ``C`` to ``F`` channels in ``g`` groups: ``k^2 (C/g) F (+ F bias)``;
* depthwise ``k x k`` convolution on ``C`` channels: ``k^2 C (+ C bias)``;
* dense layer from ``C`` to ``F`` units: ``C F + F``;
* batch normalisation over ``C`` channels: ``4 C`` (scale, offset, running mean and variance);
* layer normalisation over ``C`` channels: ``2 C`` (scale, offset).

Convolutions followed by batch normalisation carry no bias (the normalisation's offset replaces
it), as in the papers' reference code.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from cnnbook.checks import check_int as _check_int
from cnnbook.checks import check_positive_real
from cnnbook.counting import formulas
from cnnbook.course.layers import GlobalResponseNormalization, LayerScale
from cnnbook.nets.normalization import BATCH_NORM_SETTINGS, batch_norm

__all__ = [
    "conv2d_params",
    "batch_norm_params",
    "block_model",
    "single_layer_model",
    "vgg_stage",
    "vgg_stage_params",
    "mlpconv_block",
    "mlpconv_block_params",
    "inception_module",
    "inception_module_params",
    "bottleneck_block",
    "bottleneck_block_params",
    "dense_block",
    "dense_block_params",
    "depthwise_separable_block",
    "depthwise_separable_block_params",
    "fire_module",
    "fire_module_params",
    "inverted_residual_block",
    "inverted_residual_block_params",
    "channel_shuffle",
    "shufflenet_unit",
    "shufflenet_unit_params",
    "SE_GATES",
    "squeeze_excitation",
    "squeeze_excitation_params",
    "convnext_block",
    "convnext_block_params",
]

BATCH_NORM_EPSILON = BATCH_NORM_SETTINGS["keras_applications"].epsilon  # keras.applications'
LAYER_NORM_EPSILON = 1e-6  # as in ConvNeXt


# --------------------------------------------------------------------------------------------
# checks and formulas shared by the blocks
# --------------------------------------------------------------------------------------------




def _channels(inputs) -> int:
    """The channel count of a channels-last 4-D tensor, or ``ValueError``."""
    shape = tuple(inputs.shape)
    if len(shape) != 4 or shape[-1] is None:
        raise ValueError(
            f"inputs must be a 4-D channels-last tensor (batch, height, width, channels) with a "
            f"known channel count, got shape {shape}; build it with keras.Input((H, W, C))"
        )
    return int(shape[-1])


def _block_name(name: str | None, prefix: str) -> str:
    if name is None:
        return f"{prefix}_{keras.backend.get_uid(prefix)}"
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string or None, got {name!r}")
    return name


def conv2d_params(
    kernel_size: int, in_channels: int, filters: int, groups: int = 1, use_bias: bool = True
) -> int:
    """Parameters of a ``kernel_size x kernel_size`` convolution: ``k^2 (C/g) F + F`` (bias).

    A depthwise convolution is the case ``groups = in_channels = filters``: ``k^2 C (+ C)``.
    The formula is :func:`cnnbook.counting.formulas.conv_params`, shared with
    :mod:`cnnbook.counting.accounting`.
    """
    return formulas.conv_params(kernel_size, in_channels, filters, groups, use_bias)


def batch_norm_params(channels: int) -> int:
    """Parameters of batch normalisation over ``C`` channels: ``4 C`` (two trained, two running
    statistics; Keras' ``count_params`` counts all four):
    :func:`cnnbook.counting.formulas.batch_norm_params`."""
    return formulas.batch_norm_params(channels)


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return batch_norm(name, "keras_applications")


def block_model(builder: Callable, input_shape, name: str | None = None, **block_arguments):
    """A Keras model made of one block: ``keras.Input(input_shape)`` -> ``builder(..)``.

    ``block_model(inception_module, (28, 28, 192), filters_1x1=64, ...)`` is how the chapter and
    the tests count, draw and time a block on its own.
    """
    if not callable(builder):
        raise ValueError(f"builder must be one of the block functions, got {builder!r}")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels) without the batch axis, got "
            f"{input_shape}"
        )
    inputs = keras.Input(shape=input_shape, name="block_input")
    outputs = builder(inputs, **block_arguments)
    return keras.Model(inputs, outputs, name=name or builder.__name__)


def single_layer_model(layer, input_shape, name: str | None = None):
    """A Keras model made of one layer: ``keras.Input(input_shape)`` -> ``layer``, so a single
    layer can be counted (:mod:`cnnbook.counting.accounting`), timed or drawn like a block. ``name``
    defaults to the layer's name. ``input_shape`` excludes the batch axis."""
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(f"layer must be a keras layer, got {type(layer).__name__}")
    inputs = keras.Input(shape=tuple(input_shape))
    return keras.Model(inputs, layer(inputs), name=name or layer.name)


# --------------------------------------------------------------------------------------------
# VGG (2014) and Network in Network (2013)
# --------------------------------------------------------------------------------------------


def vgg_stage(inputs, filters: int, num_convs: int, name: str | None = None):
    """A VGG stage: ``num_convs`` times (3x3 convolution, "same", ReLU), then 2x2 max pooling.

    Two stacked 3x3 convolutions see a 5x5 window with ``2 * 9 C^2`` weights instead of
    ``25 C^2``; three see 7x7 with ``27 C^2`` instead of ``49 C^2`` (Simonyan and Zisserman 2015).
    Output: ``(H/2, W/2, filters)``.
    """
    filters = _check_int("filters", filters)
    num_convs = _check_int("num_convs", num_convs)
    _channels(inputs)
    name = _block_name(name, "vgg_stage")
    x = inputs
    for index in range(1, num_convs + 1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"{name}_conv{index}"
        )(x)
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def vgg_stage_params(in_channels: int, filters: int, num_convs: int) -> int:
    """``(9 C F + F) + (num_convs - 1)(9 F^2 + F)``: the first convolution maps ``C`` to ``F``
    channels, the others ``F`` to ``F``; pooling has no parameters."""
    num_convs = _check_int("num_convs", num_convs)
    return conv2d_params(3, in_channels, filters) + (num_convs - 1) * conv2d_params(
        3, filters, filters
    )


def mlpconv_block(
    inputs, filters: int, kernel_size: int, strides: int = 1, name: str | None = None
):
    """Network in Network's "mlpconv" layer: a ``kernel_size`` convolution followed by two 1x1
    convolutions, all with ``filters`` outputs and ReLU (Lin, Chen and Yan 2014).

    The 1x1 convolutions are a small multilayer perceptron applied at every pixel across the
    channels. Output: ``(ceil(H/s), ceil(W/s), filters)`` ("same" padding).
    """
    filters = _check_int("filters", filters)
    kernel_size = _check_int("kernel_size", kernel_size)
    strides = _check_int("strides", strides)
    _channels(inputs)
    name = _block_name(name, "mlpconv")
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", activation="relu",
        name=f"{name}_conv",
    )(inputs)
    x = keras.layers.Conv2D(filters, 1, activation="relu", name=f"{name}_mlp1")(x)
    return keras.layers.Conv2D(filters, 1, activation="relu", name=f"{name}_mlp2")(x)


def mlpconv_block_params(in_channels: int, filters: int, kernel_size: int) -> int:
    """``(k^2 C F + F) + 2 (F^2 + F)``."""
    return conv2d_params(kernel_size, in_channels, filters) + 2 * conv2d_params(1, filters, filters)


# --------------------------------------------------------------------------------------------
# GoogLeNet / Inception (2014)
# --------------------------------------------------------------------------------------------


def inception_module(
    inputs,
    filters_1x1: int,
    filters_3x3: int,
    filters_5x5: int,
    filters_pool_proj: int | None = None,
    reduce_3x3: int | None = None,
    reduce_5x5: int | None = None,
    name: str | None = None,
):
    """GoogLeNet's inception module (Szegedy et al. 2015, figure 2): four parallel branches,
    concatenated along the channels.

    * 1x1 convolution (``filters_1x1``);
    * [1x1 reduction to ``reduce_3x3``] -> 3x3 convolution (``filters_3x3``);
    * [1x1 reduction to ``reduce_5x5``] -> 5x5 convolution (``filters_5x5``);
    * 3x3 max pooling, stride 1 -> [1x1 projection to ``filters_pool_proj``].

    Every convolution has a bias and a ReLU; all keep ``H x W`` ("same"). Leaving the reductions
    and the projection out (``None``) gives the paper's "naive" module, whose pooling branch
    passes all ``C`` input channels on. Output channels:
    ``filters_1x1 + filters_3x3 + filters_5x5 + (filters_pool_proj or C)``.
    """
    _channels(inputs)
    name = _block_name(name, "inception")
    conv_arguments = {"padding": "same", "activation": "relu"}
    branch_1x1 = keras.layers.Conv2D(
        _check_int("filters_1x1", filters_1x1), 1, name=f"{name}_1x1", **conv_arguments
    )(inputs)

    def reduced_branch(kernel: int, reduce, filters, label: str):
        """[1x1 reduction to ``reduce``] -> ``kernel x kernel`` convolution to ``filters``."""
        branch = inputs
        if reduce is not None:
            branch = keras.layers.Conv2D(
                _check_int(f"reduce_{label}", reduce), 1, name=f"{name}_{label}_reduce",
                **conv_arguments,
            )(branch)
        return keras.layers.Conv2D(
            _check_int(f"filters_{label}", filters), kernel, name=f"{name}_{label}",
            **conv_arguments,
        )(branch)

    branch_3x3 = reduced_branch(3, reduce_3x3, filters_3x3, "3x3")
    branch_5x5 = reduced_branch(5, reduce_5x5, filters_5x5, "5x5")

    branch_pool = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(
        inputs
    )
    if filters_pool_proj is not None:
        branch_pool = keras.layers.Conv2D(
            _check_int("filters_pool_proj", filters_pool_proj), 1, name=f"{name}_pool_proj",
            **conv_arguments,
        )(branch_pool)
    return keras.layers.Concatenate(name=f"{name}_concat")(
        [branch_1x1, branch_3x3, branch_5x5, branch_pool]
    )


def inception_module_params(
    in_channels: int,
    filters_1x1: int,
    filters_3x3: int,
    filters_5x5: int,
    filters_pool_proj: int | None = None,
    reduce_3x3: int | None = None,
    reduce_5x5: int | None = None,
) -> int:
    """Sum over the branches of ``k^2 C_in F + F``: with reductions ``r3``, ``r5`` and projection
    ``p``, ``(C f1 + f1) + (C r3 + r3) + (9 r3 f3 + f3) + (C r5 + r5) + (25 r5 f5 + f5)
    + (C p + p)``;
    without a reduction its 3x3 (5x5) convolution reads all ``C`` input channels."""
    params = conv2d_params(1, in_channels, filters_1x1)
    branches = ((3, reduce_3x3, filters_3x3), (5, reduce_5x5, filters_5x5))
    for kernel_size, reduce, filters in branches:
        if reduce is None:
            params += conv2d_params(kernel_size, in_channels, filters)
        else:
            params += conv2d_params(1, in_channels, reduce) + conv2d_params(
                kernel_size, reduce, filters
            )
    if filters_pool_proj is not None:
        params += conv2d_params(1, in_channels, filters_pool_proj)
    return params


# --------------------------------------------------------------------------------------------
# ResNet (2015), pre-activation ResNet (2016), ResNeXt (2016), RegNet (2020)
# --------------------------------------------------------------------------------------------


def bottleneck_block(
    inputs,
    filters: int,
    strides: int = 1,
    expansion: int = 4,
    groups: int = 1,
    preactivation: bool = False,
    stride_position: str = "3x3",
    name: str | None = None,
):
    """ResNet's bottleneck block (He et al. 2016): 1x1 to ``filters`` -> 3x3 (``filters``,
    ``strides``, ``groups``) -> 1x1 to ``expansion * filters``, added to a shortcut.

    * ``preactivation=False`` (the original): each convolution is followed by batch norm, the
      first two by ReLU; the sum goes through a ReLU.
    * ``preactivation=True`` (He et al. 2016, "Identity mappings"): batch norm and ReLU come
      *before* each convolution and nothing follows the sum, so the shortcut is a clean identity.
    * ``groups > 1`` makes the 3x3 a grouped convolution: ResNeXt's aggregated transformations
      (cardinality ``groups``, e.g. ``filters=128, groups=32, expansion=2`` for ResNeXt-50
      32x4d's first stage); RegNet's X block is the same with ``expansion=1``.

    The shortcut is the identity when the shape is unchanged; otherwise (stride or channel
    change) a strided 1x1 projection (followed by batch norm in the original form).
    ``stride_position`` says which convolution of the main path carries the stride: ``"3x3"``
    (torchvision's "ResNet v1.5", ResNeXt) or ``"1x1"`` (the first 1x1, as in He et al.'s
    released models and ``keras.applications``). The parameters are the same; the MACs are not,
    since the first 1x1 then runs on the full-resolution input.
    Output: ``(ceil(H/s), ceil(W/s), expansion * filters)``.
    """
    filters = _check_int("filters", filters)
    strides = _check_int("strides", strides)
    expansion = _check_int("expansion", expansion)
    groups = _check_int("groups", groups)
    formulas.check_groups(groups, filters=filters)
    if stride_position not in ("3x3", "1x1"):
        raise ValueError(f"stride_position must be '3x3' or '1x1', got {stride_position!r}")
    in_channels = _channels(inputs)
    name = _block_name(name, "bottleneck")
    strides_1x1, strides_3x3 = (1, strides) if stride_position == "3x3" else (strides, 1)
    out_channels = expansion * filters
    needs_projection = strides != 1 or in_channels != out_channels

    def conv(x, channels, kernel_size, suffix, conv_strides=1, conv_groups=1):
        return keras.layers.Conv2D(
            channels, kernel_size, strides=conv_strides, padding="same", groups=conv_groups,
            use_bias=False, name=f"{name}_{suffix}",
        )(x)

    def bn_relu(x, suffix, relu=True):
        x = _batch_norm(f"{name}_{suffix}_bn")(x)
        return keras.layers.ReLU(name=f"{name}_{suffix}_relu")(x) if relu else x

    if preactivation:
        activated = bn_relu(inputs, "preact")
        shortcut = (
            conv(activated, out_channels, 1, "projection", strides) if needs_projection else inputs
        )
        x = conv(activated, filters, 1, "conv1", strides_1x1)
        x = conv(bn_relu(x, "conv1"), filters, 3, "conv2", strides_3x3, groups)
        x = conv(bn_relu(x, "conv2"), out_channels, 1, "conv3")
        return keras.layers.Add(name=f"{name}_add")([x, shortcut])

    shortcut = inputs
    if needs_projection:
        projection = conv(inputs, out_channels, 1, "projection", strides)
        shortcut = bn_relu(projection, "projection", relu=False)
    x = bn_relu(conv(inputs, filters, 1, "conv1", strides_1x1), "conv1")
    x = bn_relu(conv(x, filters, 3, "conv2", strides_3x3, groups), "conv2")
    x = bn_relu(conv(x, out_channels, 1, "conv3"), "conv3", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def bottleneck_block_params(
    in_channels: int,
    filters: int,
    strides: int = 1,
    expansion: int = 4,
    groups: int = 1,
    preactivation: bool = False,
) -> int:
    """With ``F = filters``, ``E F`` output channels and ``g`` groups:
    convolutions ``C F + 9 F^2 / g + F E F`` (+ ``C E F`` for a projection); batch norm
    ``4 (F + F + E F)`` (+ ``4 E F`` after the projection) in the original form, or
    ``4 (C + F + F)`` (no norm on the projection) in the pre-activation form."""
    _check_int("strides", strides)
    out_channels = _check_int("expansion", expansion) * _check_int("filters", filters)
    params = (
        conv2d_params(1, in_channels, filters, use_bias=False)
        + conv2d_params(3, filters, filters, groups=groups, use_bias=False)
        + conv2d_params(1, filters, out_channels, use_bias=False)
    )
    needs_projection = strides != 1 or in_channels != out_channels
    if needs_projection:
        params += conv2d_params(1, in_channels, out_channels, use_bias=False)
    if preactivation:
        return params + batch_norm_params(in_channels) + 2 * batch_norm_params(filters)
    params += 2 * batch_norm_params(filters) + batch_norm_params(out_channels)
    if needs_projection:
        params += batch_norm_params(out_channels)
    return params


# --------------------------------------------------------------------------------------------
# DenseNet (2016)
# --------------------------------------------------------------------------------------------


def dense_block(
    inputs,
    num_layers: int,
    growth_rate: int,
    bottleneck_width: int | None = 4,
    name: str | None = None,
):
    """DenseNet's dense block (Huang et al. 2017): ``num_layers`` layers, each reading the
    concatenation of the block input and *all* earlier layers' outputs and adding
    ``growth_rate`` (``k``) new channels.

    One layer: BN -> ReLU -> [1x1 conv to ``bottleneck_width * k`` -> BN -> ReLU] -> 3x3 conv
    to ``k`` (the bracket is DenseNet-B's bottleneck; ``bottleneck_width=None`` leaves it out),
    then concatenation. Output: ``(H, W, C + num_layers * k)``.
    """
    num_layers = _check_int("num_layers", num_layers)
    growth_rate = _check_int("growth_rate", growth_rate)
    if bottleneck_width is not None:
        bottleneck_width = _check_int("bottleneck_width", bottleneck_width)
    _channels(inputs)
    name = _block_name(name, "dense_block")
    x = inputs
    for index in range(1, num_layers + 1):
        prefix = f"{name}_layer{index}"
        y = _batch_norm(f"{prefix}_bn1")(x)
        y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
        if bottleneck_width is not None:
            y = keras.layers.Conv2D(
                bottleneck_width * growth_rate, 1, use_bias=False, name=f"{prefix}_conv1x1"
            )(y)
            y = _batch_norm(f"{prefix}_bn2")(y)
            y = keras.layers.ReLU(name=f"{prefix}_relu2")(y)
        y = keras.layers.Conv2D(
            growth_rate, 3, padding="same", use_bias=False, name=f"{prefix}_conv3x3"
        )(y)
        x = keras.layers.Concatenate(name=f"{prefix}_concat")([x, y])
    return x


def dense_block_params(
    in_channels: int, num_layers: int, growth_rate: int, bottleneck_width: int | None = 4
) -> int:
    """Layer ``i = 0 .. L-1`` reads ``c_i = C + i k`` channels; with ``b = bottleneck_width``:
    ``sum_i [4 c_i + c_i b k + 4 b k + 9 b k^2]`` (BN, 1x1, BN, 3x3), or
    ``sum_i [4 c_i + 9 c_i k]`` without the bottleneck."""
    in_channels = _check_int("in_channels", in_channels)
    num_layers = _check_int("num_layers", num_layers)
    growth_rate = _check_int("growth_rate", growth_rate)
    params = 0
    for index in range(num_layers):
        channels = in_channels + index * growth_rate
        params += batch_norm_params(channels)
        if bottleneck_width is None:
            params += conv2d_params(3, channels, growth_rate, use_bias=False)
        else:
            width = _check_int("bottleneck_width", bottleneck_width) * growth_rate
            params += (
                conv2d_params(1, channels, width, use_bias=False)
                + batch_norm_params(width)
                + conv2d_params(3, width, growth_rate, use_bias=False)
            )
    return params


# --------------------------------------------------------------------------------------------
# MobileNet (2017), Xception (2016)
# --------------------------------------------------------------------------------------------


def depthwise_separable_block(inputs, filters: int, strides: int = 1, name: str | None = None):
    """MobileNet's depthwise separable convolution (Howard et al. 2017, figure 3): a 3x3
    depthwise convolution (one filter per input channel, ``strides``) -> BN -> ReLU6, then a 1x1
    pointwise convolution to ``filters`` -> BN -> ReLU6.

    It replaces a 3x3 convolution's ``9 C F`` weights (and multiply-adds per pixel) by
    ``9 C + C F``: a fraction ``1/F + 1/9`` of the cost. Xception's separable convolutions are
    the same factorisation. Output: ``(ceil(H/s), ceil(W/s), filters)``.
    """
    filters = _check_int("filters", filters)
    strides = _check_int("strides", strides)
    _channels(inputs)
    name = _block_name(name, "separable")
    x = keras.layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False, name=f"{name}_depthwise"
    )(inputs)
    x = _batch_norm(f"{name}_depthwise_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pointwise")(x)
    x = _batch_norm(f"{name}_pointwise_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_pointwise_relu")(x)


def depthwise_separable_block_params(in_channels: int, filters: int) -> int:
    """``9 C + 4 C + C F + 4 F`` (depthwise, BN, pointwise, BN)."""
    return (
        conv2d_params(3, in_channels, in_channels, groups=in_channels, use_bias=False)
        + batch_norm_params(in_channels)
        + conv2d_params(1, in_channels, filters, use_bias=False)
        + batch_norm_params(filters)
    )


# --------------------------------------------------------------------------------------------
# SqueezeNet (2016)
# --------------------------------------------------------------------------------------------


def fire_module(
    inputs, squeeze: int, expand_1x1: int, expand_3x3: int, name: str | None = None
):
    """SqueezeNet's fire module (Iandola et al. 2016): a 1x1 "squeeze" convolution to few
    channels, then parallel 1x1 and 3x3 "expand" convolutions, concatenated; biases and ReLU
    everywhere. Output: ``(H, W, expand_1x1 + expand_3x3)``."""
    _channels(inputs)
    name = _block_name(name, "fire")
    x = keras.layers.Conv2D(
        _check_int("squeeze", squeeze), 1, activation="relu", name=f"{name}_squeeze"
    )(inputs)
    left = keras.layers.Conv2D(
        _check_int("expand_1x1", expand_1x1), 1, activation="relu", name=f"{name}_expand1x1"
    )(x)
    right = keras.layers.Conv2D(
        _check_int("expand_3x3", expand_3x3), 3, padding="same", activation="relu",
        name=f"{name}_expand3x3",
    )(x)
    return keras.layers.Concatenate(name=f"{name}_concat")([left, right])


def fire_module_params(in_channels: int, squeeze: int, expand_1x1: int, expand_3x3: int) -> int:
    """``(C s + s) + (s e1 + e1) + (9 s e3 + e3)``."""
    return (
        conv2d_params(1, in_channels, squeeze)
        + conv2d_params(1, squeeze, expand_1x1)
        + conv2d_params(3, squeeze, expand_3x3)
    )


# --------------------------------------------------------------------------------------------
# Squeeze-and-excitation (2017)
# --------------------------------------------------------------------------------------------


def _squeeze_channels(channels: int, ratio) -> int:
    ratio = check_positive_real("ratio", ratio, "the paper uses 16")
    squeezed = int(channels // ratio)
    if squeezed < 1:
        raise ValueError(
            f"ratio ({ratio}) leaves no channel of {channels}: use a ratio of at most {channels}"
        )
    return squeezed


SE_GATES = ("sigmoid", "hard_sigmoid")
"""The gates of squeeze-and-excitation: the sigmoid of SENet and EfficientNet, and the hard
sigmoid ``relu6(x + 3) / 6`` of MobileNetV3 (Howard et al. 2019), cheaper on a phone."""


def squeeze_excitation(inputs, ratio: float = 16, name: str | None = None,
                       gate: str = "sigmoid"):
    """Squeeze-and-excitation (Hu, Shen and Sun 2018): global average pooling "squeezes" each
    channel to one number; a two-layer gate (dense to ``C // ratio`` + ReLU, dense to ``C`` +
    ``gate``, a sigmoid or MobileNetV3's hard sigmoid ``relu6(x + 3) / 6``) turns them into one
    weight in [0, 1] per channel, which rescales the input's channels. Output: the input's
    shape."""
    if gate not in SE_GATES:
        raise ValueError(f"gate must be one of {SE_GATES}, got {gate!r}")
    channels = _channels(inputs)
    squeezed = _squeeze_channels(channels, ratio)
    name = _block_name(name, "se")
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(inputs)
    x = keras.layers.Dense(squeezed, activation="relu", name=f"{name}_reduce")(x)
    x = keras.layers.Dense(channels, activation=gate, name=f"{name}_expand")(x)
    return keras.layers.Multiply(name=f"{name}_scale")([inputs, x])


def squeeze_excitation_params(channels: int, ratio: float = 16) -> int:
    """With ``s = C // ratio``: ``(C s + s) + (s C + C)`` (two dense layers); ``~ 2 C^2 / r``."""
    channels = _check_int("channels", channels)
    squeezed = _squeeze_channels(channels, ratio)
    return 2 * channels * squeezed + squeezed + channels


# --------------------------------------------------------------------------------------------
# MobileNetV2 (2018), MobileNetV3 (2019), EfficientNet (2019)
# --------------------------------------------------------------------------------------------


def inverted_residual_block(
    inputs,
    filters: int,
    expansion: int = 6,
    strides: int = 1,
    kernel_size: int = 3,
    squeeze_ratio: float | None = None,
    activation: str = "relu6",
    name: str | None = None,
    se_gate: str = "sigmoid",
):
    """MobileNetV2's inverted residual (Sandler et al. 2018): a 1x1 convolution *expands* ``C``
    channels to ``t C`` (``t = expansion``; left out when ``t = 1``) -> BN -> activation; a
    ``kernel_size`` depthwise convolution (``strides``) -> BN -> activation; a 1x1 *linear*
    projection to ``filters`` -> BN, with no activation (the "linear bottleneck"). The input is
    added back when the shape is unchanged (stride 1 and ``C == filters``).

    ``squeeze_ratio`` inserts squeeze-and-excitation on the ``t C`` expanded channels after the
    depthwise convolution (MobileNetV3, EfficientNet's MBConv), gated by ``se_gate``
    (:data:`SE_GATES`: ``"hard_sigmoid"`` in MobileNetV3, ``"sigmoid"`` in EfficientNet);
    ``activation`` is ``"relu6"`` (V2), ``"relu"`` or ``"hard_swish"`` (V3) or ``"swish"``
    (EfficientNet).
    Output: ``(ceil(H/s), ceil(W/s), filters)``.
    """
    filters = _check_int("filters", filters)
    expansion = _check_int("expansion", expansion)
    strides = _check_int("strides", strides)
    kernel_size = _check_int("kernel_size", kernel_size)
    activations = ("relu6", "relu", "hard_swish", "swish")
    if activation not in activations:
        raise ValueError(f"activation must be one of {activations}, got {activation!r}")
    in_channels = _channels(inputs)
    name = _block_name(name, "inverted_residual")

    def activate(x, suffix):
        if activation == "relu6":
            return keras.layers.ReLU(6.0, name=f"{name}_{suffix}_relu6")(x)
        return keras.layers.Activation(activation, name=f"{name}_{suffix}_{activation}")(x)

    x = inputs
    if expansion != 1:
        x = keras.layers.Conv2D(
            expansion * in_channels, 1, use_bias=False, name=f"{name}_expand"
        )(x)
        x = activate(_batch_norm(f"{name}_expand_bn")(x), "expand")
    x = keras.layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_depthwise"
    )(x)
    x = activate(_batch_norm(f"{name}_depthwise_bn")(x), "depthwise")
    if squeeze_ratio is not None:
        x = squeeze_excitation(x, squeeze_ratio, name=f"{name}_se", gate=se_gate)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(x)
    x = _batch_norm(f"{name}_project_bn")(x)
    if strides == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def inverted_residual_block_params(
    in_channels: int,
    filters: int,
    expansion: int = 6,
    kernel_size: int = 3,
    squeeze_ratio: float | None = None,
) -> int:
    """With ``E = t C`` expanded channels: ``(C E + 4 E)`` (expansion, left out for ``t = 1``)
    ``+ (k^2 E + 4 E)`` (depthwise) ``[+ SE on E channels]`` ``+ (E F + 4 F)`` (projection)."""
    in_channels = _check_int("in_channels", in_channels)
    expanded = _check_int("expansion", expansion) * in_channels
    params = 0
    if expansion != 1:
        params += conv2d_params(1, in_channels, expanded, use_bias=False)
        params += batch_norm_params(expanded)
    params += conv2d_params(kernel_size, expanded, expanded, groups=expanded, use_bias=False)
    params += batch_norm_params(expanded)
    if squeeze_ratio is not None:
        params += squeeze_excitation_params(expanded, squeeze_ratio)
    params += conv2d_params(1, expanded, filters, use_bias=False) + batch_norm_params(filters)
    return params


# --------------------------------------------------------------------------------------------
# ShuffleNet (2017)
# --------------------------------------------------------------------------------------------


def channel_shuffle(inputs, groups: int, name: str | None = None):
    """ShuffleNet's channel shuffle (Zhang et al. 2018): view the ``C`` channels as a
    ``groups x (C / groups)`` grid and transpose it, so that the next grouped convolution's
    groups each receive channels from every previous group. No parameters.

    Channel ``g * (C/groups) + j`` moves to position ``j * groups + g``. Built from ``Reshape``
    and ``Permute`` (serialisable, no ``Lambda``); needs a known height and width.
    """
    groups = _check_int("groups", groups)
    channels = _channels(inputs)
    formulas.check_groups(groups, channels=channels)
    height, width = inputs.shape[1], inputs.shape[2]
    if height is None or width is None:
        raise ValueError(
            "channel_shuffle needs a known height and width: build the input with "
            "keras.Input((H, W, C))"
        )
    name = _block_name(name, "shuffle")
    x = keras.layers.Reshape((height, width, groups, channels // groups), name=f"{name}_split")(
        inputs
    )
    x = keras.layers.Permute((1, 2, 4, 3), name=f"{name}_transpose")(x)
    return keras.layers.Reshape((height, width, channels), name=f"{name}_merge")(x)


def _shufflenet_widths(in_channels: int, filters: int, strides: int) -> tuple[int, int]:
    """(bottleneck width, branch output channels) of a ShuffleNet unit."""
    branch_channels = filters - in_channels if strides == 2 else filters
    if branch_channels < 1:
        raise ValueError(
            f"filters ({filters}) must exceed the input channels ({in_channels}) in a strided "
            "ShuffleNet unit, whose output concatenates the pooled input with the new branch"
        )
    return filters // 4, branch_channels


def shufflenet_unit(
    inputs, filters: int, groups: int = 3, strides: int = 1, name: str | None = None
):
    """ShuffleNet unit (Zhang et al. 2018, figure 2b/c): grouped 1x1 convolution to
    ``filters // 4`` channels -> BN -> ReLU -> channel shuffle -> 3x3 depthwise (``strides``)
    -> BN -> grouped 1x1 convolution -> BN, then

    * stride 1: added to the input (``filters`` must equal the input channels), ReLU;
    * stride 2: concatenated with a 3x3 average pooling of the input (the branch makes
      ``filters - C`` channels), ReLU.

    Output: ``(ceil(H/s), ceil(W/s), filters)``.
    """
    filters = _check_int("filters", filters)
    groups = _check_int("groups", groups)
    strides = _check_int("strides", strides)
    if strides not in (1, 2):
        raise ValueError(f"strides must be 1 or 2 in a ShuffleNet unit, got {strides}")
    in_channels = _channels(inputs)
    if strides == 1 and filters != in_channels:
        raise ValueError(
            f"filters ({filters}) must equal the input channels ({in_channels}) in a stride-1 "
            "ShuffleNet unit (its output is added to the input); use strides=2 to widen"
        )
    width, branch_channels = _shufflenet_widths(in_channels, filters, strides)
    formulas.check_groups(groups, **{"input channels": in_channels, "filters // 4": width,
                                     "branch channels": branch_channels})
    name = _block_name(name, "shufflenet_unit")
    x = keras.layers.Conv2D(width, 1, groups=groups, use_bias=False, name=f"{name}_gconv1")(inputs)
    x = keras.layers.ReLU(name=f"{name}_gconv1_relu")(_batch_norm(f"{name}_gconv1_bn")(x))
    x = channel_shuffle(x, groups, name=f"{name}_shuffle")
    x = keras.layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False, name=f"{name}_depthwise"
    )(x)
    x = _batch_norm(f"{name}_depthwise_bn")(x)
    x = keras.layers.Conv2D(
        branch_channels, 1, groups=groups, use_bias=False, name=f"{name}_gconv2"
    )(x)
    x = _batch_norm(f"{name}_gconv2_bn")(x)
    if strides == 1:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    else:
        shortcut = keras.layers.AveragePooling2D(
            3, strides=2, padding="same", name=f"{name}_pool"
        )(inputs)
        x = keras.layers.Concatenate(name=f"{name}_concat")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def shufflenet_unit_params(
    in_channels: int, filters: int, groups: int = 3, strides: int = 1
) -> int:
    """With ``m = filters // 4`` and ``B`` branch channels (``filters``, or ``filters - C`` at
    stride 2): ``C m / g + 4 m + 9 m + 4 m + m B / g + 4 B``."""
    width, branch_channels = _shufflenet_widths(in_channels, filters, strides)
    return (
        conv2d_params(1, in_channels, width, groups=groups, use_bias=False)
        + batch_norm_params(width)
        + conv2d_params(3, width, width, groups=width, use_bias=False)
        + batch_norm_params(width)
        + conv2d_params(1, width, branch_channels, groups=groups, use_bias=False)
        + batch_norm_params(branch_channels)
    )


# --------------------------------------------------------------------------------------------
# ConvNeXt (2022) and ConvNeXt V2 (2023)
# --------------------------------------------------------------------------------------------


# LayerScale and GlobalResponseNormalization live in cnnbook.course.layers (one home for the custom
# layers, which every model loader registers).


def convnext_block(
    inputs,
    expansion: int = 4,
    version: int = 1,
    layer_scale_init_value: float = 1e-6,
    name: str | None = None,
):
    """ConvNeXt block (Liu et al. 2022): 7x7 depthwise convolution (with bias) -> layer norm ->
    dense ``C -> expansion * C`` -> GELU -> dense back to ``C`` -> [layer scale], added to the
    input. Dense layers on the channel axis are 1x1 convolutions, as in ``keras.applications``.

    ``version=2`` (ConvNeXt V2, Woo et al. 2023) inserts global response normalisation after the
    GELU and drops the layer scale. Output: the input's shape.
    """
    expansion = _check_int("expansion", expansion)
    if version not in (1, 2):
        raise ValueError(f"version must be 1 (ConvNeXt) or 2 (ConvNeXt V2), got {version!r}")
    channels = _channels(inputs)
    name = _block_name(name, "convnext_block")
    x = keras.layers.DepthwiseConv2D(7, padding="same", name=f"{name}_depthwise")(inputs)
    x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_layernorm")(x)
    x = keras.layers.Dense(expansion * channels, name=f"{name}_pointwise1")(x)
    x = keras.layers.Activation("gelu", name=f"{name}_gelu")(x)
    if version == 2:
        x = GlobalResponseNormalization(name=f"{name}_grn")(x)
    x = keras.layers.Dense(channels, name=f"{name}_pointwise2")(x)
    if version == 1:
        x = LayerScale(layer_scale_init_value, name=f"{name}_layer_scale")(x)
    return keras.layers.Add(name=f"{name}_add")([x, inputs])


def convnext_block_params(channels: int, expansion: int = 4, version: int = 1) -> int:
    """With ``E = expansion``: ``(49 C + C)`` (depthwise) ``+ 2 C`` (layer norm)
    ``+ (E C^2 + E C) + (E C^2 + C)`` (the two dense layers) ``+ C`` (layer scale, V1) or
    ``+ 2 E C`` (GRN, V2). With ``E = 4``: ``8 C^2 + 58 C`` (V1), ``8 C^2 + 65 C`` (V2)."""
    channels = _check_int("channels", channels)
    expansion = _check_int("expansion", expansion)
    if version not in (1, 2):
        raise ValueError(f"version must be 1 (ConvNeXt) or 2 (ConvNeXt V2), got {version!r}")
    params = (
        conv2d_params(7, channels, channels, groups=channels)
        + 2 * channels
        + conv2d_params(1, channels, expansion * channels)
        + conv2d_params(1, expansion * channels, channels)
    )
    return params + (channels if version == 1 else 2 * expansion * channels)

