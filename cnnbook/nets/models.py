"""Keras 3 functional models used by the book, the assignments and the tests.

Every CIFAR model (:func:`toy_cnn`, :func:`plain_cifar`, :func:`resnet_cifar`) takes raw images
(values 0..255, shape 32x32x3, channels last) and normalises them with its own first layer, so a
saved ``.keras`` model evaluates raw test images the same way in the book, in a student's notebook
and in the grader. The last layer of every model outputs logits (no softmax). :func:`lenet5` and
:func:`alexnet` keep the input shapes of their papers (32x32x1 and 227x227x3) and no normalisation
layer: the architectures chapter counts their parameters and multiply-adds.

Every model saves to ``.keras`` and loads back with ``keras.models.load_model(path,
safe_mode=True)`` (import ``cnnbook.nets.models`` or ``cnnbook.course.layers`` first, which
registers the one
custom layer, :class:`cnnbook.course.layers.ZeroPadShortcut`).

Structure of the CIFAR networks of He et al. 2015 (chapter "Residual networks")
-------------------------------------------------------------------------------
A network of depth ``6n + 2`` is a linear chain of top-level layers::

    image -> normalize -> stem_conv [-> stem_bn -> stem_relu]
          -> stage1_block1 -> ... -> stage1_block{n} -> stage2_block1 -> ... -> stage3_block{n}
          [-> final_bn -> final_relu] -> pool -> logits

(brackets: ``stem_bn``/``stem_relu`` in the original post-activation networks, ``final_bn``/
``final_relu`` in the pre-activation ones). Each block is itself a small functional
``keras.Model`` named ``stage{s}_block{b}`` (both counted from 1); stage ``s`` has
``16 * 2**(s-1)`` filters and its first block (for ``s > 1``) halves height and width with
stride 2. Inside a block the layers are named ``conv1``, ``bn1``, ``relu1``, ``conv2``, ``bn2``,
then ``add`` and ``relu_out`` (post-activation) or just ``add`` (pre-activation); the shortcut
path is the layers whose names start with ``shortcut`` (none for an identity shortcut,
``shortcut`` for option A, ``shortcut_conv`` and ``shortcut_bn`` for option B). Plain networks
have the same names without shortcut and ``add``.

Because the top level is a chain and every block is one layer of it, a lesion study (chapter
"Residual networks behave like ensembles") can rebuild a network by calling the top-level layers
in order on a new input and replacing a block ``b`` by ``apply_shortcut(b, x)`` (deletion) or by
calling blocks in another order. :func:`block_names`, :func:`is_residual_block`,
:func:`is_downsampling_block`, :func:`shortcut_layers` and :func:`apply_shortcut` give what that
needs; the rebuilt model shares the trained weights.
"""

from __future__ import annotations

import numbers
import re

import keras

from cnnbook.checks import check_int as _check_int
from cnnbook.course.inputs import image_input, normalization_layer
from cnnbook.course.layers import ZeroPadShortcut
from cnnbook.nets.normalization import BATCH_NORM_SETTINGS, batch_norm


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


# --- The CIFAR networks of He et al. 2015 ------------------------------------------------------

PUBLISHED_CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
"""Depths of He et al. 2015's CIFAR-10 networks (Table 6); any ``6n + 2`` with ``n >= 1`` builds."""
SHORTCUT_OPTIONS = ("A", "B")
STAGE_FILTERS = (16, 32, 64)
"""Filters of the three stages (feature maps 32x32, 16x16, 8x8)."""
BN_MOMENTUM = BATCH_NORM_SETTINGS["he2015_cifar"].momentum
"""Batch-norm moving-average momentum of the CIFAR networks (see
:mod:`cnnbook.nets.normalization`)."""
BN_EPSILON = BATCH_NORM_SETTINGS["he2015_cifar"].epsilon
BLOCK_NAME_PATTERN = re.compile(r"^stage(\d+)_block(\d+)$")




def blocks_per_stage(depth: int) -> int:
    """``n = (depth - 2) / 6``: the blocks in each of the three stages of a depth-``6n+2`` network
    (two 3x3 convolutions per block, plus the first convolution and the classifier).

    Raises ``ValueError`` unless ``depth = 6n + 2`` with ``n >= 1`` (8, 14, 20, 26, 32, ...; the
    paper's networks are 20, 32, 44, 56, 110 and 1202).
    """
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 8 or (
        depth - 2
    ) % 6:
        raise ValueError(
            f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 26, 32, ...; He et al. 2015 use "
            f"{', '.join(map(str, PUBLISHED_CIFAR_DEPTHS))}), got {depth!r}"
        )
    return (int(depth) - 2) // 6


def block_name(stage: int, block: int) -> str:
    """``"stage{stage}_block{block}"``, both counted from 1."""
    return f"stage{stage}_block{block}"


