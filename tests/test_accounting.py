"""cnnbook.counting.accounting against Keras itself and against the published figures.

* parameters: equal to ``count_params()`` (and its trainable / non-trainable split) for single
  layers, cnnbook's models (nested blocks, shared layers, custom layers) and every model of
  ``keras.applications`` (slow);
* MACs: equal to the formula written out by hand for single layers, and within 5% of the papers'
  and torchvision's figures for the ImageNet models;
* training memory: each part against Keras' own weights and output shapes, and the activation
  part against the bytes of the output tensors Keras computes for batches of several sizes;
* a layer without a rule raises ``NotImplementedError``.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnbook.counting import accounting, layer_rules, memory
from cnnbook.course.layers import ZeroPadShortcut
from cnnbook.nets import models, published
from cnnbook.nets.blocks import single_layer_model

# the keras.applications models and ResNet-1202 (session fixtures, a minute or more to build) are
# shared by test_accounting, test_blocks, test_keras_internals, test_models, test_resnet_chapter
pytestmark = pytest.mark.xdist_group("keras_models")

REPO_ROOT = Path(__file__).resolve().parents[1]


def layer_row(model):
    """The row of the only layer of a :func:`single_layer_model` (row 0 is the input)."""
    stats = accounting.layer_stats(model)
    assert len(stats) == 2
    return stats.iloc[1]


def keras_split(model) -> tuple[int, int]:
    """Keras' own trainable / non-trainable weight counts."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return trainable, non_trainable


def within(value: float, published_value: float, tolerance: float) -> bool:
    return abs(value - published_value) <= tolerance * published_value


# --------------------------------------------------------------------------------------------
# Single layers: the formula written out by hand, and Keras' own count.

CONV_CASES = [
    # layer, input shape, output shape, MACs by hand, parameters by hand
    (lambda: keras.layers.Conv2D(16, 3), (32, 32, 3), (30, 30, 16),
     30 * 30 * 16 * (3 * 3 * 3), (3 * 3 * 3 + 1) * 16),
    (lambda: keras.layers.Conv2D(16, 3, strides=2, padding="same"), (32, 32, 3), (16, 16, 16),
     16 * 16 * 16 * (3 * 3 * 3), (3 * 3 * 3 + 1) * 16),
    (lambda: keras.layers.Conv2D(8, 3, groups=2, padding="same", use_bias=False), (10, 10, 4),
     (10, 10, 8), 10 * 10 * 8 * (3 * 3 * 2), 3 * 3 * 2 * 8),
    (lambda: keras.layers.Conv2D(4, 3, dilation_rate=2), (16, 16, 2), (12, 12, 4),
     12 * 12 * 4 * (3 * 3 * 2), (3 * 3 * 2 + 1) * 4),
    (lambda: keras.layers.Conv2D(6, (1, 7), padding="same"), (9, 9, 5), (9, 9, 6),
     9 * 9 * 6 * (1 * 7 * 5), (7 * 5 + 1) * 6),
    (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (8, 8, 5),
     (8, 8, 10), 8 * 8 * 5 * 2 * (3 * 3), (3 * 3 + 1) * 5 * 2),
    (lambda: keras.layers.DepthwiseConv2D(3, strides=2, use_bias=False), (9, 9, 4), (4, 4, 4),
     4 * 4 * 4 * (3 * 3), 3 * 3 * 4),
    (lambda: keras.layers.SeparableConv2D(7, 3, padding="same"), (8, 8, 5), (8, 8, 7),
     8 * 8 * 5 * (3 * 3) + 8 * 8 * 5 * 7, 3 * 3 * 5 + (5 + 1) * 7),
    (lambda: keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"), (5, 5, 3),
     (10, 10, 4), 5 * 5 * 3 * (3 * 3 * 4), 3 * 3 * 3 * 4 + 4),
    (lambda: keras.layers.Dense(10), (3072,), (10,), 3072 * 10, 3072 * 10 + 10),
    (lambda: keras.layers.Dense(6), (4, 4, 3), (4, 4, 6), 4 * 4 * 3 * 6, 3 * 6 + 6),
]


