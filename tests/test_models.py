"""The models of cnnbook.nets.models: parameter counts against He et al. 2015 (Table 6) and against
formulas, block structure and formulas against a NumPy reference, shapes, bad input, save/load with
safe_mode, and the rebuild that a lesion study does."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnbook.course.layers import ZeroPadShortcut
from cnnbook.nets import models, published

# the keras.applications models and ResNet-1202 (session fixtures, a minute or more to build) are
# shared by test_accounting, test_blocks, test_keras_internals, test_models, test_resnet_chapter
pytestmark = [pytest.mark.xdist_group("keras_models"), pytest.mark.long_unit]

PAPER_DEPTHS = (20, 32, 44, 56, 110)


def trainable_parameters(model: keras.Model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def significant_figures(value: float) -> int:
    """Significant figures of a number as printed (0.27 -> 2, 1.7 -> 2, 19.4 -> 3)."""
    return len(repr(float(value)).replace(".", "").lstrip("0").rstrip("0") or "0")


def round_significant(value: float, figures: int) -> float:
    return float(f"{value:.{figures}g}")


def raw_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3)).astype("uint8")


def perturb_weights(model: keras.Model, seed: int = 0) -> None:
    """Move every weight (batch-norm statistics included) away from its initial value, so that
    a comparison also covers moving means and variances; variances stay positive."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        noise = 0.2 * np.abs(rng.standard_normal(weight.shape)).astype("float32")
        weight.assign(weight.numpy() + noise)


# --- parameter counts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table6():
    table = published.load("he2015_cifar10")
    return {int(row.depth): float(row.params_millions) for row in table.itertuples()}


@pytest.mark.parametrize("depth", PAPER_DEPTHS)
def test_option_a_parameters_match_he2015_table6(depth, table6):
    printed = table6[depth]
    counted = trainable_parameters(models.resnet_cifar(depth, shortcut="A")) / 1e6
    assert round_significant(counted, significant_figures(printed)) == printed, (
        f"ResNet-{depth}: {counted:.4f}M trainable parameters, the paper prints {printed}M"
    )


@pytest.mark.slow
def test_resnet1202_parameters_match_he2015_table6(table6, resnet1202):
    # 600 blocks, built once per run by the session fixture (tests/conftest.py)
    counted = trainable_parameters(resnet1202) / 1e6
    assert round_significant(counted, significant_figures(table6[1202])) == table6[1202]


def test_all_published_depths_are_in_the_table(table6):
    assert set(models.PUBLISHED_CIFAR_DEPTHS) == set(table6)


@pytest.mark.parametrize("depth", (20, 32))  # the difference does not depend on the depth
def test_option_b_adds_exactly_two_projections(depth):
    option_a = trainable_parameters(models.resnet_cifar(depth, "A"))
    option_b = trainable_parameters(models.resnet_cifar(depth, "B"))
    # a 1x1 convolution C_in -> C_out without bias, then batch norm (gamma, beta) on C_out
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert option_b - option_a == projections


@pytest.mark.parametrize("depth", (8, 20))
def test_plain_network_has_the_parameters_of_option_a(depth):
    assert trainable_parameters(models.plain_cifar(depth)) == trainable_parameters(
        models.resnet_cifar(depth, "A")
    )


def test_resnet20_parameters_by_formula():
    """The count written out layer by layer (no conv biases, 2 trainable BN parameters per
    channel), against Keras's own count."""
    conv = lambda c_in, c_out: 9 * c_in * c_out  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    stem = conv(3, 16) + bn(16)
    block = lambda c_in, c: conv(c_in, c) + bn(c) + conv(c, c) + bn(c)  # noqa: E731
    stages = sum(block(16, 16) for _ in range(3))
    stages += block(16, 32) + 2 * block(32, 32) + block(32, 64) + 2 * block(64, 64)
    classifier = 64 * 10 + 10
    assert trainable_parameters(models.resnet_cifar(20)) == stem + stages + classifier == 269_722