def _conv3x3(filters: int, strides: int, name: str) -> keras.layers.Conv2D:
    # No bias: the batch norm that follows (or precedes the next conv) has its own shift.
    return keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=name,
    )


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return batch_norm(name, "he2015_cifar")


def _shortcut(x, out_channels: int, stride: int, option: str):
    """The shortcut path of a block: identity when the shape does not change, else option A
    (:class:`ZeroPadShortcut`, no parameters) or B (1x1 convolution with the stride, then batch
    norm: ``C_in * C_out`` weights plus ``2 * C_out`` batch-norm parameters)."""
    if stride == 1 and x.shape[-1] == out_channels:
        return x
    if option == "A":
        return ZeroPadShortcut(out_channels, stride, name="shortcut")(x)
    projected = keras.layers.Conv2D(
        out_channels, 1, strides=stride, use_bias=False, kernel_initializer="he_normal",
        name="shortcut_conv",
    )(x)
    return _batch_norm("shortcut_bn")(projected)


def residual_block(
    input_shape, filters: int, stride: int = 1, shortcut: str = "A", preact: bool = False,
    name: str = "block",
) -> keras.Model:
    """One residual block as a functional sub-model: ``x -> h(x) + F(x)``.

    * original (He et al. 2015), ``preact=False``:
      ``relu(h(x) + BN(W2 * relu(BN(W1 * x))))``;
    * pre-activation (He et al. 2016), ``preact=True``:
      ``h(x) + W2 * relu(BN(W1 * relu(BN(x))))``, nothing after the addition.

    ``W1`` is a 3x3 convolution with ``stride`` (the first block of a stage halves the size),
    ``W2`` a 3x3 convolution with stride 1, both ``filters`` wide. ``h`` is the identity when the
    shape does not change, else option ``shortcut`` ("A" or "B", see :func:`_shortcut`). In every
    case the shortcut reads the block's input ``x`` itself. (The 2016 reference code lets a
    projection shortcut read ``relu(BN(x))`` in the blocks that change shape; reading ``x`` keeps
    ``x_{l+1} = h(x_l) + F(x_l)`` exact for every block, which the lesion chapter relies on.)

    Raises ``ValueError`` for a ``shortcut`` other than ``"A"`` or ``"B"`` (exactly, upper case:
    :func:`resnet_cifar` normalises the case before it builds its blocks) or a ``filters`` or
    ``stride`` that is not an integer >= 1.
    """
    if shortcut not in SHORTCUT_OPTIONS or not isinstance(shortcut, str):
        raise ValueError(
            f"shortcut must be 'A' (zero-padding, parameter-free) or 'B' (1x1 projections), "
            f"got {shortcut!r}"
        )
    filters = _check_int("filters", filters, 1)
    stride = _check_int("stride", stride, 1)
    inputs = keras.Input(shape=tuple(input_shape), name=f"{name}_input")
    if preact:
        y = _batch_norm("bn1")(inputs)
        y = keras.layers.ReLU(name="relu1")(y)
        y = _conv3x3(filters, stride, "conv1")(y)
        y = _batch_norm("bn2")(y)
        y = keras.layers.ReLU(name="relu2")(y)
        y = _conv3x3(filters, 1, "conv2")(y)
        outputs = keras.layers.Add(name="add")([_shortcut(inputs, filters, stride, shortcut), y])
    else:
        y = _conv3x3(filters, stride, "conv1")(inputs)
        y = _batch_norm("bn1")(y)
        y = keras.layers.ReLU(name="relu1")(y)
        y = _conv3x3(filters, 1, "conv2")(y)
        y = _batch_norm("bn2")(y)
        y = keras.layers.Add(name="add")([_shortcut(inputs, filters, stride, shortcut), y])
        outputs = keras.layers.ReLU(name="relu_out")(y)
    return keras.Model(inputs, outputs, name=name)


def plain_block(input_shape, filters: int, stride: int = 1, name: str = "block") -> keras.Model:
    """The plain counterpart of :func:`residual_block`: ``relu(BN(W2 * relu(BN(W1 * x))))``."""
    inputs = keras.Input(shape=tuple(input_shape), name=f"{name}_input")
    y = _conv3x3(filters, stride, "conv1")(inputs)
    y = _batch_norm("bn1")(y)
    y = keras.layers.ReLU(name="relu1")(y)
    y = _conv3x3(filters, 1, "conv2")(y)
    y = _batch_norm("bn2")(y)
    outputs = keras.layers.ReLU(name="relu_out")(y)
    return keras.Model(inputs, outputs, name=name)