@pytest.mark.parametrize(
    "make_layer, input_shape, output_shape, expected_macs, expected_params", CONV_CASES,
    ids=["conv", "conv-stride2", "conv-grouped", "conv-dilated", "conv-1x7", "depthwise",
         "depthwise-stride2", "separable", "conv-transpose", "dense", "dense-per-pixel"],
)
def test_macs_and_params_of_a_single_layer_equal_the_formula(
    make_layer, input_shape, output_shape, expected_macs, expected_params
):
    model = single_layer_model(make_layer(), input_shape)
    row = layer_row(model)
    assert tuple(row.output_shape) == output_shape
    assert row.macs == expected_macs
    assert row.params == expected_params == model.count_params()
    assert row.activations == math.prod(output_shape)
    assert accounting.macs(model, batch_size=3) == 3 * expected_macs


def test_batch_norm_statistics_are_non_trainable_and_frozen_layers_move_all_weights():
    model = single_layer_model(keras.layers.BatchNormalization(), (8, 8, 16))
    row = layer_row(model)
    assert (row.trainable_params, row.non_trainable_params) == keras_split(model) == (32, 32)
    assert row.macs == 0 and row.extra_ops == 2 * 8 * 8 * 16

    frozen = single_layer_model(keras.layers.Conv2D(4, 3, trainable=False), (6, 6, 2))
    row = layer_row(frozen)
    assert (row.trainable_params, row.non_trainable_params) == keras_split(frozen) == (0, 76)


def test_normalization_weights_only_when_adapted():
    given = single_layer_model(keras.layers.Normalization(mean=[1.0, 2, 3], variance=[1.0, 1, 1]),
                               (4, 4, 3))
    adaptable = single_layer_model(keras.layers.Normalization(axis=-1), (4, 4, 3))
    assert layer_row(given).params == given.count_params() == 0
    # mean and variance per channel and a scalar count, all non-trainable
    assert layer_row(adaptable).non_trainable_params == adaptable.count_params() == 2 * 3 + 1


@pytest.mark.parametrize("make_layer", [
    lambda: keras.layers.ReLU(), lambda: keras.layers.MaxPooling2D(2),
    lambda: keras.layers.AveragePooling2D(3, strides=1, padding="same"),
    lambda: keras.layers.GlobalAveragePooling2D(), lambda: keras.layers.Flatten(),
    lambda: keras.layers.Dropout(0.5), lambda: keras.layers.ZeroPadding2D(1),
    lambda: keras.layers.Activation("swish"), lambda: ZeroPadShortcut(8, stride=2),
], ids=["relu", "maxpool", "avgpool", "global-pool", "flatten", "dropout", "pad", "activation",
        "option-a-shortcut"])
def test_parameter_free_layers_have_no_parameters_and_no_macs(make_layer):
    model = single_layer_model(make_layer(), (8, 8, 4))
    row = layer_row(model)
    assert row.params == model.count_params() == 0
    assert row.macs == 0


def test_views_write_no_activations():
    inputs = keras.Input(shape=(4, 4, 3))
    x = keras.layers.ReLU(name="relu")(inputs)
    x = keras.layers.Activation("linear", name="identity")(x)
    x = keras.layers.Reshape((16, 3), name="reshape")(x)
    model = keras.Model(inputs, keras.layers.Flatten(name="flatten")(x))
    activations = accounting.layer_stats(model).set_index("name")["activations"]
    assert activations["relu"] == 4 * 4 * 3
    assert activations["identity"] == activations["reshape"] == activations["flatten"] == 0
    assert accounting.activation_count(model) == 2 * 4 * 4 * 3  # the input and the ReLU


