"""CIFAR-10: loading the images and the ``tf.data`` pipelines that feed them to a model.

* :func:`load_cifar10` returns the raw uint8 images and flat labels, from the offline copy named by
  the environment variable ``CNNBOOK_DATA`` or from Keras' own cache/download.
* :func:`load_training_split` is what the course's notebooks load: the training images split
  into a training and a validation part, without the test images, which only the accuracy
  grader (:mod:`cnnbook.grading.accuracy`) measures on.
* :func:`augment_batch` is the augmentation of He et al. 2015 (section 4.2), done on a whole batch
  at once: pad 4 pixels on each side, crop a random 32x32 window, flip horizontally with
  probability 1/2.
* :func:`training_dataset` and :func:`evaluation_dataset` are the input pipelines of
  :func:`cnnbook.training.train.fit_cifar`: raw uint8 images go in, and the model's own first layer
  normalises them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnbook.checks import check_int

# Per-channel statistics of the CIFAR-10 training images (R, G, B; 0..255), rounded as in
# ../shared/data/cifar10/README.md; the normalisation layer standardises with them.
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)
CIFAR10_SHAPE = (32, 32, 3)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

__all__ = [
    "DATA_ENV",
    "ARRAY_KEYS",
    "load_cifar10",
    "load_training_split",
    "load_test_images",
    "write_training_only",
    "augment_batch",
    "training_dataset",
    "evaluation_dataset",
]

DATA_ENV = "CNNBOOK_DATA"
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
NUM_CLASSES = 10
PAD_PIXELS = 4
FILL_COLOUR = tuple(round(value) for value in CIFAR10_MEAN)
"""Padding colour of the random crops: the mean colour, which the model's normalisation maps to
zero, so a padded border is the paper's zero padding of mean-subtracted images."""

_HOW_TO_PROVIDE = (
    "Provide CIFAR-10 in one of two ways: set the environment variable CNNBOOK_DATA to a folder "
    "holding an .npz file with the arrays x_train, y_train, x_test, y_test (for example the "
    "course's offline subset, CNNBOOK_DATA=../shared/data/cifar10), or let Keras download the "
    "full data set once into ~/.keras/datasets (keras.datasets.cifar10.load_data(), needs the "
    "internet)."
)


def _checked_arrays(x_train, y_train, x_test, y_test, source: str):
    """The four arrays as uint8 images (N, 32, 32, 3) and flat uint8 labels (N,)."""
    arrays = []
    for images, labels, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
        if images.ndim != 4 or images.shape[1:] != CIFAR10_SHAPE or len(images) != len(labels):
            raise ValueError(
                f"{source}: x_{part} must have shape (N, 32, 32, 3) and y_{part} N labels, got "
                f"{images.shape} and {labels.shape}. {_HOW_TO_PROVIDE}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise ValueError(f"{source}: y_{part} must hold labels 0..9. {_HOW_TO_PROVIDE}")
        arrays.append((images.astype(np.uint8, copy=False), labels.astype(np.uint8)))
    return tuple(arrays)


def _load_folder(folder: Path):
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{DATA_ENV}={str(folder)!r} is not a folder. {_HOW_TO_PROVIDE}"
        )
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as archive:
            if all(key in archive for key in ARRAY_KEYS):
                return _checked_arrays(*(archive[key] for key in ARRAY_KEYS), source=str(path))
    raise FileNotFoundError(
        f"{DATA_ENV}={str(folder)!r} holds no .npz file with the arrays "
        f"{', '.join(ARRAY_KEYS)}. {_HOW_TO_PROVIDE}"
    )


def load_cifar10():
    """CIFAR-10 as ``(x_train, y_train), (x_test, y_test)``: uint8 images of shape
    ``(N, 32, 32, 3)`` with values 0..255 and uint8 labels 0..9 of shape ``(N,)`` (flat, whichever
    the source; Keras' own loader gives ``(N, 1)``).

    * If the environment variable ``CNNBOOK_DATA`` is set, it must name a folder holding an
      ``.npz`` file with the arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (the first such
      file in name order is read); the course's offline subset has 10,000 training images (1,000
      per class) and the full 10,000-image test set. A folder without such a file is an error:
      nothing is downloaded behind the back of a setting that asked for local data.
    * Otherwise ``keras.datasets.cifar10.load_data()``: Keras' cache in ``~/.keras/datasets``,
      downloaded there (170 MB) the first time.

    Raises ``FileNotFoundError`` that says how to provide the data when neither works.
    """
    folder = os.environ.get(DATA_ENV)
    if folder:
        return _load_folder(Path(folder).expanduser())
    # not at the top: cnnbook.course is what a graded student process imports, where a test may
    # hide Keras and TensorFlow; loading the arrays must work there, and stay fast elsewhere
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # no cache and no network: Keras raises a bare Exception
        raise FileNotFoundError(
            f"CIFAR-10 is not available: {DATA_ENV} is not set and Keras could not load the data "
            f"set ({type(error).__name__}: {error}). {_HOW_TO_PROVIDE}"
        ) from error
    return _checked_arrays(x_train, y_train, x_test, y_test, source="keras.datasets.cifar10")


