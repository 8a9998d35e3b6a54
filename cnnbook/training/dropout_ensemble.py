"""Dropout as an ensemble: the networks that dropout samples, averaged, against the one network
used at test time.

During training, dropout (Srivastava et al. 2014) keeps each unit of a layer with probability
``1 - rate`` and sets the others to zero: every mini-batch trains a different "thinned" network,
one of :math:`2^m` for :math:`m` droppable units. Keras scales the kept units by
:math:`1 / (1 - rate)` during training ("inverted" dropout), so at test time the full network is
used unchanged; this is the *weight scaling* rule, which approximates the average over all the
thinned networks with one pass. For a layer that is linear in its input the two agree exactly in
expectation, :math:`\\mathbb{E}_m[W (m \\odot x) / (1 - r)] = W x`; through nonlinearities they
only approximately agree.

:func:`sampled_logits` draws ``num_masks`` thinned networks and returns their logits;
:func:`mask_average_curve` compares the average of the first :math:`N` of them (the Monte-Carlo
estimate of the ensemble) with the weight-scaled network, as :math:`N` grows.
"""

from __future__ import annotations

from collections.abc import Iterable

import keras
import numpy as np

from cnnbook.training import metrics

__all__ = ["sampled_logits", "weight_scaled_logits", "mask_average_curve"]


_OTHER_NOISE = (keras.layers.GaussianDropout, keras.layers.AlphaDropout,
                keras.layers.GaussianNoise, keras.layers.SpatialDropout1D,
                keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D)
"""Layers that add noise in training other than by dropping single units; not sampled here."""


def _check_model(model) -> None:
    if not isinstance(model, keras.Sequential):
        raise ValueError(
            f"model must be a keras.Sequential network (got {type(model).__name__}): its layers "
            "are run one after another, each dropout layer with a mask of its own; build the "
            "network with keras.Sequential([...])")
    for layer in model.layers:
        if isinstance(layer, _OTHER_NOISE) or isinstance(layer, keras.Model):
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) is not sampled here: only "
                "keras.layers.Dropout at the top level of the Sequential network is (one mask "
                "value per unit); build the network with Dropout layers only")
    if not any(type(layer) is keras.layers.Dropout for layer in model.layers):
        raise ValueError("model has no Dropout layer: there is no ensemble to sample")


def weight_scaled_logits(model, images, batch_size: int = 1000) -> np.ndarray:
    """The logits of the full network at test time (every unit kept, nothing rescaled: Keras'
    dropout already rescaled during training), shape ``(N, classes)``."""
    images = np.asarray(images)
    return np.concatenate([np.asarray(model(images[start : start + batch_size], training=False),
                                      dtype=np.float64)
                           for start in range(0, len(images), batch_size)])


def sampled_logits(model, images, num_masks: int, seed: int = 0,
                   batch_size: int = 1000) -> np.ndarray:
    """The logits of ``num_masks`` thinned networks of the ``keras.Sequential`` ``model``, shape
    ``(num_masks, N, classes)``: in sample :math:`s`, every ``Dropout`` layer applies a fresh
    random mask (unit kept with probability ``1 - rate``, kept units scaled by
    :math:`1 / (1 - rate)`, as in training), while
    every other layer runs in inference mode (batch normalisation with its moving averages).
    A sample keeps its masks for all of ``images``: each sample is one thinned network. The
    masks come from ``seed`` alone (a layer's ``noise_shape`` is not used: one mask value per
    unit)."""
    _check_model(model)
    if isinstance(num_masks, bool) or not isinstance(num_masks, int) or num_masks < 1:
        raise ValueError(f"num_masks must be a positive integer, got {num_masks!r}")
    images = np.asarray(images)
    generator = keras.random.SeedGenerator(seed)
    samples = []
    for _ in range(num_masks):
        masks: dict[int, object] = {}  # one per Dropout layer: this sample's thinned network
        batches = []
        for start in range(0, len(images), batch_size):
            x = keras.ops.convert_to_tensor(images[start : start + batch_size])
            for index, layer in enumerate(model.layers):
                if not isinstance(layer, keras.layers.Dropout):
                    x = layer(x, training=False)
                    continue
                if index not in masks:  # 0 or 1 / (1 - rate) per unit, for every image
                    masks[index] = keras.random.dropout(
                        keras.ops.ones((1, *x.shape[1:]), dtype=x.dtype), layer.rate,
                        seed=generator)
                x = x * masks[index]
            batches.append(np.asarray(x, dtype=np.float64))
        samples.append(np.concatenate(batches))
    return np.stack(samples)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def mask_average_curve(model, images, labels, counts: Iterable[int], seed: int = 0,
                       batch_size: int = 1000) -> list[dict]:
    """For each :math:`N` of ``counts``: the accuracy of the average of the class probabilities
    of the first :math:`N` thinned networks (:func:`sampled_logits`, ``max(counts)`` of them),
    ``agreement``, the share of images on which that average picks the class the weight-scaled
    network picks, and ``single_mean``, the mean accuracy of the :math:`N` thinned networks on
    their own. Rows also carry ``weight_scaled``, the full network's accuracy."""
    counts = list(counts)
    if not counts or not all(isinstance(count, int) and not isinstance(count, bool)
                             and count >= 1 for count in counts):
        raise ValueError(f"counts must be a non-empty list of positive integers, got {counts}")
    counts = sorted(set(counts))
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"images and labels differ in length: {len(images)} and {len(labels)}")
    probabilities = _softmax(sampled_logits(model, images, counts[-1], seed, batch_size))
    scaled = weight_scaled_logits(model, images, batch_size)
    scaled_choice = scaled.argmax(axis=-1)
    single = [metrics.top1_accuracy(sample, labels) for sample in probabilities]
    rows = []
    for count in counts:
        average = probabilities[:count].mean(axis=0)
        rows.append({
            "masks": count,
            "accuracy": metrics.top1_accuracy(average, labels),
            "agreement": float(np.mean(average.argmax(axis=-1) == scaled_choice)),
            "single_mean": float(np.mean(single[:count])),
            "weight_scaled": metrics.top1_accuracy(scaled, labels),
        })
    return rows