def test_lenet5_parameters_by_formula():
    conv = lambda k, c_in, c_out: (k * k * c_in + 1) * c_out  # noqa: E731
    dense = lambda n_in, n_out: (n_in + 1) * n_out  # noqa: E731
    expected = conv(5, 1, 6) + conv(5, 6, 16) + conv(5, 16, 120) + dense(120, 84) + dense(84, 10)
    model = models.lenet5()
    assert model.count_params() == expected == 61_706
    assert model.get_layer("c1").output.shape[1:] == (28, 28, 6)
    assert model.get_layer("s4").output.shape[1:] == (5, 5, 16)
    assert model.get_layer("c5").output.shape[1:] == (1, 1, 120)
    assert model.output.shape[1:] == (10,)


@pytest.mark.parametrize("two_towers", (False, True))
def test_alexnet_parameters_and_shapes(two_towers):
    groups = 2 if two_towers else 1
    conv = lambda k, c_in, c_out, g=1: (k * k * c_in // g + 1) * c_out  # noqa: E731
    dense = lambda n_in, n_out: (n_in + 1) * n_out  # noqa: E731
    expected = (
        conv(11, 3, 96) + conv(5, 96, 256, groups) + conv(3, 256, 384)
        + conv(3, 384, 384, groups) + conv(3, 384, 256, groups)
        + dense(6 * 6 * 256, 4096) + dense(4096, 4096) + dense(4096, 1000)
    )
    model = models.alexnet(two_towers=two_towers)
    params = model.count_params()
    assert params == expected
    if two_towers:
        # Krizhevsky et al. 2012: "60 million parameters", the two-tower network (the count
        # in whole millions, truncated: 60.97M)
        assert params // 10**6 == 60
    else:
        # one tower: conv2, conv4 and conv5 see all channels, so their weights (not their
        # biases) double; written as the difference from the two-tower network Keras builds
        halved_weights = (5 * 5 * 96 * 256 + 3 * 3 * 384 * 384 + 3 * 3 * 384 * 256) // 2
        assert params == models.alexnet(two_towers=True).count_params() + halved_weights
    # CS231n: (227 - 11) / 4 + 1 = 55
    assert model.get_layer("conv1").output.shape[1:] == (55, 55, 96)
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)
    assert model.output.shape[1:] == (1000,)


# --- shapes and bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, depth",
    [
        (lambda: models.resnet_cifar(8), 8),
        (lambda: models.resnet_cifar(14, "B", preact=True, num_classes=100), 14),
        (lambda: models.plain_cifar(8, num_classes=7), 8),
    ],
    ids=["resnet8_A", "preact_resnet14_B_100", "plain8_7"],
)
def test_output_is_one_logit_per_class_and_blocks_have_the_paper_shapes(build, depth):
    model = build()
    num_classes = model.output.shape[-1]
    logits = model.predict(raw_images(3), verbose=0)
    assert logits.shape == (3, num_classes) and logits.dtype == np.float32
    # logits, not probabilities: no softmax at the end
    assert model.get_layer("logits").activation is keras.activations.linear
    num_blocks = (depth - 2) // 6
    names = models.block_names(model)
    assert names == [models.block_name(s, b) for s in (1, 2, 3) for b in range(1, num_blocks + 1)]
    for stage in (1, 2, 3):
        size, channels = 32 // 2 ** (stage - 1), 16 * 2 ** (stage - 1)
        for block_index in range(1, num_blocks + 1):
            block = model.get_layer(models.block_name(stage, block_index))
            assert block.output.shape[1:] == (size, size, channels)
            assert models.is_downsampling_block(block) == (stage > 1 and block_index == 1)


@pytest.mark.parametrize("depth", [0, 2, 7, 19, 21, 1201, -4, 20.0, "20", True, None])
def test_depth_that_is_not_6n_plus_2_raises(depth):
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 2"):
        models.resnet_cifar(depth)
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 2"):
        models.plain_cifar(depth)


