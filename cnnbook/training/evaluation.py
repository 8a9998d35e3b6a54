"""Evaluating a trained classifier: class probabilities (with test-time flips) and accuracy.

:func:`evaluate` is the accuracy the book, the benchmarks and
:func:`cnnbook.training.train.fit_cifar`'s
callers report: the top-1 accuracy (:func:`cnnbook.training.metrics.top1_accuracy`) of the softmax
of the
model's logits, optionally averaged with those of the mirrored images. :func:`float32_copy` turns
a network trained in mixed precision into one that computes in float32, whose results do not
depend on the CPU's bfloat16 path.
"""

from __future__ import annotations

import keras
import numpy as np

from cnnbook.training import metrics

__all__ = ["predict_probabilities", "evaluate", "check_images", "float32_copy"]


def check_images(part: str, pair, model: keras.Model):
    """``(images, labels)`` of ``pair`` as arrays (labels flattened), or ``ValueError`` naming
    ``part`` when ``pair`` is not a pair or its images do not fit ``model``'s input."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{part} must be a pair (images, labels), got {type(pair).__name__}")
    images, labels = np.asarray(pair[0]), np.asarray(pair[1]).reshape(-1)
    expected = tuple(model.input.shape[1:])
    if images.shape[1:] != expected or len(images) != len(labels):
        raise ValueError(
            f"{part} must hold images of shape (N, {', '.join(map(str, expected))}) and N labels, "
            f"got {images.shape} and {labels.shape}"
        )
    return images, labels


def predict_probabilities(model: keras.Model, images, batch_size: int = 500, flip: bool = False):
    """Class probabilities ``softmax(logits)`` for ``images``; with ``flip=True`` the mean of those
    of each image and its mirror image (test-time flip augmentation)."""
    images = np.asarray(images)

    def probabilities(batch):
        logits = model.predict(batch, batch_size=batch_size, verbose=0)
        return keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype("float32"), axis=-1))

    result = probabilities(images)
    if flip:
        result = (result + probabilities(images[:, :, ::-1])) / 2
    return result


def evaluate(model: keras.Model, test, batch_size: int = 500, flip: bool = False) -> float:
    """Accuracy of ``model`` on ``test = (images, labels)``: the fraction of images whose most
    probable class (:func:`predict_probabilities`, with test-time flips if ``flip``) is the label
    (:func:`cnnbook.training.metrics.top1_accuracy`)."""
    images, labels = check_images("test", test, model)
    return metrics.top1_accuracy(predict_probabilities(model, images, batch_size, flip), labels)


_MIXED_TENSOR_DTYPES = ("bfloat16", "float16")


def _float32_config(config):
    """``config`` (a serialized Keras object) with every mixed dtype policy made ``float32`` and
    every bfloat16 or float16 tensor between layers made float32."""
    if isinstance(config, list):
        return [_float32_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    config = {key: _float32_config(value) for key, value in config.items()}
    inner = config.get("config")
    if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(
            inner, dict) and str(inner.get("name", "")).startswith("mixed_"):
        config["config"] = {**inner, "name": "float32"}
    elif config.get("class_name") == "__keras_tensor__" and isinstance(inner, dict) and (
            inner.get("dtype") in _MIXED_TENSOR_DTYPES):
        config["config"] = {**inner, "dtype": "float32"}
    return config


def float32_copy(model: keras.Model) -> keras.Model:
    """A copy of ``model`` that computes in float32: the same layers and weights, every mixed
    dtype policy (``mixed_bfloat16``, ``mixed_float16``) replaced by ``float32``. A network
    trained in mixed precision keeps its weights in float32 already, so nothing is lost; what
    changes is that its convolutions no longer round their inputs to 8 bits of mantissa, a
    rounding that differs between CPUs (AMX on Intel, AVX-512 BF16 on AMD) and between a CPU
    and a GPU. The results then agree to float32 rounding wherever they are computed.

    The copy is not compiled: it is for measuring, and saved it holds the weights without the
    optimizer's state (with it, a file twice the size)."""
    serialized = keras.saving.serialize_keras_object(model)
    serialized.pop("compile_config", None)  # else it comes back compiled, optimizer and all
    copy = keras.saving.deserialize_keras_object(_float32_config(serialized))
    copy.set_weights(model.get_weights())
    return copy
