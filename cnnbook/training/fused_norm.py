"""Batch normalisation trained with TensorFlow's fused kernel, for speed.

:func:`fused_batch_norm` makes the batch-norm layers of a Keras model train with one fused op
(statistics, normalisation and their gradients) instead of Keras 3's composition of a dozen
small ops: a quarter to a third less time per training step on a 2-core CPU
(``benchmarks/README.md``). :func:`cnnbook.training.train.fit_cifar` trains inside it. The fused op
and
the swapping of a layer's ``call`` are private TensorFlow/Keras APIs, reached through
:mod:`cnnbook.keras_internals`.
"""

from __future__ import annotations

import contextlib

import keras

from cnnbook import keras_internals

__all__ = ["fused_batch_norm"]


def _batch_norm_layers(model: keras.Model):
    """Every ``keras.layers.BatchNormalization`` of ``model``, nested sub-models included (exact
    class only: a subclass may compute something else)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _batch_norm_layers(layer)
        elif type(layer) is keras.layers.BatchNormalization:
            yield layer


def _fused_training_call(layer: keras.layers.BatchNormalization):
    """``layer.call`` computing the training-mode batch norm with TensorFlow's fused kernel.

    Same formula as Keras: ``y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta`` with the
    batch's mean and (biased) variance over N, H, W, and ``moving = m * moving + (1 - m) * batch``.
    The fused kernel returns the variance with Bessel's correction ``n / (n - 1)``; it is undone
    so that the moving variance is Keras'. Anything else (inference, masks, other axes, renorm,
    synchronised or scale/center-less layers) goes to Keras' own ``call``.
    """
    # TensorFlow itself only where a TensorFlow API is called: the rest of the module uses Keras'
    # own API (the package keeps TensorFlow imports out of its modules' tops)
    import tensorflow as tf

    keras_call = layer.call
    plain = (
        layer.axis in (-1, 3) and layer.scale and layer.center and not layer.renorm
        and not getattr(layer, "synchronized", False)
    )

    def call(inputs, training=None, mask=None):
        fusable = training and layer.trainable and plain and mask is None
        if not fusable or inputs.shape.rank != 4:
            return keras_call(inputs, training=training, mask=mask)
        outputs, batch_mean, batch_variance = keras_internals.tf_fused_batch_norm_training(
            inputs, tf.cast(layer.gamma, "float32"), tf.cast(layer.beta, "float32"),
            layer.epsilon,
        )
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), "float32")
        batch_variance = batch_variance * (count - 1.0) / count
        momentum = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * momentum + batch_mean * (1.0 - momentum))
        layer.moving_variance.assign(
            layer.moving_variance * momentum + batch_variance * (1.0 - momentum)
        )
        return tf.cast(outputs, layer.compute_dtype)

    return call


@contextlib.contextmanager
def fused_batch_norm(model: keras.Model):
    """Within the block, the batch-norm layers of ``model`` train with TensorFlow's fused kernel
    (one op for the statistics, normalisation and their gradients) instead of Keras 3's
    composition of a dozen small ops; inference is untouched. Same results to rounding; on a
    2-core CPU a ResNet-20 training step takes about three quarters (float32) to two thirds
    (bfloat16) of the time (``benchmarks/README.md``). The model's classes, configuration and
    saved form do not change: only the layers' ``call`` is replaced, and restored on exit.
    """
    layers = [layer for layer in _batch_norm_layers(model)
              if not keras_internals.has_replaced_call(layer)]
    for layer in layers:
        keras_internals.replace_call(layer, _fused_training_call(layer))
    try:
        yield len(layers)
    finally:
        for layer in layers:
            keras_internals.restore_call(layer)