@pytest.mark.parametrize("depth", [8, 14, 26, 38])
def test_every_6n_plus_2_depth_builds(depth):
    model = models.resnet_cifar(depth)
    assert len(models.block_names(model)) == 3 * (depth - 2) // 6


@pytest.mark.parametrize("shortcut", ["C", "a", "b", "", None, 1, ("A",)])
def test_residual_block_accepts_only_options_a_and_b(shortcut):
    with pytest.raises(ValueError, match="shortcut must be 'A'"):
        models.residual_block((8, 8, 4), 8, stride=2, shortcut=shortcut)


def test_residual_block_rejects_bad_filters_and_stride():
    with pytest.raises(ValueError, match="filters must be an integer >= 1"):
        models.residual_block((8, 8, 4), 0)
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        models.residual_block((8, 8, 4), 4, stride=1.5)


def test_bad_shortcut_classes_or_width_raise():
    with pytest.raises(ValueError, match="shortcut must be 'A'"):
        models.resnet_cifar(20, shortcut="C")
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet_cifar(20, num_classes=1)
    with pytest.raises(ValueError, match="base_filters"):
        models.plain_cifar(20, base_filters=0)


# --- the blocks compute their formulas --------------------------------------------------------


def conv2d_reference(x, kernel, stride):
    """'same' convolution as TensorFlow pads it (extra zero at the bottom/right), in NumPy."""
    k = kernel.shape[0]
    size = x.shape[1]
    out = -(-size // stride)
    pad_total = max((out - 1) * stride + k - size, 0)
    before = pad_total // 2
    padded = np.pad(x, ((0, 0), (before, pad_total - before), (before, pad_total - before), (0, 0)))
    result = np.zeros((x.shape[0], out, out, kernel.shape[-1]), dtype=np.float64)
    for i in range(out):
        for j in range(out):
            patch = padded[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            result[:, i, j, :] = np.einsum("nhwc,hwcd->nd", patch, kernel)
    return result


def batch_norm_reference(x, layer):
    gamma, beta, mean, variance = (w.numpy().astype(np.float64) for w in layer.weights)
    return gamma * (x - mean) / np.sqrt(variance + layer.epsilon) + beta


@pytest.mark.parametrize("preact", (False, True))
@pytest.mark.parametrize("stride, shortcut", [(1, "A"), (2, "A"), (2, "B")])
def test_residual_block_computes_its_formula(preact, stride, shortcut):
    """Inference mode. Original: relu(h(x) + BN2(W2 * relu(BN1(W1 * x)))); pre-activation:
    h(x) + W2 * relu(BN2(W1 * relu(BN1(x)))); h = identity, option A or option B."""
    c_in, filters = (4, 4) if stride == 1 else (4, 8)
    block = models.residual_block((8, 8, c_in), filters, stride, shortcut, preact, name="b")
    perturb_weights(block, seed=stride)
    x = np.random.default_rng(1).standard_normal((2, 8, 8, c_in)).astype("float32")
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    layer = block.get_layer
    w1, w2 = (layer(n).kernel.numpy().astype(np.float64) for n in ("conv1", "conv2"))
    x64 = x.astype(np.float64)
    if preact:
        residual = relu(batch_norm_reference(x64, layer("bn1")))
        residual = conv2d_reference(residual, w1, stride)
        residual = relu(batch_norm_reference(residual, layer("bn2")))
        residual = conv2d_reference(residual, w2, 1)
    else:
        residual = relu(batch_norm_reference(conv2d_reference(x64, w1, stride), layer("bn1")))
        residual = batch_norm_reference(conv2d_reference(residual, w2, 1), layer("bn2"))
    if stride == 1:
        shortcut_value = x64
    elif shortcut == "A":
        sampled = x64[:, ::2, ::2, :]
        shortcut_value = np.concatenate([sampled, np.zeros_like(sampled)], axis=-1)
    else:
        projection = conv2d_reference(x64, layer("shortcut_conv").kernel.numpy(), 2)
        shortcut_value = batch_norm_reference(projection, layer("shortcut_bn"))
    expected = shortcut_value + residual if preact else relu(shortcut_value + residual)
    np.testing.assert_allclose(block(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(models.apply_shortcut(block, x)), shortcut_value,
        rtol=1e-5, atol=1e-5,
    )


def test_preact_network_ends_with_batch_norm_and_relu_before_pooling():
    model = models.resnet_cifar(8, preact=True)
    names = [layer.name for layer in model.layers]
    assert names[-4:] == ["final_bn", "final_relu", "pool", "logits"]
    assert names[:3] == ["image", "normalize", "stem_conv"]  # bare stem: blocks start with BN
    block_layers = [layer.name for layer in model.get_layer("stage1_block1").layers]
    assert block_layers[-1] == "add"  # nothing after the addition


def test_zero_pad_shortcut_equals_an_identity_1x1_projection():
    """Option A is option B with a fixed identity kernel: same positions, zeros elsewhere."""
    x = np.random.default_rng(2).standard_normal((2, 9, 9, 3)).astype("float32")
    projection = keras.layers.Conv2D(7, 1, strides=2, use_bias=False)
    projection.build(x.shape)
    projection.kernel.assign(np.eye(3, 7, dtype="float32")[None, None])
    option_a = ZeroPadShortcut(7, stride=2)
    np.testing.assert_array_equal(option_a(x).numpy(), projection(x).numpy())
    assert option_a.compute_output_shape((None, 9, 9, 3)) == (None, 5, 5, 7)
    assert not option_a.weights
    with pytest.raises(ValueError, match="out_channels"):
        ZeroPadShortcut(2)(x)
    with pytest.raises(ValueError, match="stride"):
        ZeroPadShortcut(8, stride=0)


# --- saving and lesion rebuilds -----------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: models.resnet_cifar(8, "A"),
        lambda: models.resnet_cifar(8, "B", preact=True),
        lambda: models.plain_cifar(8),
        lambda: models.toy_cnn(),
    ],
    ids=["resnet8_A", "preact_resnet8_B", "plain8", "toy_cnn"],
)
def test_saved_model_reloads_with_safe_mode_and_identical_outputs(build, tmp_path):
    model = build()
    perturb_weights(model)
    images = raw_images(5, seed=3)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0)
    )
    assert models.block_names(reloaded) == models.block_names(model)


