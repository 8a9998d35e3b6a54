"""Custom Keras layers of cnnbook: every custom layer the book and the course use lives here.

Every layer here is registered with :func:`keras.saving.register_keras_serializable` under the
package name ``"cnnbook"``, so a model that holds one saves to ``.keras`` and loads back with
``keras.models.load_model(path, safe_mode=True)`` once ``cnnbook.course.layers`` has been imported
(importing :mod:`cnnbook.nets.models`, :mod:`cnnbook.nets.blocks` or
:mod:`cnnbook.grading.evaluation`
imports it). :data:`CUSTOM_LAYERS` lists them all; the accuracy grader and the tests load a model
of each through ``safe_mode=True``.

* :class:`ZeroPadShortcut` -- the option-A shortcut of He et al. 2015 (chapter "Residual
  networks"): subsample by the stride, then append zero channels. No weights.
* :class:`LayerScale` -- ConvNeXt's per-channel scale ``y = gamma * x`` (``C`` weights).
* :class:`GlobalResponseNormalization` -- ConvNeXt V2's GRN (``2 C`` weights).
"""

from __future__ import annotations

import keras
from keras import ops

from cnnbook.checks import check_int as _check_positive_int

__all__ = ["ZeroPadShortcut", "LayerScale", "GlobalResponseNormalization", "CUSTOM_LAYERS"]

_PACKAGE = "cnnbook"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ZeroPadShortcut(keras.layers.Layer):
    """Option-A shortcut of He et al. 2015: identity where the shapes allow it, zeros elsewhere.

    For an input ``x`` of shape ``(N, H, W, C)`` and ``out_channels = C_out >= C``::

        y[n, i, j, c] = x[n, stride * i, stride * j, c]   for c <  C
        y[n, i, j, c] = 0                                  for C <= c < C_out

    so the output has shape ``(N, ceil(H / stride), ceil(W / stride), C_out)``. The subsampling
    keeps the top-left pixel of every ``stride x stride`` cell, the pixels that a 1x1 convolution
    with that stride reads (option B), so options A and B see the same positions. The layer has no
    weights: the paper's "parameter-free" shortcut. Concatenating the zeros after the input
    channels keeps the first ``C`` channels an exact identity.

    Args:
        out_channels: channels of the output, at least those of the input.
        stride: subsampling step along height and width (1 keeps every pixel).
    """

    def __init__(self, out_channels: int, stride: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = _check_positive_int("out_channels", out_channels)
        self.stride = _check_positive_int("stride", stride)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"ZeroPadShortcut expects a batch of images (N, H, W, C), got shape {input_shape}"
            )
        in_channels = input_shape[-1]
        if in_channels is None or in_channels > self.out_channels:
            raise ValueError(
                f"out_channels must be >= the input's channels ({in_channels}), "
                f"got {self.out_channels}: option A can only add channels"
            )
        self._in_channels = int(in_channels)

    def call(self, inputs):
        subsampled = inputs[:, :: self.stride, :: self.stride, :]
        extra = self.out_channels - self._in_channels
        if extra == 0:
            return subsampled
        return ops.pad(subsampled, [[0, 0], [0, 0], [0, 0], [0, extra]])

    def compute_output_shape(self, input_shape):
        def reduced(size):
            return None if size is None else -(-size // self.stride)

        batch, height, width, _ = input_shape
        return (batch, reduced(height), reduced(width), self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(out_channels=self.out_channels, stride=self.stride)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LayerScale(keras.layers.Layer):
    """Multiplies each channel by a learned factor ``gamma`` (``C`` parameters), started at a
    tiny ``init_value`` so that a fresh residual block begins close to the identity
    (Touvron et al. 2021; used by ConvNeXt)."""

    def __init__(self, init_value: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
            name="gamma",
        )

    def call(self, inputs):
        return inputs * self.gamma

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GlobalResponseNormalization(keras.layers.Layer):
    """ConvNeXt V2's global response normalisation (Woo et al. 2023) on ``(B, H, W, C)``:
    ``G_c = ||X_c||_2`` over the pixels, ``N_c = G_c / (mean_c G + eps)``,
    output ``gamma * (X N) + beta + X`` (``2 C`` parameters, started at zero: the identity)."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="zeros", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        ops = keras.ops
        response = ops.sqrt(ops.sum(ops.square(inputs), axis=(1, 2), keepdims=True))
        normalized = response / (ops.mean(response, axis=-1, keepdims=True) + self.epsilon)
        return self.gamma * (inputs * normalized) + self.beta + inputs

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


CUSTOM_LAYERS = (ZeroPadShortcut, LayerScale, GlobalResponseNormalization)
"""Every custom layer of cnnbook, each registered as ``"cnnbook>" + class name``."""
