"""``time_to_accuracy.py`` with one change to the augmentation: the pad-4 random crop reads the
image reflected at its border (``numpy.pad(mode="reflect")``) where
:func:`cnnbook.course.data.augment_batch` puts the fill colour. The crop offsets, the flips and
the cutout squares are drawn from the same seeds, so a run differs from the plain script's in the
border pixels only. Same arguments as ``time_to_accuracy.py``; run by hand from the repository root:

    CNNBOOK_DATA=../shared/data/cifar10 python benchmarks/variants/reflect_padding.py \
        --depth 20 --epochs 36 --recipe fast --set cutout=8
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import tensorflow as tf

from cnnbook.course import data

fill_colour_augment_batch = data.augment_batch


def reflect_augment_batch(images, seed, pad_pixels: int = data.PAD_PIXELS, cutout: int = 0):
    images = tf.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad_pixels] * 2, [pad_pixels] * 2, [0, 0]], mode="REFLECT")
    batch = tf.shape(images)[0]
    offset_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    offsets = tf.random.stateless_uniform(
        [batch, 2], offset_seed, minval=0, maxval=2 * pad_pixels + 1, dtype=tf.int32)
    flips = tf.random.stateless_uniform([batch, 1], flip_seed, minval=0, maxval=2, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]  # rows of the padded image
    columns = tf.where(flips == 1, tf.range(width - 1, -1, -1)[None, :],
                       tf.range(width)[None, :]) + offsets[:, 1:]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, columns, axis=2, batch_dims=1)
    if cutout:  # the plain function's squares: its output for an image of ones, without a crop
        ones = tf.ones_like(out[..., :1])
        kept = fill_colour_augment_batch(ones, seed, pad_pixels=0, cutout=cutout) == 1
        fill = tf.constant(data.FILL_COLOUR[: images.shape[-1]], dtype=images.dtype)
        out = tf.where(kept, out, fill)
    return out


if __name__ == "__main__":
    data.augment_batch = reflect_augment_batch
    sys.argv[0] = str(Path(__file__).resolve().parent.parent / "time_to_accuracy.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