def rebuild(model, replace):
    """What a lesion study does: call the top-level chain on a new input, replacing blocks."""
    inputs = keras.Input(shape=model.input.shape[1:])
    x = inputs
    for layer in model.layers[1:]:
        x = replace[layer.name](x) if layer.name in replace else layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("shortcut", ("A", "B"))
def test_chain_rebuild_shares_weights_and_deleting_blocks_keeps_shapes(shortcut):
    model = models.resnet_cifar(14, shortcut)
    perturb_weights(model)
    images = raw_images(4, seed=4)
    same = rebuild(model, {})
    np.testing.assert_allclose(same.predict(images, verbose=0), model.predict(images, verbose=0))
    deleted = ["stage1_block2", "stage2_block1", "stage3_block2"]
    def deletion(name):
        block = model.get_layer(name)
        return lambda x: models.apply_shortcut(block, x)

    lesioned = rebuild(model, {name: deletion(name) for name in deleted})
    assert lesioned.output.shape == model.output.shape
    outputs = lesioned.predict(images, verbose=0)
    assert np.all(np.isfinite(outputs))
    assert not np.allclose(outputs, model.predict(images, verbose=0))
    # a block appears in the lesioned model only where it was kept
    kept = {layer.name for layer in lesioned.layers} & set(models.block_names(model))
    assert kept == set(models.block_names(model)) - set(deleted)


def test_plain_blocks_have_no_shortcut():
    block = models.plain_cifar(8).get_layer("stage1_block1")
    assert not models.is_residual_block(block)
    with pytest.raises(ValueError, match="plain block"):
        models.shortcut_layers(block)
