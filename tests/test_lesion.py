"""cnnbook.resnet.lesion: the lesion mechanics (deleting, reordering) against what a network with a
silenced residual branch computes, and the studies against Keras' own predictions. The path counts
of the unrolled view are tested in test_unrolled.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnbook.nets import models, published
from cnnbook.resnet import lesion


def test_resnet110_has_as_many_blocks_as_veit_et_al_count():
    veit = published.load("veit2016_resnet110").set_index("quantity")["value"]
    assert len(models.block_names(models.resnet_cifar(110))) == veit["residual_blocks"]


# --- Lesion mechanics ----------------------------------------------------------------------------


def raw_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3)).astype("float32")


def randomise_batch_norm(model, seed: int = 0) -> None:
    """Move batch-norm statistics and scales off their initial values, so that a silenced
    branch and a deleted block would differ if the deletion were wrong."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if any(part in weight.path for part in ("moving_variance", "gamma")):
            weight.assign(0.5 + rng.random(weight.shape).astype("float32"))
        elif any(part in weight.path for part in ("moving_mean", "beta")):
            weight.assign(0.1 * rng.standard_normal(weight.shape).astype("float32"))


def silence_residual_branch(block) -> None:
    """Make ``F(x) = 0`` in a block: zero the last convolution (pre-activation: nothing follows
    it) or the last batch norm's scale and shift (original: ``BN(...) = 0``)."""
    if any(layer.name == "relu_out" for layer in block.layers):
        bn = block.get_layer("bn2")
        bn.gamma.assign(np.zeros(bn.gamma.shape, "float32"))
        bn.beta.assign(np.zeros(bn.beta.shape, "float32"))
    else:
        conv = block.get_layer("conv2")
        conv.kernel.assign(np.zeros(conv.kernel.shape, "float32"))


def outputs(model, images) -> np.ndarray:
    return np.asarray(model(images, training=False))


NETWORKS = {
    "resnet20_A": lambda: models.resnet_cifar(20, "A"),
    "resnet20_B": lambda: models.resnet_cifar(20, "B"),
    "preact_resnet20_A": lambda: models.resnet_cifar(20, "A", preact=True),
    "preact_resnet14_B": lambda: models.resnet_cifar(14, "B", preact=True),
    "plain20": lambda: models.plain_cifar(20),
}


@pytest.mark.parametrize("network", NETWORKS)
def test_deleting_nothing_reproduces_the_outputs_exactly(network):
    model = NETWORKS[network]()
    randomise_batch_norm(model)
    images = raw_images(8)
    rebuilt = lesion.delete_blocks(model, [])
    np.testing.assert_array_equal(outputs(rebuilt, images), outputs(model, images))
    assert rebuilt.count_params() == model.count_params()


@pytest.mark.parametrize("network", NETWORKS)
def test_deleting_a_block_removes_exactly_that_blocks_parameters(network):
    model = NETWORKS[network]()
    weights = {id(weight) for weight in model.weights}
    for name in lesion.deletable_blocks(model):
        block = model.get_layer(name)
        kept = sum(layer.count_params() for layer in block.layers
                   if layer.name.startswith("shortcut"))
        lesioned = lesion.delete_blocks(model, [name])
        assert lesioned.count_params() == model.count_params() - block.count_params() + kept
        assert {id(weight) for weight in lesioned.weights} <= weights  # shared, not copied
        assert name not in [layer.name for layer in lesioned.layers]


@pytest.mark.parametrize("network", ["resnet20_A", "resnet20_B", "preact_resnet20_A",
                                     "preact_resnet14_B"])