def test_pooling_and_additions_are_extras_not_macs():
    inputs = keras.Input(shape=(8, 8, 4))
    pooled = keras.layers.MaxPooling2D(2, name="pool")(inputs)
    summed = keras.layers.Add(name="add")([pooled, pooled, pooled])
    model = keras.Model(inputs, summed)
    stats = accounting.layer_stats(model).set_index("name")
    assert stats.loc["pool", "extra_ops"] == 4 * 4 * 4 * (2 * 2)  # window size per output
    assert stats.loc["add", "extra_ops"] == 4 * 4 * 4 * 2  # three tensors: two additions
    assert accounting.macs(model) == 0
    assert accounting.macs(model, include_extras=True) == accounting.extra_ops(model) == 256 + 128


# --------------------------------------------------------------------------------------------
# Whole models: the toy network, nested and shared blocks, cnnbook's CIFAR ResNets.


def test_toy_network_layer_by_layer():
    model = models.toy_cnn()
    stats = accounting.layer_stats(model)
    assert list(stats.columns) == ["name", "type", "output_shape", "trainable_params",
                                   "non_trainable_params", "params", "activations", "macs",
                                   "extra_ops"]
    for row in stats.itertuples():
        assert row.params == model.get_layer(row.name).count_params(), row.name
    by_name = stats.set_index("name")
    assert by_name.loc["conv", "params"] == (3 * 3 * 3 + 1) * 12 == 336
    assert by_name.loc["fc", "params"] == (16 * 16 * 12 + 1) * 10 == 30_730
    assert by_name.loc["flatten", "activations"] == 0  # a view of the pooled maps
    assert accounting.count_params(model) == model.count_params() == 31_066
    # input, normalised input, conv, relu, pool outputs and the 10 scores
    assert accounting.activation_count(model) == 3_072 + 3_072 + 12_288 + 12_288 + 3_072 + 10
    assert accounting.macs(model) == 32 * 32 * 12 * 27 + 3_072 * 10 == 362_496