def load_test_images(path: str | os.PathLike):
    """``(x_test, y_test)`` from the ``.npz`` file ``path`` (arrays ``x_test``, uint8 images of
    shape ``(N, 32, 32, 3)``, and ``y_test``, labels 0..9): an instructor's private image set that
    the accuracy grader measures on in place of CIFAR-10's public test images
    (``python -m cnnbook.grading accuracy --test-images``). Raises ``FileNotFoundError`` or
    ``ValueError`` naming what is missing."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a file: the private test images must be an "
                                ".npz file holding the arrays x_test and y_test")
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in ("x_test", "y_test") if key not in archive]
        if missing:
            raise ValueError(f"{path} holds no {' or '.join(missing)}: a private test set is an "
                             ".npz file with x_test (N, 32, 32, 3) uint8 images and y_test labels")
        x_test, y_test = archive["x_test"], archive["y_test"]
    empty = np.zeros((0, *CIFAR10_SHAPE), np.uint8)
    _, test = _checked_arrays(empty, np.zeros(0, np.uint8), x_test, y_test, source=str(path))
    if not len(test[1]):
        raise ValueError(f"{path}: x_test holds no image")
    return test


def write_training_only(source_folder: str | os.PathLike,
                        destination_folder: str | os.PathLike) -> Path:
    """Write ``destination_folder/training_only.npz``: the training arrays of the data set in
    ``source_folder`` (read as :func:`load_cifar10` reads a ``CNNBOOK_DATA`` folder) and empty
    test arrays, so that :func:`load_cifar10` and :func:`load_training_split` read it as they read
    the original. The grader gives grading kernels this folder in place of the original: the test
    images the accuracy grader measures on are not in any student's process. Returns the path."""
    (x_train, y_train), _ = _load_folder(Path(source_folder).expanduser())
    destination = Path(destination_folder)
    destination.mkdir(parents=True, exist_ok=True)
    path = destination / "training_only.npz"
    np.savez(path, x_train=x_train, y_train=y_train,
             x_test=np.zeros((0, *CIFAR10_SHAPE), np.uint8), y_test=np.zeros((0,), np.uint8))
    return path


VALIDATION_FRACTION = 0.1
"""Share of the training images :func:`load_training_split` keeps apart for validation."""


def load_training_split(validation_fraction: float = VALIDATION_FRACTION, seed: int = 0):
    """The training images of :func:`load_cifar10` as ``(x_train, y_train), (x_val, y_val)``:
    ``round(validation_fraction * n_c)`` images of each class ``c`` (``n_c`` of its training
    images, picked by a permutation seeded with ``seed``) form the validation part, the rest the
    training part, both in the original order. The test images are not returned: in the course
    they are the held-out set on which ``python -m cnnbook.grading accuracy`` measures submitted
    models, so a notebook that loads its data here never sees them (it does not stop a student
    who reads the files or downloads CIFAR-10 on purpose; ``solutions/README.md`` states the
    threat model).

    Raises ``ValueError`` unless ``0 < validation_fraction < 1``.
    """
    fraction = float(validation_fraction)
    if not 0 < fraction < 1:
        raise ValueError(
            f"validation_fraction must be a share between 0 and 1 (exclusive), got "
            f"{validation_fraction!r}; e.g. 0.1 keeps one training image in ten for validation"
        )
    (images, labels), _ = load_cifar10()
    random = np.random.default_rng(seed)
    validation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen = random.permutation(members)[: round(fraction * len(members))]
        validation[chosen] = True
    return ((images[~validation], labels[~validation]),
            (images[validation], labels[validation]))


# --- tf.data pipelines --------------------------------------------------------------------------


