"""cnnbook.training.train: the recipes' schedules and weight decay, argument checks, repeatability,
the
distribution path, evaluation with test-time flips, the history plot, and one real training run on
the shared CIFAR-10 subset."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnbook import keras_internals
from cnnbook.course import data
from cnnbook.nets import models
from cnnbook.training import evaluation, fused_norm, plotting, train


@pytest.fixture(scope="module")
def cifar(cifar_subset_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(data.DATA_ENV, str(cifar_subset_dir))
        return data.load_cifar10()


def learning_rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


# --- recipes --------------------------------------------------------------------------------------


def test_he2015_schedule_is_the_paper_step_schedule_scaled_to_the_run():
    """0.1 for batch 128, divided by 10 at 32k and 48k of 64k iterations (50% and 75%)."""
    schedule = train.learning_rate_schedule("he2015", total_steps=64_000, batch_size=128)
    steps = [0, 31_999, 32_001, 47_999, 48_001, 63_999]
    np.testing.assert_allclose(
        learning_rates(schedule, steps), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6
    )
    short = train.learning_rate_schedule("he2015", total_steps=400, batch_size=256)
    np.testing.assert_allclose(learning_rates(short, [0, 201, 301]), [0.2, 0.02, 0.002], rtol=1e-6)


def test_he2015_warms_up_networks_of_110_layers():
    schedule = train.learning_rate_schedule("he2015", total_steps=64_000, batch_size=128, depth=110)
    np.testing.assert_allclose(
        learning_rates(schedule, [0, 399, 401, 32_001]), [0.01, 0.01, 0.1, 0.01], rtol=1e-6
    )


def test_fast_schedule_warms_up_linearly_then_decays_to_zero_as_a_cosine():
    total, peak = 1000, train.FAST.peak_learning_rate
    warmup = round(train.FAST.warmup_fraction * total)
    schedule = train.learning_rate_schedule("fast", total_steps=total, batch_size=128)
    rates = learning_rates(schedule, range(total + 1))
    np.testing.assert_allclose(rates[0], peak / 10, rtol=1e-6)
    np.testing.assert_allclose(rates[warmup // 2], peak / 10 + (peak - peak / 10) / 2, rtol=1e-5)
    np.testing.assert_allclose(rates[warmup], peak, rtol=1e-6)
    later = np.arange(warmup, total + 1)
    cosine = peak * (1 + np.cos(math.pi * (later - warmup) / (total - warmup))) / 2
    np.testing.assert_allclose(rates[later], cosine, rtol=1e-4, atol=1e-7)
    assert rates[-1] < 1e-6


def test_weight_decay_shrinks_kernels_only():
    """With zero gradients, one step changes only what weight decay touches: each kernel is
    multiplied by (1 - lr * weight_decay); batch-norm scales/shifts and biases stay."""
    model = models.resnet_cifar(8)
    optimizer = train.make_optimizer("fast", total_steps=100, batch_size=128)
    before = {id(v): v.numpy().copy() for v in model.trainable_variables}
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    lr = float(train.learning_rate_schedule("fast", total_steps=100, batch_size=128)(0))
    assert lr == pytest.approx(train.FAST.peak_learning_rate / 10)  # step 0 of the warm-up
    factor = 1 - lr * train.FAST.weight_decay
    kinds = set()
    for variable in model.trainable_variables:
        kind = variable.path.split("/")[-1]
        kinds.add(kind)
        expected = before[id(variable)] * (factor if kind == "kernel" else 1.0)
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6, err_msg=variable.path)
    assert kinds == {"kernel", "bias", "gamma", "beta"}


def test_fused_batch_norm_trains_like_keras_and_is_restored():
    """One training-mode step of two copies of a network, one with Keras' batch norm and one with
    the fused kernel: same outputs, gradients and moving statistics; afterwards the layers are
    Keras' own again."""
    keras.utils.set_random_seed(0)
    reference, fused = models.resnet_cifar(8, "B"), models.resnet_cifar(8, "B")
    fused.set_weights(reference.get_weights())
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype("float32")

    def training_step(model):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_sum(logits**2)
        gradients = tape.gradient(loss, model.trainable_variables)
        return logits.numpy(), [g.numpy() for g in gradients]

    reference_logits, reference_gradients = training_step(reference)
    with fused_norm.fused_batch_norm(fused) as patched:
        fused_logits, fused_gradients = training_step(fused)
    assert patched == 9  # stem + 2 per block + the two projection shortcuts
    np.testing.assert_allclose(fused_logits, reference_logits, rtol=1e-4, atol=1e-4)
    for got, expected in zip(fused_gradients, reference_gradients, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    # the weights, moving statistics included
    for got, expected in zip(fused.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not any(keras_internals.has_replaced_call(layer)
                   for layer in fused_norm._batch_norm_layers(fused))


def test_bad_arguments_raise_clear_errors(cifar):
    (x_train, y_train), _ = cifar
    model = models.toy_cnn()
    small = (x_train[:256], y_train[:256])
    with pytest.raises(ValueError, match="recipe must be one of 'he2015', 'fast'"):
        train.fit_cifar(model, small, epochs=1, recipe="adam")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        train.fit_cifar(model, small, epochs=0)
    with pytest.raises(ValueError, match="batch_size must be at most"):
        train.fit_cifar(model, small, epochs=1, batch_size=512)
    with pytest.raises(ValueError, match=r"train must hold images of shape \(N, 32, 32, 3\)"):
        train.fit_cifar(model, (x_train[:256, :28, :28], y_train[:256]), epochs=1)
    with pytest.raises(ValueError, match="train must be a pair"):
        train.fit_cifar(model, x_train[:256], epochs=1)


# --- training -----------------------------------------------------------------------------------


def first_epoch_loss(cifar, seed):
    (x_train, y_train), _ = cifar
    keras.utils.set_random_seed(seed)
    model = models.resnet_cifar(8)
    history = train.fit_cifar(
        model, (x_train[:1024], y_train[:1024]), epochs=1, recipe="fast", verbose=0, seed=seed
    )
    return history.history["loss"][0]


@pytest.mark.slow  # trains
def test_same_seed_gives_the_same_first_epoch_loss(cifar):
    first, again, other = (first_epoch_loss(cifar, seed) for seed in (0, 0, 1))
    assert first == pytest.approx(again, rel=1e-6, abs=0)
    assert abs(first - other) > 1e-4, "a different seed should give a different run"


@pytest.mark.slow  # trains
def test_training_under_a_strategy_copies_the_weights_back(cifar):
    (x_train, y_train), _ = cifar
    model = models.resnet_cifar(8)
    before = [w.copy() for w in model.get_weights()]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    history = train.fit_cifar(
        model, (x_train[:256], y_train[:256]), epochs=1, batch_size=64, verbose=0,
        strategy=strategy,
    )
    assert len(history.history["loss"]) == 1
    after = model.get_weights()
    assert all(a.shape == b.shape for a, b in zip(before, after, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    # the returned model is ready to evaluate integer labels
    assert set(model.evaluate(x_train[:64], y_train[:64], verbose=0, return_dict=True)) == {
        "loss", "accuracy"
    }


@pytest.mark.slow  # trains
def test_a_recipe_with_ema_leaves_the_moving_average_of_the_weights(cifar):
    """With ``ema_momentum = m`` the trained network holds a_1 = w_1, a_t = m a_{t-1} +
    (1 - m) w_t over the weights w_t after each step (recorded here by a callback), not the
    last step's weights; and its batch-norm statistics were measured again for those weights (one
    epoch of the training batches, Keras' moving-average update written out here)."""
    import dataclasses

    (x_train, y_train), _ = cifar
    momentum = 0.6
    recipe = dataclasses.replace(train.FAST, ema_momentum=momentum)
    keras.utils.set_random_seed(0)
    model = models.resnet_cifar(8)
    after_each_step, stem_mean = [], []
    stem_bn = model.get_layer("stem_bn")
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: (
        after_each_step.append([v.numpy().copy() for v in model.trainable_variables]),
        stem_mean.append(stem_bn.moving_mean.numpy().copy())))
    train.fit_cifar(model, (x_train[:256], y_train[:256]), epochs=2, batch_size=64,
                    recipe=recipe, verbose=0, callbacks=[record])
    stem_conv = keras.Model(model.input, model.get_layer("stem_conv").output)
    expected_mean = stem_mean[-1]
    for images, _ in data.training_dataset(x_train[:256], y_train[:256], 64, seed=0,
                                           one_hot=True).take(4):
        batch_mean = np.mean(stem_conv(images, training=True).numpy(), axis=(0, 1, 2))
        expected_mean = stem_bn.momentum * expected_mean + (1 - stem_bn.momentum) * batch_mean
    np.testing.assert_allclose(stem_bn.moving_mean.numpy(), expected_mean, rtol=1e-4, atol=1e-5)
    assert not np.allclose(stem_bn.moving_mean.numpy(), stem_mean[-1], rtol=1e-3, atol=1e-4)
    assert len(after_each_step) == 8
    average = after_each_step[0]
    for weights in after_each_step[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights, strict=True)]
    final = [v.numpy() for v in model.trainable_variables]
    for got, expected, variable in zip(final, average, model.trainable_variables, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, err_msg=variable.path)
    assert not all(np.allclose(got, last, rtol=1e-4, atol=1e-6)
                   for got, last in zip(final, after_each_step[-1], strict=True))


@pytest.mark.slow
def test_resnet8_learns_well_above_chance_on_the_subset(cifar, report_timing, tmp_path):
    """ResNet-8, 5 epochs of the 10k training images (390 steps of 128): the test accuracy on the
    10k official test images must be far above chance (10%)."""
    (x_train, y_train), (x_test, y_test) = cifar
    keras.utils.set_random_seed(0)
    model = models.resnet_cifar(8)
    start = tf.timestamp()
    history = train.fit_cifar(
        model, (x_train, y_train), (x_test[:500], y_test[:500]), epochs=5, recipe="fast",
        verbose=0,
    )
    report_timing("ResNet-8, 5 epochs of 10k images (fast recipe)", float(tf.timestamp() - start))
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    test_accuracy = evaluation.evaluate(model, (x_test, y_test))
    print(f"ResNet-8 after 5 epochs: test accuracy {test_accuracy:.4f}")
    assert test_accuracy > 0.5, f"test accuracy {test_accuracy:.3f} after 5 epochs"
    # Keras' own evaluation of integer labels agrees with cnnbook's, and so does the model saved
    # and reloaded with safe_mode, as the grader loads it
    images, labels = x_test[:2000], y_test[:2000]
    subset_accuracy = evaluation.evaluate(model, (images, labels))
    keras_accuracy = model.evaluate(images, labels, batch_size=500, verbose=0, return_dict=True)
    assert keras_accuracy["accuracy"] == pytest.approx(subset_accuracy, abs=1e-6)
    path = tmp_path / "resnet8.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert evaluation.evaluate(reloaded, (images, labels)) == subset_accuracy


# --- evaluation and plots ---------------------------------------------------------------------


def test_flip_evaluation_averages_the_probabilities_of_an_image_and_its_mirror(cifar):
    _, (x_test, y_test) = cifar
    images, labels = x_test[:200], y_test[:200]
    keras.utils.set_random_seed(2)
    model = models.toy_cnn()
    softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(  # noqa: E731
        z - z.max(1, keepdims=True)
    ).sum(1, keepdims=True)
    plain = softmax(model.predict(images, verbose=0))
    mirrored = softmax(model.predict(images[:, :, ::-1], verbose=0))
    expected_plain = np.mean(plain.argmax(1) == labels)
    expected_flip = np.mean(((plain + mirrored) / 2).argmax(1) == labels)
    assert evaluation.evaluate(model, (images, labels)) == pytest.approx(expected_plain)
    assert evaluation.evaluate(model, (images, labels), flip=True) == pytest.approx(expected_flip)


def test_plot_history_draws_training_and_validation_curves():
    import matplotlib

    matplotlib.use("Agg")
    record = {"loss": [2.0, 1.5, 1.2], "accuracy": [0.3, 0.45, 0.55],
              "val_loss": [1.8, 1.6, 1.4], "val_accuracy": [0.35, 0.42, 0.5]}
    figure = plotting.plot_history(record, title="test")
    loss_axis, accuracy_axis = figure.axes
    assert [line.get_ydata().tolist() for line in loss_axis.lines] == [
        record["loss"], record["val_loss"]
    ]
    assert [line.get_ydata().tolist() for line in accuracy_axis.lines] == [
        record["accuracy"], record["val_accuracy"]
    ]
    with pytest.raises(ValueError, match="history"):
        plotting.plot_history({"accuracy": [0.1]})


def test_fast_precision_sets_and_restores_the_dtype_policy():
    before = keras.config.dtype_policy().name
    with train.fast_precision("mixed_bfloat16") as policy:
        model = models.resnet_cifar(8)
    assert policy == "mixed_bfloat16" and keras.config.dtype_policy().name == before
    conv = model.get_layer("stem_conv")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    # the logits stay float32 whatever the policy
    assert model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0).dtype == np.float32
    assert train.fast_dtype_policy() in ("float32", "mixed_bfloat16", "mixed_float16")


def test_float32_copy_leaves_the_optimizer_behind(tmp_path):
    """A trained network's copy is for measuring: not compiled, and saved without SGD's momentum
    (the saved weights are those of the layers only)."""
    import io
    import zipfile

    import h5py

    model = models.resnet_cifar(8)
    train.compile_for_training(model, "he2015", train.make_optimizer("he2015", 10))
    images = np.zeros((4, 32, 32, 3), np.uint8)
    model.train_on_batch(images, np.zeros(4, np.int64))  # builds the optimizer's variables
    copy = evaluation.float32_copy(model)
    assert not copy.compiled and getattr(copy, "optimizer", None) is None
    copy.save(tmp_path / "copy.keras")
    with zipfile.ZipFile(tmp_path / "copy.keras") as saved, h5py.File(
            io.BytesIO(saved.read("model.weights.h5")), "r") as weights:
        assert "optimizer" not in weights


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_float32_copy_computes_what_the_network_built_in_float32_computes(precision):
    """A network built (and trained) in mixed precision, copied to float32: every layer and the
    tensors between them are float32, the weights are the same, and its outputs are those of the
    same network built in float32 with those weights (the oracle: Keras' own float32 network)."""
    keras.utils.set_random_seed(3)
    with train.fast_precision(precision):
        mixed = models.resnet_cifar(8, preact=True)  # the course's zero-padding shortcut inside
    copy = evaluation.float32_copy(mixed)
    assert {layer.dtype_policy.name for layer in models_and_layers(copy)} == {"float32"}
    assert all(np.array_equal(a, b)
               for a, b in zip(copy.get_weights(), mixed.get_weights(), strict=True))
    reference = models.resnet_cifar(8, preact=True)
    reference.set_weights(mixed.get_weights())
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    expected = np.asarray(reference(images, training=False))
    assert np.asarray(copy(images, training=False)).dtype == np.float32
    np.testing.assert_allclose(np.asarray(copy(images, training=False)), expected, rtol=1e-5,
                               atol=1e-5)
    # the mixed network itself does not compute that (its convolutions round to 8 or 11 bits)
    assert not np.allclose(np.asarray(mixed(images, training=False)), expected, rtol=1e-5,
                           atol=1e-5)


def models_and_layers(model):
    """Every layer of ``model``, those inside its blocks (nested models) included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from models_and_layers(layer)


@pytest.mark.parametrize(("field", "value", "named"), [
    ("schedule", "linear", "schedule"), ("label_smoothing", 1.0, "label_smoothing"),
    ("warmup_fraction", -0.1, "warmup_fraction"), ("cutout", 33, "cutout"),
    ("cutout", 2.5, "cutout"), ("ema_momentum", 1.0, "ema_momentum")])
def test_a_recipe_refuses_a_bad_setting_by_name(field, value, named):
    import dataclasses

    with pytest.raises(ValueError, match=named):
        dataclasses.replace(train.FAST, **{field: value})
    assert train.FAST.cutout == 0  # the book's recipe: crops and flips only
