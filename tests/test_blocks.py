"""The blocks of cnnbook.nets.blocks: output shapes and parameter counts against Keras itself,
against
the same blocks inside keras.applications, and against the papers' own tables."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from cnnbook.course import layers
from cnnbook.nets import blocks, published
from cnnbook.nets.blocks import block_model

# the keras.applications models and ResNet-1202 (session fixtures, a minute or more to build) are
# shared by test_accounting, test_blocks, test_keras_internals, test_models, test_resnet_chapter
pytestmark = pytest.mark.xdist_group("keras_models")

# (builder, input shape, arguments, expected output shape from the block's definition,
#  the parameter formula's arguments)
BLOCK_CASES = {
    "vgg_stage": (
        blocks.vgg_stage, (32, 32, 3), dict(filters=64, num_convs=2), (16, 16, 64),
        lambda: blocks.vgg_stage_params(3, 64, 2),
    ),
    "mlpconv": (
        blocks.mlpconv_block, (32, 32, 3), dict(filters=96, kernel_size=5, strides=2),
        (16, 16, 96), lambda: blocks.mlpconv_block_params(3, 96, 5),
    ),
    "inception_3a": (
        blocks.inception_module, (28, 28, 192),
        dict(filters_1x1=64, reduce_3x3=96, filters_3x3=128, reduce_5x5=16, filters_5x5=32,
             filters_pool_proj=32),
        (28, 28, 64 + 128 + 32 + 32),
        lambda: blocks.inception_module_params(192, 64, 128, 32, 32, 96, 16),
    ),
    "inception_naive": (
        blocks.inception_module, (28, 28, 192),
        dict(filters_1x1=64, filters_3x3=128, filters_5x5=32),
        (28, 28, 64 + 128 + 32 + 192), lambda: blocks.inception_module_params(192, 64, 128, 32),
    ),
    "bottleneck_projection": (
        blocks.bottleneck_block, (56, 56, 64), dict(filters=64), (56, 56, 256),
        lambda: blocks.bottleneck_block_params(64, 64),
    ),
    "bottleneck_identity": (
        blocks.bottleneck_block, (56, 56, 256), dict(filters=64), (56, 56, 256),
        lambda: blocks.bottleneck_block_params(256, 64),
    ),
    "resnext_strided": (
        blocks.bottleneck_block, (56, 56, 256),
        dict(filters=256, strides=2, groups=32, expansion=2),
        (28, 28, 512), lambda: blocks.bottleneck_block_params(256, 256, 2, 2, 32),
    ),
    "preactivation_projection": (
        blocks.bottleneck_block, (56, 56, 64), dict(filters=64, preactivation=True), (56, 56, 256),
        lambda: blocks.bottleneck_block_params(64, 64, preactivation=True),
    ),
    "preactivation_identity": (
        blocks.bottleneck_block, (56, 56, 256), dict(filters=64, preactivation=True),
        (56, 56, 256), lambda: blocks.bottleneck_block_params(256, 64, preactivation=True),
    ),
    "dense_block": (
        blocks.dense_block, (56, 56, 64), dict(num_layers=6, growth_rate=32),
        (56, 56, 64 + 6 * 32), lambda: blocks.dense_block_params(64, 6, 32),
    ),
    "dense_block_plain": (
        blocks.dense_block, (16, 16, 24), dict(num_layers=3, growth_rate=12, bottleneck_width=None),
        (16, 16, 24 + 3 * 12), lambda: blocks.dense_block_params(24, 3, 12, None),
    ),
    "depthwise_separable": (
        blocks.depthwise_separable_block, (112, 112, 32), dict(filters=64, strides=2),
        (56, 56, 64), lambda: blocks.depthwise_separable_block_params(32, 64),
    ),
    "fire": (
        blocks.fire_module, (55, 55, 96), dict(squeeze=16, expand_1x1=64, expand_3x3=64),
        (55, 55, 128), lambda: blocks.fire_module_params(96, 16, 64, 64),
    ),
    "inverted_residual": (
        blocks.inverted_residual_block, (56, 56, 24), dict(filters=24), (56, 56, 24),
        lambda: blocks.inverted_residual_block_params(24, 24),
    ),
    "inverted_residual_no_expansion": (
        blocks.inverted_residual_block, (112, 112, 32), dict(filters=16, expansion=1),
        (112, 112, 16), lambda: blocks.inverted_residual_block_params(32, 16, expansion=1),
    ),
    "mbconv_se_hard_swish": (
        blocks.inverted_residual_block, (56, 56, 24),
        dict(filters=40, kernel_size=5, strides=2, squeeze_ratio=4, activation="hard_swish"),
        (28, 28, 40), lambda: blocks.inverted_residual_block_params(24, 40, 6, 5, 4),
    ),
    "shufflenet_unit": (
        blocks.shufflenet_unit, (28, 28, 240), dict(filters=240, groups=3), (28, 28, 240),
        lambda: blocks.shufflenet_unit_params(240, 240, 3),
    ),
    "shufflenet_unit_strided": (
        blocks.shufflenet_unit, (28, 28, 240), dict(filters=480, groups=3, strides=2),
        (14, 14, 480), lambda: blocks.shufflenet_unit_params(240, 480, 3, 2),
    ),
    "squeeze_excitation": (
        blocks.squeeze_excitation, (14, 14, 256), dict(ratio=16), (14, 14, 256),
        lambda: blocks.squeeze_excitation_params(256, 16),
    ),
    "convnext": (
        blocks.convnext_block, (56, 56, 96), dict(), (56, 56, 96),
        lambda: blocks.convnext_block_params(96),
    ),
    "convnext_v2": (
        blocks.convnext_block, (56, 56, 96), dict(version=2), (56, 56, 96),
        lambda: blocks.convnext_block_params(96, version=2),
    ),
}


@pytest.mark.parametrize("case", sorted(BLOCK_CASES))
def test_block_output_shape_and_parameter_count_match_the_formula(case):
    builder, input_shape, arguments, expected_shape, formula = BLOCK_CASES[case]
    model = block_model(builder, input_shape, **arguments)
    assert tuple(model.output.shape[1:]) == expected_shape
    assert model.count_params() == formula()
    # The block runs and the computed tensor has the symbolic shape.
    outputs = model.predict_on_batch(np.zeros((1, *input_shape), dtype="float32"))
    assert outputs.shape == (1, *expected_shape)


def test_convnext_block_starts_near_the_identity_thanks_to_layer_scale():
    """Layer scale starts at 1e-6, so a fresh ConvNeXt block outputs almost exactly its input;
    V2 has no layer scale: zeroing its last dense layer leaves the identity shortcut alone."""
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    fresh = block_model(blocks.convnext_block, (8, 8, 16), name="v1")
    np.testing.assert_allclose(fresh.predict_on_batch(images), images, atol=1e-4)
    version_2 = block_model(blocks.convnext_block, (8, 8, 16), version=2)
    assert np.abs(version_2.predict_on_batch(images) - images).max() > 1e-2
    last_dense = next(layer for layer in version_2.layers if layer.name.endswith("_pointwise2"))
    last_dense.set_weights([np.zeros_like(weight) for weight in last_dense.get_weights()])
    np.testing.assert_allclose(version_2.predict_on_batch(images), images, atol=1e-6)


def test_fire_modules_match_squeezenet_table_1():
    table = published.load("squeezenet_fire_modules")
    assert len(table) == 8
    for row in table.itertuples():
        model = block_model(
            blocks.fire_module, (13, 13, row.in_channels), squeeze=row.squeeze,
            expand_1x1=row.expand_1x1, expand_3x3=row.expand_3x3,
        )
        assert model.count_params() == row.params, row.module
        assert blocks.fire_module_params(
            row.in_channels, row.squeeze, row.expand_1x1, row.expand_3x3
        ) == row.params


def test_inception_modules_match_googlenet_table_1_ops():
    """The paper's "ops" column is multiply-adds in millions; cnnbook.counting.accounting counts
    them on
    the Keras block (convolutions only: pooling and concatenation do no multiply-adds)."""
    from cnnbook.counting import accounting

    table = published.load("googlenet_inception_modules")
    for row in table.itertuples():
        model = block_model(
            blocks.inception_module, (row.size, row.size, row.in_channels),
            filters_1x1=row.filters_1x1, reduce_3x3=row.reduce_3x3, filters_3x3=row.filters_3x3,
            reduce_5x5=row.reduce_5x5, filters_5x5=row.filters_5x5,
            filters_pool_proj=row.filters_pool_proj,
        )
        assert round(accounting.macs(model) / 1e6) == row.ops_millions, row.module


def test_squeeze_excitation_adds_what_senet_reports_to_resnet50():
    """Eq. 5 of Hu et al.: (2/r) sum_s N_s C_s^2 over ResNet-50's stages (3, 4, 6, 3 blocks of
    256, 512, 1024, 2048 channels); with biases the count is a little larger."""
    row = published.load("senet_overhead").iloc[0]
    stages = [(3, 256), (4, 512), (6, 1024), (3, 2048)]
    ratio = int(row.reduction_ratio)
    weights_only = sum(2 * num_blocks * channels**2 // ratio for num_blocks, channels in stages)
    with_biases = sum(
        num_blocks * blocks.squeeze_excitation_params(channels, ratio)
        for num_blocks, channels in stages
    )
    assert round(weights_only / 1e6, 1) == row.extra_params_millions
    assert round(with_biases / 1e6, 1) == row.extra_params_millions
    se_block = block_model(blocks.squeeze_excitation, (7, 7, 2048), ratio=ratio)
    assert se_block.count_params() == blocks.squeeze_excitation_params(2048, ratio)


def _params_of_layers_named(model, pattern: str) -> int:
    return sum(layer.count_params() for layer in model.layers if re.fullmatch(pattern, layer.name))


@pytest.mark.parametrize(
    "application, layer_names, formula",
    [
        # DenseNet-121's first dense block: 6 layers on 64 channels, growth rate 32.
        ("DenseNet121", r"conv2_block\d_.*", lambda: blocks.dense_block_params(64, 6, 32)),
        # MobileNet's first depthwise separable convolution: 32 -> 64 channels.
        ("MobileNet", r"conv_(dw|pw)_1(_.*)?",
         lambda: blocks.depthwise_separable_block_params(32, 64)),
        # MobileNetV2's block 2: 24 channels, expansion 6, stride 1 (with the residual).
        ("MobileNetV2", r"block_2_.*", lambda: blocks.inverted_residual_block_params(24, 24)),
        # MobileNetV3-Large's fourth block: 24 -> 40, expansion 3, 5x5, SE on 72 // 3 = 24.
        ("MobileNetV3Large", r"expanded_conv_3_.*",
         lambda: blocks.inverted_residual_block_params(24, 40, 3, 5, squeeze_ratio=3)),
        # ConvNeXt-T's first block: 96 channels.
        ("ConvNeXtTiny", r"convnext_tiny_stage_0_block_0_.*",
         lambda: blocks.convnext_block_params(96)),
    ],
)
def test_block_formulas_match_the_same_block_in_keras_applications(
    application, layer_names, formula, keras_application
):
    model = keras_application(application, input_shape=(224, 224, 3))
    assert _params_of_layers_named(model, layer_names) == formula()


def test_mobilenet_v3_squeeze_excitation_gates_with_the_hard_sigmoid(keras_application):
    """MobileNetV3's gate is relu6(x + 3) / 6 (Howard et al. 2019, section 5.2), not the sigmoid
    of SENet: the block's gate against that formula, and against what Keras' MobileNetV3-Large
    computes in the same place (its gate is built from ReLU(6), add and multiply layers)."""
    block = block_model(blocks.inverted_residual_block, (8, 8, 24), filters=40, expansion=3,
                        kernel_size=5, squeeze_ratio=3, activation="relu",
                        se_gate="hard_sigmoid")
    (expand,) = [layer for layer in block.layers if layer.name.endswith("_se_expand")]
    gate = expand.activation
    x = np.linspace(-5, 5, 41).astype("float32")
    paper = np.minimum(np.maximum(x + 3, 0), 6) / 6
    np.testing.assert_allclose(np.asarray(gate(x)), paper, atol=1e-6)
    application = keras_application("MobileNetV3Large", input_shape=(224, 224, 3))
    squeezed = application.get_layer("expanded_conv_3_squeeze_excite_conv_1")  # before the gate
    gated = application.get_layer("expanded_conv_3_squeeze_excite_mul")
    probe = keras.Model(application.input, [squeezed.output, gated.input[1]])
    before, after = probe(np.zeros((1, 224, 224, 3), "float32") + 0.5)
    np.testing.assert_allclose(np.asarray(after), np.asarray(gate(before)), atol=1e-5)
    with pytest.raises(ValueError, match="gate must be one of"):
        block_model(blocks.squeeze_excitation, (4, 4, 8), ratio=2, gate="tanh")


def test_depthwise_separable_block_costs_one_over_f_plus_one_ninth_of_a_convolution():
    """Howard et al. 2017, section 3.1: a depthwise separable convolution costs
    ``1/F + 1/k^2`` of a full ``k x k`` convolution. The block's convolution weights (its formula
    without the two batch norms) against that ratio, and the block built in Keras."""
    in_channels, filters = 64, 128
    block = block_model(blocks.depthwise_separable_block, (8, 8, in_channels), filters=filters)
    convolutions = blocks.depthwise_separable_block_params(in_channels, filters) - 4 * (
        in_channels + filters)
    assert block.count_params() - 4 * (in_channels + filters) == convolutions
    assert convolutions / (9 * in_channels * filters) == pytest.approx(1 / filters + 1 / 9)


def test_channel_shuffle_transposes_the_group_grid():
    groups, channels = 3, 12
    images = np.arange(2 * 2 * 2 * channels, dtype="float32").reshape(2, 2, 2, channels)
    model = block_model(blocks.channel_shuffle, (2, 2, channels), groups=groups)
    expected = images.reshape(2, 2, 2, groups, channels // groups).swapaxes(3, 4).reshape(
        images.shape
    )
    np.testing.assert_array_equal(model.predict_on_batch(images), expected)
    assert model.count_params() == 0
    # Channel g * (C/groups) + j lands at position j * groups + g.
    assert list(expected[0, 0, 0, :4]) == [images[0, 0, 0, c] for c in (0, 4, 8, 1)]


def test_global_response_normalization_follows_its_formula():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 4, 4, 6)).astype("float32")
    layer = layers.GlobalResponseNormalization()
    layer.build(images.shape)
    gamma, beta = rng.normal(size=(2, 6)).astype("float32")
    layer.set_weights([gamma, beta])
    response = np.sqrt((images**2).sum(axis=(1, 2), keepdims=True))
    normalized = response / (response.mean(axis=-1, keepdims=True) + 1e-6)
    expected = gamma * (images * normalized) + beta + images
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)), expected, rtol=1e-5)


def test_blocks_with_custom_layers_reload_in_safe_mode(tmp_path):
    inputs = keras.Input((8, 8, 12))
    x = blocks.convnext_block(inputs, name="v1")
    x = blocks.convnext_block(x, version=2, name="v2")
    x = blocks.channel_shuffle(x, 3, name="shuffle")
    model = keras.Model(inputs, x)
    path = tmp_path / "blocks.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    images = np.random.default_rng(2).normal(size=(1, 8, 8, 12)).astype("float32")
    np.testing.assert_allclose(reloaded.predict_on_batch(images), model.predict_on_batch(images),
                               rtol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: blocks.vgg_stage(x, filters=0, num_convs=2), "filters must be an integer >= 1"),
        (lambda x: blocks.bottleneck_block(x, filters=30, groups=4), "multiple of groups"),
        (lambda x: blocks.squeeze_excitation(x, ratio=64), "ratio"),
        (lambda x: blocks.convnext_block(x, version=3), "version must be 1"),
        (lambda x: blocks.shufflenet_unit(x, filters=48, groups=3),
         "must equal the input channels"),
        (lambda x: blocks.inverted_residual_block(x, 16, activation="gelu"), "activation must be"),
        (lambda x: blocks.dense_block(x, num_layers=2.5, growth_rate=12), "num_layers"),
    ],
)
def test_bad_block_arguments_raise_value_errors_that_say_what_to_do(call, message):
    with pytest.raises(ValueError, match=message):
        call(keras.Input((8, 8, 24)))


def test_batch_norm_settings_are_those_of_keras_applications_and_of_the_cifar_reference(
    keras_application,
):
    """One constructor, two settings: the blocks' batch norm is keras.applications' own (read
    from its ResNet50), the CIFAR networks' that of He et al.'s Torch code (momentum 0.1 in
    Torch's convention, 0.9 in Keras'; epsilon 1e-5)."""
    from cnnbook.nets import models

    reference = keras_application("ResNet50").get_layer("conv2_block1_1_bn")
    block = block_model(blocks.bottleneck_block, (8, 8, 16), filters=4)
    block_norms = [layer for layer in block.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert block_norms and all(
        (layer.momentum, layer.epsilon) == (reference.momentum, reference.epsilon)
        for layer in block_norms)
    cifar = models.residual_block((8, 8, 4), 4, name="b")
    cifar_norms = [layer for layer in cifar.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert cifar_norms and all((layer.momentum, layer.epsilon) == (0.9, 1e-5)
                               for layer in cifar_norms)


def test_blocks_need_a_4d_input_with_known_channels():
    with pytest.raises(ValueError, match="4-D channels-last"):
        blocks.fire_module(keras.Input((24,)), 4, 8, 8)


def test_accounting_counts_the_custom_layers_like_keras():
    """cnnbook.counting.accounting has rules for LayerScale and GRN: its totals equal Keras. count,
    and a
    ConvNeXt block's MACs are the depthwise 7x7 and the two dense layers at every pixel."""
    from cnnbook.counting import accounting

    for version in (1, 2):
        model = block_model(blocks.convnext_block, (14, 14, 32), version=version)
        assert accounting.count_params(model) == model.count_params()
        assert accounting.macs(model) == 14 * 14 * (49 * 32 + 2 * 4 * 32 * 32)
