"""The one batch-normalisation constructor of cnnbook and the two settings its networks use.

* ``"keras_applications"`` -- the blocks of :mod:`cnnbook.nets.blocks` (chapter "Known ConvNet
  architectures"): Keras' default momentum 0.99 and epsilon ``1.001e-5``, as in
  ``keras.applications``' ResNet and DenseNet, so a block matches the same block there.
* ``"he2015_cifar"`` -- the CIFAR networks of :mod:`cnnbook.nets.models` (chapter "Residual
  networks"): momentum 0.9 and epsilon ``1e-5``, the reference implementations' (Torch's
  ``momentum = 0.1`` is Keras' 0.9: ``moving = 0.9 * moving + 0.1 * batch``). Keras' default
  0.99 needs ten times more steps to settle, which a short run on a small data set does not have.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BatchNormSettings", "BATCH_NORM_SETTINGS", "batch_norm"]


@dataclass(frozen=True)
class BatchNormSettings:
    """Moving-average ``momentum`` (``moving = momentum * moving + (1 - momentum) * batch``)
    and ``epsilon`` (added to the variance before the square root)."""

    momentum: float
    epsilon: float


BATCH_NORM_SETTINGS = {
    "keras_applications": BatchNormSettings(momentum=0.99, epsilon=1.001e-5),
    "he2015_cifar": BatchNormSettings(momentum=0.9, epsilon=1e-5),
}
"""The settings by name; see the module docstring for where each comes from."""


def batch_norm(name: str, settings: str = "keras_applications"):
    """A ``keras.layers.BatchNormalization`` called ``name`` with the named ``settings``
    (a key of :data:`BATCH_NORM_SETTINGS`); ``ValueError`` for another name."""
    import keras  # slow to import: the settings are plain data that a page can read without it

    if settings not in BATCH_NORM_SETTINGS:
        raise ValueError(
            f"settings must be one of {', '.join(map(repr, BATCH_NORM_SETTINGS))}, got {settings!r}"
        )
    chosen = BATCH_NORM_SETTINGS[settings]
    return keras.layers.BatchNormalization(
        momentum=chosen.momentum, epsilon=chosen.epsilon, name=name
    )