def test_a_deleted_block_computes_what_a_silenced_residual_branch_computes(network):
    """Deleting block b must equal keeping it with F_b = 0: y = h(x) (+ a ReLU that changes
    nothing, since the block's input is already non-negative in the original network)."""
    model = NETWORKS[network]()
    randomise_batch_norm(model)
    images = raw_images(8)
    names = models.block_names(model)
    for name in (names[1], names[len(names) // 3]):  # an identity block, a downsampling block
        lesioned = lesion.delete_blocks(model, [name])
        before = outputs(lesioned, images)
        silence_residual_branch(model.get_layer(name))
        np.testing.assert_allclose(before, outputs(model, images), rtol=1e-5, atol=1e-5)
        # the lesioned model shares the weights, and the deleted block's weights are unused
        np.testing.assert_allclose(outputs(lesioned, images), before, rtol=0, atol=0)


def test_downsampling_blocks_are_the_first_of_stages_2_and_3():
    for model in (models.resnet_cifar(20), models.plain_cifar(20), models.resnet_cifar(56, "B")):
        downsampling = [row["name"] for row in lesion.block_table(model) if row["downsampling"]]
        assert downsampling == ["stage2_block1", "stage3_block1"]


def test_a_plain_downsampling_block_cannot_be_deleted_but_the_others_can():
    model = models.plain_cifar(20)
    assert "stage2_block1" not in lesion.deletable_blocks(model)
    with pytest.raises(ValueError, match="downsampling block of a plain network"):
        lesion.delete_blocks(model, ["stage2_block1"])
    images = raw_images(4)
    lesioned = lesion.delete_blocks(model, ["stage1_block2", "stage3_block3"])
    assert outputs(lesioned, images).shape == (4, 10)


def test_all_residual_blocks_can_be_deleted_at_once():
    model = models.resnet_cifar(14, "B")
    everything = lesion.deletable_blocks(model)
    assert everything == models.block_names(model)
    lesioned = lesion.delete_blocks(model, everything)
    assert outputs(lesioned, raw_images(2)).shape == (2, 10)
    again = lesion.delete_blocks(lesioned, [])  # a lesioned model can be rebuilt again
    np.testing.assert_array_equal(outputs(again, raw_images(2)), outputs(lesioned, raw_images(2)))


@pytest.mark.parametrize(
    "names, message",
    [(["stage9_block1"], "does not have"), (["stage1_block1", "stage1_block1"], "more than once"),
     ("stage1_block1", "list of block names")],
)
def test_bad_deletions_raise_value_error(names, message):
    with pytest.raises(ValueError, match=message):
        lesion.delete_blocks(models.resnet_cifar(20), names)


def test_reordering_in_place_reproduces_the_outputs_exactly():
    model = models.resnet_cifar(20)
    randomise_batch_norm(model)
    images = raw_images(8)
    same = lesion.reorder_blocks(model, models.block_names(model))
    np.testing.assert_array_equal(outputs(same, images), outputs(model, images))


def test_swapping_a_block_with_a_silenced_one_changes_nothing():
    """With F_b = 0, block b is the identity, so it commutes with any block of its stage: the
    swap must give the same outputs, while a swap of two working blocks changes them."""
    model = models.resnet_cifar(20, preact=True)
    randomise_batch_norm(model)
    images = raw_images(8)
    order = models.block_names(model)
    swapped = list(order)
    swapped[4], swapped[5] = swapped[5], swapped[4]  # stage2_block2 <-> stage2_block3
    reordered = lesion.reorder_blocks(model, swapped)
    assert not np.allclose(outputs(reordered, images), outputs(model, images), atol=1e-4)
    silence_residual_branch(model.get_layer("stage2_block3"))
    np.testing.assert_allclose(outputs(reordered, images), outputs(model, images), rtol=1e-5,
                               atol=1e-5)


def test_reordering_rejects_moving_a_block_to_another_shape():
    model = models.resnet_cifar(20)
    order = models.block_names(model)
    order[2], order[3] = order[3], order[2]  # the downsampling block into stage 1
    with pytest.raises(ValueError, match="equal shape"):
        lesion.reorder_blocks(model, order)
    with pytest.raises(ValueError, match="exactly once"):
        lesion.reorder_blocks(model, order[:-1])


def test_random_swaps_stay_within_a_stage_and_repeat_with_the_seed():
    model = models.resnet_cifar(56)
    order = lesion.random_swaps(model, 10, seed=3)
    assert order == lesion.random_swaps(model, 10, seed=3)
    assert sorted(order) == sorted(models.block_names(model))
    for position, name in enumerate(models.block_names(model)):
        assert order[position].split("_")[0] == name.split("_")[0]  # same stage
        if name in ("stage2_block1", "stage3_block1"):
            assert order[position] == name  # downsampling blocks stay
    assert lesion.random_swaps(model, 0) == models.block_names(model)
    pairs = lesion.swappable_pairs(models.resnet_cifar(20))
    # stage 1: three blocks of equal shape (3 pairs); stages 2 and 3: two each after the
    # downsampling block (1 pair each)
    assert len(pairs) == 3 + 1 + 1
    assert ("stage1_block1", "stage1_block3") in pairs
    assert ("stage2_block2", "stage2_block3") in pairs
    assert not any("stage2_block1" in pair for pair in pairs)


def test_accuracy_matches_keras_evaluate():
    model = models.resnet_cifar(8)
    randomise_batch_norm(model)
    images = raw_images(40, seed=1)
    labels = np.random.default_rng(2).integers(0, 10, 40)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_categorical_accuracy"])
    _, keras_accuracy = model.evaluate(images, labels, batch_size=16, verbose=0)
    assert lesion.accuracy(model, images, labels, batch_size=16) == pytest.approx(keras_accuracy)
    with pytest.raises(ValueError, match="equal length"):
        lesion.accuracy(model, images, labels[:-1])


def silenced_copy(model, builder, names):
    """An independent copy of ``model`` (same weights) whose residual branches in ``names`` are
    zeroed: what a network with those blocks deleted must compute."""
    copy = builder()
    copy.set_weights(model.get_weights())
    for name in names:
        silence_residual_branch(copy.get_layer(name))
    return copy


def predicted_accuracy(model, images, labels) -> float:
    """Accuracy from Keras' own predict, not from cnnbook.resnet.lesion."""
    return float(np.mean(model.predict(images, verbose=0).argmax(axis=-1) == labels))


def test_lesion_study_and_deletion_curve_score_the_silenced_networks():
    # Oracle: a copy of the network whose deleted blocks have a zeroed residual branch (in a
    # pre-activation block nothing follows the addition, so that is exactly the deleted block),
    # scored by Keras' predict.
    builder = lambda: models.resnet_cifar(14, preact=True)  # noqa: E731
    model = builder()
    randomise_batch_norm(model)
    images = raw_images(60, seed=4)
    labels = np.random.default_rng(5).integers(0, 10, 60)
    baseline = predicted_accuracy(model, images, labels)
    rows = lesion.lesion_study(model, images, labels)
    assert [row["name"] for row in rows] == models.block_names(model)
    assert all(row["baseline"] == baseline for row in rows)
    for row in rows:
        assert row["accuracy"] == predicted_accuracy(
            silenced_copy(model, builder, [row["name"]]), images, labels), row["name"]
    curve = lesion.deletion_curve(model, images, labels, [0, 2], repeats=3, seed=1)
    assert [row["num_deleted"] for row in curve] == [0, 2, 2, 2]
    assert curve[0]["accuracy"] == baseline and curve[0]["blocks"] == []
    for row in curve[1:]:
        assert len(set(row["blocks"])) == 2 and "stage2_block1" not in row["blocks"]
        assert row["accuracy"] == predicted_accuracy(
            silenced_copy(model, builder, row["blocks"]), images, labels)
    plain_rows = lesion.lesion_study(models.plain_cifar(14), images, labels)
    # n = 2 blocks per stage: the first blocks of stages 2 and 3 downsample
    assert [row["accuracy"] is None for row in plain_rows] == [False, False, True, False, True,
                                                               False]
    swaps = lesion.reorder_curve(models.resnet_cifar(20), images, labels, [0, 1], repeats=2)
    assert [row["num_swaps"] for row in swaps] == [0, 1, 1]


def test_curve_summary_gives_each_counts_spread_over_its_draws():
    import statistics

    rows = [{"num_deleted": 0, "accuracy": 0.8},
            {"num_deleted": 3, "accuracy": 0.5}, {"num_deleted": 3, "accuracy": 0.7},
            {"num_deleted": 3, "accuracy": 0.6}, {"num_deleted": 1, "accuracy": 0.75},
            {"num_deleted": 1, "accuracy": 0.65}]
    summary = lesion.curve_summary(rows, "num_deleted")
    assert [row["num_deleted"] for row in summary] == [0, 1, 3]
    assert [row["draws"] for row in summary] == [1, 2, 3]
    assert summary[2]["mean"] == pytest.approx(0.6)
    assert summary[2]["std"] == pytest.approx(statistics.pstdev([0.5, 0.7, 0.6]))
    assert summary[1]["std"] == pytest.approx(0.05)
    assert (summary[2]["min"], summary[2]["max"]) == (0.5, 0.7)
    assert summary[0] == {"num_deleted": 0, "draws": 1, "mean": 0.8, "std": 0.0, "min": 0.8,
                          "max": 0.8}
    with pytest.raises(ValueError, match="num_swaps"):
        lesion.curve_summary(rows, "num_swaps")
    with pytest.raises(ValueError, match="list of dicts"):
        lesion.curve_summary("rows", "num_deleted")


def test_gradient_reaches_every_block_of_a_stage_unchanged_when_branches_are_silent():
    """The "1 +" term: with every F = 0 the gradient at a block's output equals the gradient at
    the next block's output within a stage (identity shortcuts), whatever the depth."""
    model = models.resnet_cifar(20, preact=True)
    randomise_batch_norm(model)
    for name in models.block_names(model):
        silence_residual_branch(model.get_layer(name))
    state = [variable.numpy().copy() for variable in model.non_trainable_variables]
    images = raw_images(16, seed=6)
    labels = np.arange(16) % 10
    norms = {row["name"]: row["gradient_norm"]
             for row in lesion.block_gradient_norms(model, images, labels)}
    for stage in (1, 2, 3):
        stage_norms = [norms[f"stage{stage}_block{block}"] for block in (1, 2, 3)]
        assert stage_norms == pytest.approx([stage_norms[-1]] * 3, rel=1e-5)
    for variable, before in zip(model.non_trainable_variables, state, strict=True):
        np.testing.assert_array_equal(variable.numpy(), before)  # running statistics kept


def test_plain_gradient_spreads_over_depth_more_than_residual_at_initialisation():
    """The page's figure: at initialisation the gradient norm varies over the blocks of a
    56-layer plain network by far more than over those of the residual network."""
    images = raw_images(64, seed=7)
    labels = np.arange(64) % 10

    def spread(model):
        norms = [row["gradient_norm"] for row in lesion.block_gradient_norms(model, images,
                                                                             labels)]
        return max(norms) / min(norms)

    keras.utils.set_random_seed(0)
    plain = spread(models.plain_cifar(56))
    keras.utils.set_random_seed(0)
    residual = spread(models.resnet_cifar(56))
    assert plain > 10 * residual


def test_branch_ratios_are_zero_for_silenced_blocks_and_match_a_direct_computation():
    model = models.resnet_cifar(14, "B")
    randomise_batch_norm(model)
    images = raw_images(8, seed=8)
    silence_residual_branch(model.get_layer("stage1_block2"))
    silence_residual_branch(model.get_layer("stage2_block1"))  # a projection shortcut
    rows = {row["name"]: row for row in lesion.branch_ratios(model, images)}
    assert list(rows) == models.block_names(model)
    assert rows["stage1_block2"]["ratio"] == pytest.approx(0.0, abs=1e-6)
    assert rows["stage2_block1"]["ratio"] == pytest.approx(0.0, abs=1e-6)
    assert rows["stage2_block1"]["downsampling"] and not rows["stage1_block2"]["downsampling"]
    # Direct: the input of stage1_block1 is the stem's output; its deleted output is relu(x) = x.
    stem = keras.Model(model.input, model.get_layer("stem_relu").output)
    x = np.asarray(stem(images, training=False))
    y = np.asarray(model.get_layer("stage1_block1")(x, training=False))
    expected = np.linalg.norm(y - x) / np.linalg.norm(x)
    assert rows["stage1_block1"]["ratio"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="no residual blocks"):
        lesion.branch_ratios(models.plain_cifar(14), images)
