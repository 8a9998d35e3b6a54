"""cnnbook.training.dropout_ensemble against independent oracles: what a dropout mask does to a
unit (zero, or scaled by 1 / (1 - rate)), the expectation of a linear layer over masks (the
weight-scaled output, by linearity), and NumPy's own average of the sampled probabilities."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnbook.training import dropout_ensemble


def _identity_with_dropout(rate, units=64):
    return keras.Sequential([keras.Input((units,)), keras.layers.Dropout(rate)])


def test_each_sample_zeroes_units_or_scales_them_by_the_keep_probability():
    x = np.random.default_rng(0).uniform(1, 2, (5, 64)).astype("float32")
    samples = dropout_ensemble.sampled_logits(_identity_with_dropout(0.25), x, 200, seed=1)
    assert samples.shape == (200, 5, 64)
    kept = samples != 0
    np.testing.assert_allclose(samples[kept], np.broadcast_to(x / 0.75, samples.shape)[kept],
                               rtol=1e-6)
    # one thinned network per sample: the same units dropped for every image
    assert (kept == kept[:, :1, :]).all()
    # about a quarter of the units dropped (200 x 64 draws: one standard error is 0.0038, so
    # the bound is about 5 of them)
    assert abs(1 - kept[:, 0, :].mean() - 0.25) < 0.02
    # the same seed gives the same masks, another seed others
    again = dropout_ensemble.sampled_logits(_identity_with_dropout(0.25), x, 200, seed=1)
    assert np.array_equal(samples, again)
    assert not np.array_equal(samples, dropout_ensemble.sampled_logits(
        _identity_with_dropout(0.25), x, 200, seed=2))


def test_the_average_over_masks_of_a_linear_layer_tends_to_the_weight_scaled_output():
    """E[W (m * x) / (1 - r)] = W x: the Monte-Carlo average converges to the one-pass network."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dropout(0.5),
                              keras.layers.Dense(4)])
    x = np.random.default_rng(1).normal(size=(3, 32)).astype("float32")
    samples = dropout_ensemble.sampled_logits(model, x, 1500, seed=0)
    expected = np.asarray(model(x, training=False), dtype=np.float64)  # Keras' own test pass
    np.testing.assert_allclose(dropout_ensemble.weight_scaled_logits(model, x), expected,
                               rtol=1e-6)
    standard_error = samples.std(axis=0) / np.sqrt(len(samples))
    assert (np.abs(samples.mean(axis=0) - expected) < 5 * standard_error).all()
    assert not np.allclose(samples[0], expected)  # one thinned network is not the average


def test_curve_averages_probabilities_and_compares_with_the_weight_scaled_network():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dropout(0.5), keras.layers.Dense(3)])
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype("float32")
    labels = rng.integers(0, 3, 300)
    rows = dropout_ensemble.mask_average_curve(model, x, labels, [8, 1, 4], seed=5)
    assert [row["masks"] for row in rows] == [1, 4, 8]
    # the oracle: NumPy's softmax and mean of the same samples (same seed, same masks)
    logits = dropout_ensemble.sampled_logits(model, x, 8, seed=5)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    scaled_choice = np.asarray(model(x, training=False)).argmax(axis=-1)
    for row in rows:
        average = probabilities[: row["masks"]].mean(axis=0)
        assert row["accuracy"] == pytest.approx(np.mean(average.argmax(-1) == labels))
        assert row["agreement"] == pytest.approx(np.mean(average.argmax(-1) == scaled_choice))
        assert row["single_mean"] == pytest.approx(np.mean(
            [np.mean(sample.argmax(-1) == labels) for sample in probabilities[: row["masks"]]]))
        assert row["weight_scaled"] == pytest.approx(np.mean(scaled_choice == labels))


def test_a_sample_keeps_its_masks_across_batches_and_layers_draw_their_own():
    """One sample is one thinned network for all images, however they are batched; each Dropout
    layer has a mask of its own."""
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dropout(0.5),
                              keras.layers.Dropout(0.5)])
    x = np.ones((7, 16), "float32")
    samples = dropout_ensemble.sampled_logits(model, x, 50, seed=3, batch_size=2)
    assert (samples == samples[:, :1, :]).all()  # the same units for images of other batches
    assert np.array_equal(samples, dropout_ensemble.sampled_logits(model, x, 50, seed=3,
                                                                   batch_size=7))
    # two independent masks: a unit survives both with probability 1/4 (and is then scaled 4x)
    values = set(np.unique(samples).tolist())
    assert values == {0.0, 4.0}
    assert abs((samples[:, 0, :] == 4.0).mean() - 0.25) < 0.06  # 800 draws, 4 standard errors


def test_rate_zero_samples_are_the_weight_scaled_network():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dropout(0.0),
                              keras.layers.Dense(3)])
    x = np.random.default_rng(4).normal(size=(10, 8)).astype("float32")
    samples = dropout_ensemble.sampled_logits(model, x, 3)
    for sample in samples:
        np.testing.assert_allclose(sample, dropout_ensemble.weight_scaled_logits(model, x),
                                   rtol=1e-6)
    rows = dropout_ensemble.mask_average_curve(model, x, np.zeros(10, int), [1, 3])
    assert all(row["agreement"] == 1.0 for row in rows)


@pytest.mark.parametrize("model, num_masks, message", [
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), 3, "no Dropout"),
    (lambda: keras.Model(*(lambda i: (i, keras.layers.Dropout(0.5)(i)))(keras.Input((4,)))),
     3, "keras.Sequential"),
    (lambda: _identity_with_dropout(0.5, 4), 0, "positive integer"),
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.GaussianDropout(0.5),
                               keras.layers.Dropout(0.5)]), 3, "GaussianDropout"),
    (lambda: keras.Sequential([keras.Input((2, 2, 4)), keras.layers.SpatialDropout2D(0.5),
                               keras.layers.Dropout(0.5)]), 3, "SpatialDropout2D"),
])
def test_bad_arguments_name_the_problem(model, num_masks, message):
    model = model()
    with pytest.raises(ValueError, match=message):
        dropout_ensemble.sampled_logits(model, np.zeros((2, *model.input_shape[1:]), "float32"),
                                        num_masks)


@pytest.mark.parametrize("counts, labels, message", [
    ([], 2, "non-empty list of positive integers"),
    ([4.0], 2, "non-empty list of positive integers"),
    ([1], 3, "differ in length"),
])
def test_bad_curve_arguments_name_the_problem(counts, labels, message):
    with pytest.raises(ValueError, match=message):
        dropout_ensemble.mask_average_curve(_identity_with_dropout(0.5, 4),
                                            np.zeros((2, 4), "float32"), np.zeros(labels, int),
                                            counts)
