"""``time_to_accuracy.py`` with sharpness-aware minimisation (SAM, Foret et al. 2021): each step
computes the gradient ``g`` at the weights ``w``, then the gradient at ``w + rho g / |g|``
(``|g|`` the norm over all trainable weights), and hands that second gradient to the recipe's
optimizer at ``w``. Two forward and backward passes per step, so about twice the step's cost;
the batch-norm statistics are updated by both passes. ``SAM_RHO`` sets ``rho`` (default 0.05,
the paper's CIFAR value for SGD). It replaces Keras' TensorFlow ``train_step`` in this process
(Keras 3.15's, private API). Same arguments as ``time_to_accuracy.py``; run by hand:

    CNNBOOK_DATA=../shared/data/cifar10 SAM_RHO=0.05 python \
        benchmarks/variants/sharpness_aware.py --depth 20 --epochs 36 --recipe fast --set cutout=8
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer
from keras.src.losses import loss as loss_module
from keras.src.trainers.data_adapters import data_adapter_utils

RHO = float(os.environ.get("SAM_RHO", "0.05"))


def sharpness_aware_train_step(self, batch):
    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(batch)
    weights = self.trainable_weights
    with tf.GradientTape() as tape:
        y_pred = self(x, training=True)
        loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                  training=True)
        self._loss_tracker.update_state(
            loss_module.unscale_loss_for_distribution(loss),
            sample_weight=tf.shape(next(i for i in tree.flatten(x) if i is not None))[0])
    gradients = tape.gradient(loss, weights)
    norm = tf.linalg.global_norm([tf.cast(g, tf.float32) for g in gradients]) + 1e-12
    ascent = [tf.cast(g, w.dtype) * (RHO / norm) for g, w in zip(gradients, weights, strict=True)]
    for w, e in zip(weights, ascent, strict=True):
        w.assign_add(e)
    with tf.GradientTape() as tape:
        perturbed_loss = self._compute_loss(x=x, y=y, y_pred=self(x, training=True),
                                            sample_weight=sample_weight, training=True)
    sharp_gradients = tape.gradient(perturbed_loss, weights)
    for w, e in zip(weights, ascent, strict=True):
        w.assign_sub(e)
    self.optimizer.apply_gradients(zip(sharp_gradients, weights, strict=True))
    return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


if __name__ == "__main__":
    trainer.TensorFlowTrainer.train_step = sharpness_aware_train_step
    sys.argv[0] = str(Path(__file__).resolve().parent.parent / "time_to_accuracy.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