def augment_batch(images, seed, pad_pixels: int = PAD_PIXELS, cutout: int = 0):
    """Random crop with padding and random horizontal flip, for a whole batch at once; with
    ``cutout`` > 0, also a square of ``cutout x cutout`` pixels set to the fill colour.

    For each image ``n`` of a ``(N, H, W, C)`` batch, draw offsets ``dy, dx`` uniformly from
    ``0..2P`` (``P = pad_pixels``) and a flip bit ``f``; then::

        out[n, i, j] = x[n, i + dy - P, j' + dx - P]   with j' = W - 1 - j if f else j

    where a position outside the image takes the fill colour :data:`FILL_COLOUR` (the mean colour:
    zero after the model's normalisation, as the paper's padding). This is exactly "pad P pixels
    on each side, crop an H x W window at a random place, mirror it with probability 1/2", done
    with two gathers instead of one crop per image. Shapes and dtype are kept.

    Cutout (DeVries and Taylor 2017) then draws a centre ``(cy, cx)`` uniformly over the image
    and sets ``out[n, i, j]`` to the fill colour for ``cy - K // 2 <= i < cy - K // 2 + K`` and
    ``cx - K // 2 <= j < cx - K // 2 + K`` (``K = cutout``; a square cut by the border near an
    edge, as in the paper).

    ``seed`` is a stateless seed (two integers): the same seed gives the same batch.
    """
    # TensorFlow: only the pipelines need it, not the loaders that a student process uses
    # where a test may hide it (see load_cifar10)
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    batch = tf.shape(images)[0]
    offset_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    offsets = tf.random.stateless_uniform(
        [batch, 2], offset_seed, minval=0, maxval=2 * pad_pixels + 1, dtype=tf.int32
    ) - pad_pixels
    flips = tf.random.stateless_uniform([batch, 1], flip_seed, minval=0, maxval=2, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]  # (N, H) source rows
    columns = tf.where(
        flips == 1, tf.range(width - 1, -1, -1)[None, :], tf.range(width)[None, :]
    ) + offsets[:, 1:]  # (N, W) source columns, mirrored where flipped
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((columns >= 0) & (columns < width))[
        :, None, :
    ]  # (N, H, W)
    crop = tf.gather(images, tf.clip_by_value(rows, 0, height - 1), axis=1, batch_dims=1)
    crop = tf.gather(crop, tf.clip_by_value(columns, 0, width - 1), axis=2, batch_dims=1)
    fill = tf.constant(FILL_COLOUR[: images.shape[-1]], dtype=images.dtype)
    out = tf.where(inside[..., None], crop, fill)
    if cutout:
        cutout_seed = tf.random.experimental.stateless_fold_in(offset_seed, 1)
        centres = tf.random.stateless_uniform([batch, 2], cutout_seed, minval=0,
                                              maxval=max(height, width), dtype=tf.int32)
        centres = tf.minimum(centres, [height - 1, width - 1])
        starts = centres - cutout // 2  # (N, 2): first row and column of the square
        row_offset = tf.range(height)[None, :] - starts[:, :1]
        column_offset = tf.range(width)[None, :] - starts[:, 1:]
        near_row = (row_offset >= 0) & (row_offset < cutout)
        near_column = (column_offset >= 0) & (column_offset < cutout)
        hole = near_row[:, :, None] & near_column[:, None, :]
        out = tf.where(hole[..., None], fill, out)
    return out


def _labels(labels, one_hot: bool):
    import tensorflow as tf  # only the pipelines (see augment_batch)

    if one_hot:
        return tf.one_hot(tf.cast(labels, tf.int32), NUM_CLASSES, dtype=tf.float32)
    return tf.cast(labels, tf.int32)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Full batches in one pass over ``num_images``: ``floor(num_images / batch_size)`` (the
    remainder waits for the next pass, which shuffles again)."""
    num_images = check_int("num_images", num_images, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    if batch_size > num_images:
        raise ValueError(
            f"batch_size must be at most the number of training images ({num_images}), got "
            f"{batch_size}: use a smaller batch"
        )
    return num_images // batch_size


def training_dataset(
    images, labels, batch_size: int, seed: int = 0, augment: bool = True, one_hot: bool = False,
    cutout: int = 0,
):
    """An endless ``tf.data`` stream of augmented training batches ``(images, labels)``; use it
    with ``steps_per_epoch = floor(N / batch_size)`` (:func:`steps_per_epoch`).

    The images stay in memory as one uint8 tensor (the "cache"); what flows through the pipeline
    is batches of indices: shuffle the indices (a new permutation each pass), cut full batches,
    gather their images, :func:`augment_batch` them (a stateless seed from ``seed`` and the batch
    number, so a run is repeatable), and prefetch the next batch while the model trains on this
    one. Labels are int32 class numbers, or one-hot float32 rows with ``one_hot=True`` (for label
    smoothing). ``cutout`` > 0 adds :func:`augment_batch`'s cutout square.
    """
    import tensorflow as tf  # only the pipelines (see augment_batch)

    with tf.device("/cpu:0"):  # the input pipeline runs on the CPU, also beside a GPU
        image_tensor = tf.convert_to_tensor(np.asarray(images, dtype=np.uint8))
        label_tensor = tf.convert_to_tensor(np.asarray(labels).reshape(-1))
    num_images = int(image_tensor.shape[0])
    steps_per_epoch(num_images, batch_size)

    def load(step, indices):
        batch = tf.gather(image_tensor, indices)
        if augment:
            batch = augment_batch(batch, tf.stack([tf.constant(seed, tf.int64), step]),
                                  cutout=cutout)
        return batch, _labels(tf.gather(label_tensor, indices), one_hot)

    return (
        tf.data.Dataset.range(num_images)
        .shuffle(num_images, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
        .repeat()
        .enumerate()
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def evaluation_dataset(images, labels, batch_size: int = 500, one_hot: bool = False):
    """Every image once, in order, unaugmented, in batches: ``(images, labels)``."""
    import tensorflow as tf  # only the pipelines (see augment_batch)

    with tf.device("/cpu:0"):
        image_tensor = tf.convert_to_tensor(np.asarray(images, dtype=np.uint8))
        label_tensor = _labels(tf.convert_to_tensor(np.asarray(labels).reshape(-1)), one_hot)
    return (
        tf.data.Dataset.from_tensor_slices((image_tensor, label_tensor))
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
