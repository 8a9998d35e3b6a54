"""The variants of benchmarks/time_to_accuracy.py that benchmarks/README.md reports: each changes
one piece of training, and does what its docstring says (checked against numpy and against SGD's
update written out by hand)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from benchmark_scripts import benchmark_module

from cnnbook.course import data


def _images(count=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def test_reflect_padding_crops_the_reflected_image_where_the_plain_crop_fills():
    reflect = benchmark_module("variants/reflect_padding").reflect_augment_batch
    images, seed = _images(), tf.constant([3, 4], tf.int64)
    plain = data.augment_batch(images, seed).numpy()
    reflected = reflect(images, seed).numpy()
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    for n in range(len(images)):  # a window of numpy's reflected image, mirrored or not
        windows = [padded[n, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        matches = [(w == reflected[n]).all() or (w[:, ::-1] == reflected[n]).all()
                   for w in windows]
        assert any(matches), f"image {n} is not a crop of the reflected image"
    filled = (plain == np.array(data.FILL_COLOUR, np.uint8)).all(axis=-1)
    assert filled.any() and (reflected[~filled] == plain[~filled]).all()  # same offsets and flips
    assert not (reflected[filled] == plain[filled]).all()


def test_reflect_padding_cuts_out_the_plain_functions_squares():
    reflect = benchmark_module("variants/reflect_padding").reflect_augment_batch
    images, seed = _images(), tf.constant([5, 6], tf.int64)
    fill = np.array(data.FILL_COLOUR, np.uint8)
    plain = data.augment_batch(images, seed, cutout=8).numpy()
    reflected = reflect(images, seed, cutout=8).numpy()
    holes = (reflected == fill).all(axis=-1)
    assert holes.sum(axis=(1, 2)).min() >= 16  # a square of 8x8, cut by the border at worst 4x4
    assert ((plain == fill).all(axis=-1) | ~holes).all()  # every hole is filled in the plain batch
    plain_holes = (plain == fill).all(axis=-1) & ~(data.augment_batch(images, seed) == fill
                                                   ).numpy().all(axis=-1)
    assert plain_holes.any() and holes[plain_holes].all()  # and every plain hole is a hole here
    no_cutout = reflect(images, seed).numpy()
    assert (reflected[~holes] == no_cutout[~holes]).all()


def test_sharpness_aware_step_applies_the_gradient_at_the_perturbed_weights(monkeypatch):
    variant = benchmark_module("variants/sharpness_aware")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = np.array([0, 1] * 4)
    kernel, bias = (w.numpy() for w in model.trainable_weights)

    def loss_and_gradients(kernel, bias):  # cross-entropy of softmax(x W + b), written out
        logits = x @ kernel + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        delta = (p - np.eye(2)[y]) / len(x)
        return x.T @ delta, delta.sum(0)

    g_kernel, g_bias = loss_and_gradients(kernel, bias)
    scale = variant.RHO / np.sqrt((g_kernel ** 2).sum() + (g_bias ** 2).sum())
    sharp_kernel, sharp_bias = loss_and_gradients(kernel + scale * g_kernel, bias + scale * g_bias)
    plain_kernel = kernel - 0.1 * g_kernel

    monkeypatch.setattr(type(model), "train_step", variant.sharpness_aware_train_step)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    new_kernel, new_bias = (w.numpy() for w in model.trainable_weights)
    np.testing.assert_allclose(new_kernel, kernel - 0.1 * sharp_kernel, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - 0.1 * sharp_bias, atol=1e-6)
    assert np.abs(new_kernel - plain_kernel).max() > 1e-4  # not plain SGD's step
