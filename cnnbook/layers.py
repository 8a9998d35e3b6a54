"""Custom Keras layers of cnnbook: few, parameter-free, registered and serialisable.

Every layer here is registered with :func:`keras.saving.register_keras_serializable` under the
package name ``"cnnbook"``, so a model that holds one saves to ``.keras`` and loads back with
``keras.models.load_model(path, safe_mode=True)`` once ``cnnbook.layers`` has been imported
(importing :mod:`cnnbook.models` imports it). None of them holds a weight, so a parameter count
skips them and a MAC count can give them zero multiply-adds (they only move or copy values).

* :class:`ZeroPadShortcut` -- the option-A shortcut of He et al. 2015 (chapter "Residual
  networks"): subsample by the stride, then append zero channels.
"""

from __future__ import annotations


import keras
from keras import ops
from cnnbook.checks import check_int as _check_positive_int

__all__ = ["ZeroPadShortcut"]

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