def _cifar_network(depth, make_block, preact: bool, num_classes, base_filters, name) -> keras.Model:
    num_blocks = blocks_per_stage(depth)
    num_classes = _check_int("num_classes", num_classes, 2)
    base_filters = _check_int("base_filters", base_filters, 1)
    images = image_input()
    x = normalization_layer()(images)
    x = _conv3x3(base_filters, 1, "stem_conv")(x)
    if not preact:
        x = _batch_norm("stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
    for stage in range(1, len(STAGE_FILTERS) + 1):
        filters = base_filters * 2 ** (stage - 1)
        for block in range(1, num_blocks + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = make_block(x.shape[1:], filters, stride, block_name(stage, block))(x)
    if preact:
        x = _batch_norm("final_bn")(x)
        x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(images, logits, name=name)


def resnet_cifar(
    depth: int, shortcut: str = "A", preact: bool = False, num_classes: int = 10,
    base_filters: int = STAGE_FILTERS[0],
) -> keras.Model:
    """The CIFAR-10 ResNet of depth ``6n + 2`` of He et al. 2015 (section 4.2).

    3x3 convolution with 16 filters, then three stages of ``n`` residual blocks with 16, 32 and
    64 filters on 32x32, 16x16 and 8x8 maps (:func:`residual_block`), global average pooling and
    a fully connected layer to ``num_classes`` logits: ``6n`` convolutions in the blocks, plus the
    first one and the classifier, ``6n + 2`` weighted layers. With option A (parameter-free
    shortcuts) the trainable parameters are, per Table 6 of the paper, 0.27M, 0.46M, 0.66M,
    0.85M and 1.7M for depths 20, 32, 44, 56 and 110; option B adds two 1x1 projections
    (16*32 + 32*64 weights and their batch norms).

    ``preact=True`` builds the pre-activation network of He et al. 2016 (the stem is a bare
    convolution, every block computes ``x + W2 * relu(BN(W1 * relu(BN(x))))``, and a final batch
    norm and ReLU come before the pooling). ``base_filters`` scales the width (16 in the paper).

    Layer names and the block structure are in this module's docstring. Raises ``ValueError``
    for a depth that is not ``6n + 2`` (``n >= 1``), an unknown shortcut option, fewer than two
    classes or a width below one.
    """
    blocks_per_stage(depth)
    option = str(shortcut).upper() if isinstance(shortcut, str) else shortcut
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(
            f"shortcut must be 'A' (zero-padding, parameter-free) or 'B' (1x1 projections), "
            f"got {shortcut!r}"
        )

    def make_block(input_shape, filters, stride, name):
        return residual_block(input_shape, filters, stride, option, bool(preact), name)

    name = f"{'preact_' if preact else ''}resnet{depth}_{option}"
    return _cifar_network(depth, make_block, bool(preact), num_classes, base_filters, name)


def plain_cifar(
    depth: int, num_classes: int = 10, base_filters: int = STAGE_FILTERS[0]
) -> keras.Model:
    """The plain CIFAR-10 network of depth ``6n + 2`` of He et al. 2015: :func:`resnet_cifar`
    without shortcuts (blocks from :func:`plain_block`), hence exactly the parameters of the
    option-A ResNet of the same depth. Raises ``ValueError`` as :func:`resnet_cifar`."""

    def make_block(input_shape, filters, stride, name):
        return plain_block(input_shape, filters, stride, name)

    return _cifar_network(depth, make_block, False, num_classes, base_filters, f"plain{depth}")


# --- What a lesion study needs --------------------------------------------------------------


def block_names(model: keras.Model) -> list[str]:
    """Names of the blocks (``stage{s}_block{b}``) of a CIFAR network, in the order the input
    flows through them."""
    return [layer.name for layer in model.layers if BLOCK_NAME_PATTERN.match(layer.name)]


def is_residual_block(block: keras.Model) -> bool:
    """Whether ``block`` adds a shortcut to its output (a residual rather than a plain block)."""
    return any(isinstance(layer, keras.layers.Add) for layer in block.layers)


def is_downsampling_block(block: keras.Model) -> bool:
    """Whether ``block`` changes the shape of what flows through it (stride 2 and more filters:
    the first block of stages 2 and 3). Such a block cannot be replaced by the identity."""
    return tuple(block.input.shape) != tuple(block.output.shape)


def shortcut_layers(block: keras.Model) -> list[keras.layers.Layer]:
    """The layers of ``block``'s shortcut path in the order they apply: ``[]`` for an identity
    shortcut, ``[ZeroPadShortcut]`` for option A, ``[Conv2D, BatchNormalization]`` for option B.
    Raises ``ValueError`` for a plain block, which has no shortcut."""
    if not is_residual_block(block):
        raise ValueError(f"block {block.name!r} is a plain block: it has no shortcut path")
    return [layer for layer in block.layers if layer.name.startswith("shortcut")]


def apply_shortcut(block: keras.Model, x):
    """``h(x)``: only the shortcut path of the residual ``block`` applied to ``x`` (a tensor or a
    symbolic Keras tensor), with the block's own (trained) layers. Deleting a residual block from
    a network means replacing ``block(x) = h(x) + F(x)`` by ``h(x)``."""
    for layer in shortcut_layers(block):
        x = layer(x)
    return x


# --- Architectures of the history chapter ---------------------------------------------------


def lenet5(num_classes: int = 10) -> keras.Model:
    """LeNet-5 (LeCun et al. 1998) in the form usually built today::

        image 32x32x1 -> c1: 6 conv 5x5, tanh  28x28x6  -> s2: average pool 2x2  14x14x6
        -> c3: 16 conv 5x5, tanh  10x10x16 -> s4: average pool 2x2  5x5x16
        -> c5: 120 conv 5x5, tanh  1x1x120 -> flatten -> f6: dense 84, tanh -> output: dense 10

    Trainable parameters: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706. The paper's network
    differs in three places, which together give its "about 60,000": C3 connects each of its 16
    maps to only some of S2's 6 maps (1,516 parameters instead of 2,416), S2 and S4 multiply and
    shift each map by a trainable coefficient and bias (12 + 32 parameters), and the output is a
    layer of Euclidean RBF units without biases (840 instead of 850): 60,840 in all. The output
    here is logits (no softmax); there is no normalisation layer (input values as given).
    """
    num_classes = _check_int("num_classes", num_classes, 2)
    images = keras.Input(shape=(32, 32, 1), name="image")
    x = keras.layers.Conv2D(6, 5, activation="tanh", name="c1")(images)
    x = keras.layers.AveragePooling2D(2, name="s2")(x)
    x = keras.layers.Conv2D(16, 5, activation="tanh", name="c3")(x)
    x = keras.layers.AveragePooling2D(2, name="s4")(x)
    x = keras.layers.Conv2D(120, 5, activation="tanh", name="c5")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(84, activation="tanh", name="f6")(x)
    logits = keras.layers.Dense(num_classes, name="output")(x)
    return keras.Model(images, logits, name="lenet5")


def alexnet(num_classes: int = 1000, two_towers: bool = False) -> keras.Model:
    """AlexNet (Krizhevsky, Sutskever, Hinton 2012), single-tower layout by default::

        image 227x227x3 -> conv1: 96 11x11 stride 4, relu  55x55x96 -> pool1 3x3/2  27x27x96
        -> conv2: 256 5x5, relu  27x27x256 -> pool2 3x3/2  13x13x256
        -> conv3: 384 3x3, relu -> conv4: 384 3x3, relu -> conv5: 256 3x3, relu  13x13x256
        -> pool5 3x3/2  6x6x256 -> flatten 9216 -> fc6: 4096, relu, dropout 0.5
        -> fc7: 4096, relu, dropout 0.5 -> fc8: num_classes logits

    The 227x227 input makes the first layer fit: ``(227 - 11) / 4 + 1 = 55`` (the paper's
    "224x224" does not divide evenly). The local response normalisation after conv1 and conv2
    is left out: it has no parameters and later work dropped it.

    Parameter counts depend on the variant, which is why sources quote 60M, 61M or 62M:

    * this single-tower network, every convolution seeing all channels of the previous layer:
      62,378,344 parameters (with 1000 classes);
    * ``two_towers=True``, the paper's split over two GPUs: conv2, conv4 and conv5 see only the
      half of the previous layer's channels on their own GPU (``groups=2``), which gives
      60,965,224, the paper's "60 million";
    * torchvision's AlexNet (61.1M) follows Krizhevsky's later "one weird trick" paper: 64, 192,
      384, 256, 256 filters and a 224 input; it is not this network.
    """
    num_classes = _check_int("num_classes", num_classes, 2)
    groups = 2 if two_towers else 1

    def conv(filters, kernel_size, name, strides=1, padding="same", conv_groups=1):
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding, groups=conv_groups,
            activation="relu", name=name,
        )

    images = keras.Input(shape=(227, 227, 3), name="image")
    x = conv(96, 11, "conv1", strides=4, padding="valid")(images)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = conv(256, 5, "conv2", conv_groups=groups)(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = conv(384, 3, "conv3")(x)
    x = conv(384, 3, "conv4", conv_groups=groups)(x)
    x = conv(256, 3, "conv5", conv_groups=groups)(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(4096, activation="relu", name="fc6")(x)
    x = keras.layers.Dropout(0.5, name="drop6")(x)
    x = keras.layers.Dense(4096, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(0.5, name="drop7")(x)
    logits = keras.layers.Dense(num_classes, name="fc8")(x)
    name = "alexnet_two_towers" if two_towers else "alexnet"
    return keras.Model(images, logits, name=name)