def test_nested_shared_blocks_count_weights_once_and_compute_per_call():
    block_input = keras.Input(shape=(None, None, 8))  # sizes known only when called
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(block_input)
    y = keras.layers.BatchNormalization(name="bn")(y)
    block = keras.Model(block_input, keras.layers.Add(name="add")([block_input, y]), name="block")
    images = keras.Input(shape=(16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(images)
    x = block(block(x))  # the same block twice
    x = ZeroPadShortcut(16, stride=2, name="shortcut")(x)
    head = keras.Sequential([keras.layers.GlobalAveragePooling2D(name="gap"),
                             keras.layers.Dense(10, name="fc")], name="head")
    model = keras.Model(images, head(x))

    stats = accounting.layer_stats(model).set_index("name")
    assert accounting.count_params(model) == model.count_params()
    assert (stats.trainable_params.sum(), stats.non_trainable_params.sum()) == keras_split(model)
    assert stats.loc["block#2/conv", "params"] == 0  # already counted at the first call
    assert stats.loc["block#2/conv", "macs"] == stats.loc["block/conv", "macs"] == 16 * 16 * 8 * 72
    assert tuple(stats.loc["shortcut", "output_shape"]) == (8, 8, 16)
    assert accounting.macs(model) == 16 * 16 * 8 * 27 + 2 * (16 * 16 * 8 * 72) + 16 * 10


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_cifar_resnet20_parameters_match_keras_and_he_et_al(shortcut):
    model = models.resnet_cifar(20, shortcut)
    stats = accounting.layer_stats(model)
    assert accounting.count_params(model) == model.count_params()
    assert (stats.trainable_params.sum(), stats.non_trainable_params.sum()) == keras_split(model)
    table = published.load("he2015_cifar10").set_index("network")
    assert round(stats.trainable_params.sum() / 1e6, 2) == table.loc["ResNet-20", "params_millions"]


def test_unknown_spatial_size_needs_an_input_shape_for_macs():
    inputs = keras.Input(shape=(None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    assert accounting.count_params(model) == model.count_params() == 112
    with pytest.raises(ValueError, match="input_shape"):
        accounting.macs(model)
    assert accounting.macs(model, input_shape=(10, 12, 3)) == 10 * 12 * 4 * 27
    with pytest.raises(ValueError, match="input_shape"):
        accounting.macs(model, input_shape=(10, 12))


# --------------------------------------------------------------------------------------------
# Layers without a rule.


class _Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.factor = self.add_weight(shape=(input_shape[-1],), name="factor")

    def call(self, inputs):
        return inputs * self.factor


class _MyConv(keras.layers.Conv2D):
    pass


def test_a_layer_without_a_rule_raises_naming_class_and_layer():
    model = single_layer_model(_Scale(name="mystery"), (4, 4, 3))
    with pytest.raises(NotImplementedError, match=r"'mystery' of class .*_Scale"):
        accounting.count_params(model)
    # a subclass of a known layer may add weights: it needs its own rule too
    with pytest.raises(NotImplementedError, match=r"'my_conv' of class .*_MyConv"):
        accounting.layer_stats(single_layer_model(_MyConv(2, 3, name="my_conv"), (4, 4, 3)))
    # also deep inside a nested block
    inner_input = keras.Input(shape=(4, 4, 3))
    inner = keras.Model(inner_input, _Scale(name="hidden")(inner_input), name="inner")
    outer_input = keras.Input(shape=(4, 4, 3))
    with pytest.raises(NotImplementedError, match="'hidden'"):
        accounting.macs(keras.Model(outer_input, inner(outer_input)))


def test_registering_a_rule_makes_a_custom_layer_countable():
    class Scale(_Scale):  # a fresh class, so the registry of other tests is untouched
        pass

    def scale_params(call):
        return call.input_shape[-1], 0

    layer_rules.register_rule(Scale, params=scale_params,
                             extra_ops=lambda call: call.output_elements)
    model = single_layer_model(Scale(), (4, 4, 3))
    assert accounting.count_params(model) == model.count_params() == 3
    assert accounting.extra_ops(model) == 4 * 4 * 3
    with pytest.raises(ValueError, match="already has a rule"):
        layer_rules.register_rule(Scale)


def test_a_subclassed_model_is_refused():
    class Subclassed(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(ValueError, match="functional or Sequential"):
        accounting.count_params(Subclassed())


# --------------------------------------------------------------------------------------------
# Training memory.


def keras_activations(model) -> int:
    """Elements per example of every layer's output as Keras reports it, views (``Flatten``)
    left out, plus the input: the activation count, from Keras' shapes rather than ours."""
    return sum(math.prod(layer.output.shape[1:]) for layer in model.layers
               if not isinstance(layer, keras.layers.Flatten))


def test_training_memory_parts_follow_the_stated_rules_on_keras_counts():
    model = models.toy_cnn()
    trainable, _ = keras_split(model)
    activations = keras_activations(model)
    for optimizer, slots in (("sgd", 0), ("momentum", 1), ("adam", 2)):
        estimate = memory.training_memory(model, 32, optimizer)
        assert estimate.total == (4 * model.count_params() + 4 * trainable + slots * 4 * trainable
                                  + 4 * 32 * activations)
        assert estimate.weights == 4 * model.count_params()
        assert estimate.gradients == 4 * trainable
        assert estimate.optimizer_state == slots * 4 * trainable
        assert estimate.activations == 4 * 32 * activations
    mixed = memory.training_memory(model, 32, "adam", "mixed_float16")
    assert mixed.activations == 2 * 32 * activations
    assert mixed.weights == 4 * model.count_params() + 2 * trainable


def test_training_memory_activations_are_the_bytes_of_the_tensors_keras_computes():
    """For each batch size, the activation part is the bytes of every layer's output (views left
    out, the input kept) that Keras computes for a batch that size, and only that part grows
    with the batch: the weights, gradients and Adam's two slots are Keras' counts, whatever it."""
    model = models.toy_cnn()
    kept = [layer for layer in model.layers if not isinstance(layer, keras.layers.Flatten)]
    every_output = keras.Model(model.input, [layer.output for layer in kept])
    trainable, non_trainable = keras_split(model)
    for batch_size in (1, 7, 128):
        images = np.zeros((batch_size, 32, 32, 3), dtype="float32")
        outputs = every_output(images)
        assert len(outputs) == len(kept) and all(o.shape[0] == batch_size for o in outputs)
        held = sum(keras.ops.convert_to_numpy(output).nbytes for output in outputs)
        estimate = memory.training_memory(model, batch_size, "adam")
        assert estimate.activations == held, batch_size
        assert estimate.total - estimate.activations == (
            4 * (trainable + non_trainable) + 4 * trainable + 2 * 4 * trainable)


def test_max_batch_size_is_the_largest_that_fits():
    model = models.toy_cnn()
    budget = 50 * 2**20
    largest = memory.max_batch_size(model, budget, "adam")
    assert memory.training_memory(model, largest, "adam").total <= budget
    assert memory.training_memory(model, largest + 1, "adam").total > budget
    assert memory.max_batch_size(model, 1_000, "adam") == 0  # the weights alone do not fit


@pytest.mark.parametrize("arguments, message", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"batch_size": 8, "optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"batch_size": 8, "dtype": "float64"}, "dtype must be one of"),
])
def test_training_memory_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        memory.training_memory(models.toy_cnn(), **arguments)


# --------------------------------------------------------------------------------------------
# VGG-16 and the published compute figures of the ImageNet models.

VGG16_CONVS = [(224, 64)] * 2 + [(112, 128)] * 2 + [(56, 256)] * 3 + [(28, 512)] * 3 \
    + [(14, 512)] * 3
VGG16_POOLS = [(112, 64), (56, 128), (28, 256), (14, 512), (7, 512)]


@pytest.fixture(scope="module")
def vgg16_stats(keras_application):
    return accounting.layer_stats(keras_application("VGG16"))


def test_vgg16_activations_are_15_million_not_24(vgg16_stats):
    """The CS231n notes' per-layer list (input, 13 convs, 5 pools, 3 FC) sums to about 15.2M
    values per image, not the 24M (93 MB) their text states."""
    claims = published.load("cs231n_vgg16_claims").set_index("quantity")["value"]
    by_hand = (224 * 224 * 3 + sum(size * size * channels for size, channels in VGG16_CONVS)
               + sum(size * size * channels for size, channels in VGG16_POOLS) + 4096 + 4096 + 1000)
    assert vgg16_stats.activations.sum() == by_hand
    assert not within(by_hand, claims["activations"], 0.10)
    assert not within(4 * by_hand / 1e6, claims["activation_memory"], 0.10)
    # the input and the first two blocks (224x224 and 112x112) hold most of it
    is_early = vgg16_stats.type.eq("InputLayer") | vgg16_stats.name.str.match(r"block[12]_")
    early = vgg16_stats[is_early].activations.sum()
    assert early == 224 * 224 * 3 + 2 * 224 * 224 * 64 + 112 * 112 * 64 + 2 * 112 * 112 * 128 \
        + 56 * 56 * 128
    assert early > by_hand / 2  # "most of it", as the chapter says


def test_vgg16_parameters_with_and_without_biases(vgg16_stats):
    table = published.load("imagenet_models").set_index("model")
    total = vgg16_stats.params.sum()
    biases = sum(channels for _, channels in VGG16_CONVS) + 4096 + 4096 + 1000
    # the Keras documentation prints 138.4M; the exact count is the sum below, biases added
    assert round(total / 1e6, 1) == table.loc["VGG16", "params_millions"]
    assert vgg16_stats.trainable_params.sum() - biases == sum(
        3 * 3 * c_in * c_out for c_in, (_, c_out) in zip(
            [3] + [c for _, c in VGG16_CONVS[:-1]], VGG16_CONVS, strict=True)
    ) + 25_088 * 4096 + 4096 * 4096 + 4096 * 1000  # the weights without biases, layer by layer
    by_name = vgg16_stats.set_index("name")
    assert by_name.loc["block1_conv2", "params"] == 3 * 3 * 64 * 64 + 64
    assert by_name.loc["block1_conv2", "macs"] == 224 * 224 * 64 * (3 * 3 * 64)
    assert by_name.loc["fc1", "macs"] == 25_088 * 4096
    assert by_name.loc["fc1", "params"] == (25_088 + 1) * 4096
    assert by_name.loc["fc1", "params"] > total / 2  # one layer holds most of the network
    dense = vgg16_stats[vgg16_stats.type == "Dense"]
    assert dense.params.sum() == 25_088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert dense.params.sum() / total > 0.89  # the parameters live in the FC layers ...
    assert dense.macs.sum() / vgg16_stats.macs.sum() < 0.01  # ... the compute in the convs
    assert within(vgg16_stats.macs.sum(), table.loc["VGG16", "macs_g"] * 1e9, 0.05)


def test_keras_resnet50_is_he_et_al_layout_not_torchvision(keras_application):
    """Keras' ResNet50 strides the first 1x1 convolution of a downsampling bottleneck, as He et
    al.'s model did (3.8 G); torchvision's strides the 3x3, so its three 1x1 convolutions run
    on four times as many positions (4.09 G)."""
    model = keras_application("ResNet50")
    stats = accounting.layer_stats(model).set_index("name")
    strided = [f"conv{stage}_block1_1_conv" for stage in (3, 4, 5)]
    assert all(model.get_layer(name).strides == (2, 2) for name in strided)
    keras_macs = stats.macs.sum()
    he_table = published.load("he2015_imagenet_macs").set_index("network")
    torchvision_table = published.load("imagenet_models").set_index("model")
    assert within(keras_macs, he_table.loc["ResNet-50", "macs_g"] * 1e9, 0.05)
    assert not within(keras_macs, torchvision_table.loc["ResNet50", "macs_g"] * 1e9, 0.05)
    stride_on_3x3 = keras_macs + 3 * stats.loc[strided, "macs"].sum()
    assert within(stride_on_3x3, torchvision_table.loc["ResNet50", "macs_g"] * 1e9, 0.01)

    # activations and training memory from Keras' own shapes and weights
    activations = sum(math.prod(layer.output.shape[1:]) for layer in model.layers)
    assert accounting.activation_count(model) == activations
    trainable, _ = keras_split(model)
    fixed = 4 * model.count_params() + 4 * trainable + 2 * 4 * trainable  # Adam: two slots
    for gib in (16, 24, 40, 80):
        expected = (gib * 2**30 - fixed) // (4 * activations)
        assert memory.max_batch_size(model, gib * 2**30, "adam") == expected
    mixed_fixed = fixed + 2 * trainable
    assert memory.max_batch_size(model, 16 * 2**30, "adam", "mixed_float16") == \
        (16 * 2**30 - mixed_fixed) // (2 * activations)


@pytest.mark.parametrize("application", ["MobileNetV2", "EfficientNetB0"])
def test_mobile_networks_macs_match_published(application, keras_application):
    table = published.load("imagenet_models").set_index("keras_application")
    model = keras_application(application)
    assert within(accounting.macs(model), table.loc[application, "macs_g"] * 1e9, 0.05)


def test_published_tables_cite_keys_of_the_bibliography():
    bibliography = (REPO_ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"^@\w+\{([^,]+),", bibliography, flags=re.MULTILINE))
    for name in ("imagenet_models", "he2015_imagenet_macs", "ilsvrc_top5", "gpu_memory",
                 "cs231n_vgg16_claims"):
        table = published.load(name)
        for column in [c for c in table.columns if c.endswith("source")]:
            cited = set(table[column].dropna())
            assert cited and cited <= keys, f"{name}.{column}: {cited - keys} not in references.bib"


# --------------------------------------------------------------------------------------------
# Every keras.applications model (slow: about a minute to build them all).

APPLICATIONS = sorted(name for name in dir(keras.applications) if name[0].isupper())
STRIDE_ON_3X3 = {"ResNet50", "ResNet101", "ResNet152"}  # torchvision's layout, see above
SHARED_APPLICATIONS = {"VGG16", "ResNet50", "MobileNetV2", "EfficientNetB0"}
"""Built once per run by the session fixture ``keras_application`` (other tests use them too)."""


@pytest.fixture(scope="module")
def application_counts(report_timing, keras_application):
    """Each application built once (weights=None, default input size), counted, and freed."""
    published_macs = published.load("imagenet_models").dropna(subset=["keras_application",
                                                                      "macs_g"])
    image_sizes = dict(zip(published_macs.keras_application, published_macs.macs_image_size,
                           strict=True))
    counts = {}
    start = time.perf_counter()
    for name in APPLICATIONS:
        shared = name in SHARED_APPLICATIONS
        model = keras_application(name) if shared else getattr(keras.applications, name)(
            weights=None)
        stats = accounting.layer_stats(model)
        record = {
            "params": accounting.count_params(model),
            "keras_params": model.count_params(),
            "split": (int(stats.trainable_params.sum()), int(stats.non_trainable_params.sum())),
            "keras_split": keras_split(model),
        }
        if name in image_sizes:
            size = int(image_sizes[name])
            record["macs"] = accounting.macs(model, input_shape=(size, size, 3))
            if name in STRIDE_ON_3X3:  # three 1x1 convolutions on 4x the positions
                strided = stats[stats.name.str.fullmatch(r"conv[345]_block1_1_conv")]
                assert len(strided) == 3
                record["macs_stride_on_3x3"] = record["macs"] + 3 * int(strided.macs.sum())
        counts[name] = record
        del model
        if not shared:
            keras.backend.clear_session()
    report_timing(f"build and count all {len(APPLICATIONS)} keras.applications models",
                  time.perf_counter() - start)
    return counts


@pytest.mark.slow
def test_count_params_equals_keras_for_every_application(application_counts):
    wrong = {name: (c["params"], c["keras_params"]) for name, c in application_counts.items()
             if c["params"] != c["keras_params"]}
    assert not wrong, f"(cnnbook, Keras) differ: {wrong}"
    wrong = {name: (c["split"], c["keras_split"]) for name, c in application_counts.items()
             if c["split"] != c["keras_split"]}
    assert not wrong, f"trainable / non-trainable split differs: {wrong}"


@pytest.mark.slow
def test_imagenet_table_macs_within_5_percent(application_counts):
    table = published.load("imagenet_models").dropna(subset=["keras_application", "macs_g"])
    assert len(table) >= 12
    for row in table.itertuples():
        counts = application_counts[row.keras_application]
        counted = counts.get("macs_stride_on_3x3", counts["macs"])
        assert within(counted, row.macs_g * 1e9, 0.05), (row.model, counted / 1e9, row.macs_g)


@pytest.mark.slow
def test_imagenet_table_params_match_keras(application_counts):
    """Keras' table counts every weight, rounded to 0.1M; torchvision and the papers count only
    trained weights (no batch-norm statistics). MobileNetV3-Large's paper figure, 5.4M, is
    0.08M below Keras' 5,483,032 trained weights (5.5M when rounded): within 0.1M, not 0.05M."""
    table = published.load("imagenet_models").dropna(subset=["keras_application"])
    for row in table.itertuples():
        counts = application_counts[row.keras_application]
        counted = counts["params"] if row.params_source == "keras_applications" \
            else counts["split"][0]
        tolerance = 0.1 if row.params_source == "howard2019searching" else 0.05
        assert abs(counted / 1e6 - row.params_millions) <= tolerance, (row.model, counted)


@pytest.mark.slow
def test_he_et_al_resnet_macs_within_5_percent(application_counts):
    table = published.load("he2015_imagenet_macs").dropna(subset=["keras_application"])
    assert len(table) == 3
    for row in table.itertuples():
        counted = application_counts[row.keras_application]["macs"]
        assert within(counted, row.macs_g * 1e9, 0.05), (row.network, counted / 1e9)
