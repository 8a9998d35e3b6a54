"""cnnbook.course.data: the loader on the shared subset and without data, the augmentation against a
NumPy pad-crop-flip reference, and the training/evaluation pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from cnnbook.course import data


@pytest.fixture
def subset_env(cifar_subset_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(cifar_subset_dir))
    return cifar_subset_dir


# --- load_cifar10 --------------------------------------------------------------------------------


def test_loader_reads_the_shared_subset(subset_env):
    (x_train, y_train), (x_test, y_test) = data.load_cifar10()
    assert x_train.shape == (10_000, 32, 32, 3) and x_test.shape == (10_000, 32, 32, 3)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert y_train.shape == (10_000,) and y_test.shape == (10_000,)
    # the subset's README: 1,000 images per class in both parts
    assert np.bincount(y_train, minlength=10).tolist() == [1000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10
    (archive_path,) = subset_env.glob("*.npz")
    with np.load(archive_path) as archive:
        np.testing.assert_array_equal(x_test, archive["x_test"])
        np.testing.assert_array_equal(y_train, archive["y_train"].reshape(-1))


def _image_keys(images) -> set[bytes]:
    return {image.tobytes() for image in images}


def test_training_split_holds_no_test_image_and_partitions_the_training_images(subset_env):
    (x_train, y_train), (x_val, y_val) = data.load_training_split()
    with np.load(next(subset_env.glob("*.npz"))) as archive:  # read apart from the loader
        all_train, all_labels = archive["x_train"], archive["y_train"].reshape(-1)
        test_keys = _image_keys(archive["x_test"])
    # 10% of each class's 1,000 images for validation, the rest for training
    assert np.bincount(y_val, minlength=10).tolist() == [100] * 10
    assert np.bincount(y_train, minlength=10).tolist() == [900] * 10
    assert not (_image_keys(x_train) | _image_keys(x_val)) & test_keys, "a test image leaked"
    assert not _image_keys(x_train) & _image_keys(x_val)
    # together they are the training images with their labels, in the original order
    together = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    order = np.lexsort(together[0].reshape(len(together[0]), -1).T)
    reference_order = np.lexsort(all_train.reshape(len(all_train), -1).T)
    np.testing.assert_array_equal(together[0][order], all_train[reference_order])
    np.testing.assert_array_equal(together[1][order], all_labels[reference_order])
    (again, _), _ = data.load_training_split()
    np.testing.assert_array_equal(again, x_train)  # the same split for everyone


def test_training_only_copy_holds_the_training_images_and_no_test_image(subset_env, tmp_path,
                                                                       monkeypatch):
    (x_train, y_train), (x_test, _) = data.load_cifar10()
    assert len(x_test) == 10_000
    data.write_training_only(subset_env, tmp_path / "copy")
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "copy"))
    (copy_train, copy_labels), (copy_test, copy_test_labels) = data.load_cifar10()
    assert np.array_equal(copy_train, x_train) and np.array_equal(copy_labels, y_train)
    assert copy_test.shape == (0, 32, 32, 3) and copy_test_labels.shape == (0,)
    (split_train, _), (split_val, _) = data.load_training_split()
    assert len(split_train) + len(split_val) == len(x_train)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_training_split_rejects_a_fraction_outside_zero_one(subset_env, fraction):
    with pytest.raises(ValueError, match="validation_fraction"):
        data.load_training_split(fraction)


@pytest.mark.parametrize("folder_kind", ["missing", "empty", "wrong_keys"])
def test_loader_without_data_says_how_to_provide_it(folder_kind, tmp_path, monkeypatch):
    folder = tmp_path / "cifar"
    if folder_kind != "missing":
        folder.mkdir()
    if folder_kind == "wrong_keys":
        np.savez(folder / "other.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
    monkeypatch.setenv(data.DATA_ENV, str(folder))

    def no_download():
        raise AssertionError("no download may happen when CNNBOOK_DATA is set")

    monkeypatch.setattr("keras.datasets.cifar10.load_data", no_download)
    with pytest.raises(FileNotFoundError, match="CNNBOOK_DATA") as error:
        data.load_cifar10()
    assert "x_train, y_train, x_test, y_test" in str(error.value)


def test_loader_without_variable_or_network_says_how_to_provide_it(monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)

    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/: no network")

    monkeypatch.setattr("keras.datasets.cifar10.load_data", offline)
    with pytest.raises(FileNotFoundError, match="set the environment variable CNNBOOK_DATA"):
        data.load_cifar10()


def test_loader_without_variable_uses_keras_and_flattens_its_labels(monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    rng = np.random.default_rng(0)
    x_train, x_test = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (6, 4))
    y_train, y_test = np.arange(6).reshape(-1, 1), np.arange(4).reshape(-1, 1)  # Keras: (N, 1)
    monkeypatch.setattr(
        "keras.datasets.cifar10.load_data", lambda: ((x_train, y_train), (x_test, y_test))
    )
    (got_x, got_y), (_, got_y_test) = data.load_cifar10()
    np.testing.assert_array_equal(got_x, x_train)
    assert got_y.shape == (6,) and got_y_test.tolist() == [0, 1, 2, 3]


def test_loader_rejects_arrays_of_the_wrong_shape(tmp_path, monkeypatch):
    np.savez(
        tmp_path / "bad.npz",
        x_train=np.zeros((2, 28, 28, 3), np.uint8), y_train=np.zeros(2, np.uint8),
        x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.zeros(2, np.uint8),
    )
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"x_train must have shape \(N, 32, 32, 3\)"):
        data.load_cifar10()


# --- augmentation --------------------------------------------------------------------------------


def pad_crop_flip_candidates(image, pad, fill):
    """Every output the paper's augmentation can give for ``image``: pad with ``fill``, crop
    each of the (2 pad + 1)^2 windows, each mirrored or not."""
    height, width, _ = image.shape
    padded = np.empty((height + 2 * pad, width + 2 * pad, image.shape[2]), image.dtype)
    padded[...] = np.asarray(fill, image.dtype)
    padded[pad : pad + height, pad : pad + width] = image
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy : dy + height, dx : dx + width]
            yield (dy, dx, False), crop
            yield (dy, dx, True), crop[:, ::-1]


def test_augmentation_is_a_padded_random_crop_and_flip(subset_env):
    (x_train, _), _ = data.load_cifar10()
    images = x_train[:64]
    augmented = data.augment_batch(images, tf.constant([7, 3], tf.int64)).numpy()
    assert augmented.shape == images.shape and augmented.dtype == np.uint8
    drawn = []
    for image, output in zip(images, augmented, strict=True):
        candidates = pad_crop_flip_candidates(image, data.PAD_PIXELS, data.FILL_COLOUR)
        matches = [choice for choice, candidate in candidates if np.array_equal(candidate, output)]
        assert matches, "an augmented image is not a padded crop (mirrored or not) of its input"
        drawn.append(matches[0])
    offsets = {(dy, dx) for dy, dx, _ in drawn}
    flipped = sum(flip for _, _, flip in drawn)
    assert len(offsets) > 20, "crops should land at many of the 81 positions"
    assert 16 <= flipped <= 48, f"about half of 64 images should be mirrored, got {flipped}"


def test_augmentation_is_repeatable_with_its_seed():
    images = np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    first = data.augment_batch(images, tf.constant([1, 5], tf.int64)).numpy()
    again = data.augment_batch(images, tf.constant([1, 5], tf.int64)).numpy()
    other = data.augment_batch(images, tf.constant([1, 6], tf.int64)).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


# --- pipelines -----------------------------------------------------------------------------------


def indexed_images(count):
    """Images that carry their own index in pixel (0, 0)."""
    images = np.zeros((count, 32, 32, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(count) % 256
    images[:, 0, 0, 1] = np.arange(count) // 256
    return images


def decode_indices(batch):
    batch = np.asarray(batch)
    return batch[:, 0, 0, 0].astype(int) + 256 * batch[:, 0, 0, 1].astype(int)


def test_training_pipeline_shuffles_each_pass_and_keeps_shapes_and_dtypes():
    count, batch_size = 1000, 64
    labels = np.arange(count) % 10
    steps = data.steps_per_epoch(count, batch_size)
    assert steps == 15
    stream = data.training_dataset(indexed_images(count), labels, batch_size, seed=3, augment=False)
    batches = list(stream.take(2 * steps))
    for images, batch_labels in batches:
        assert images.shape == (batch_size, 32, 32, 3) and images.dtype == tf.uint8
        assert batch_labels.shape == (batch_size,) and batch_labels.dtype == tf.int32
        np.testing.assert_array_equal(batch_labels.numpy(), decode_indices(images) % 10)
    first_pass = np.concatenate([decode_indices(images) for images, _ in batches[:steps]])
    second_pass = np.concatenate([decode_indices(images) for images, _ in batches[steps:]])
    assert len(set(first_pass)) == steps * batch_size  # no image twice in a pass
    assert not np.array_equal(first_pass, second_pass)  # a new permutation each pass
    assert not np.array_equal(first_pass, np.sort(first_pass))  # shuffled at all


@pytest.mark.parametrize(
    "num_images, batch_size, named",
    [(1000, 0, "batch_size"), (1000, -4, "batch_size"), (1000, 64.0, "batch_size"),
     (0, 1, "num_images"), (10, 64, "batch_size must be at most")],
)
def test_steps_per_epoch_rejects_batches_that_cannot_be_drawn(num_images, batch_size, named):
    with pytest.raises(ValueError, match=named):
        data.steps_per_epoch(num_images, batch_size)


def test_training_pipeline_augments_and_gives_one_hot_labels_on_request():
    images = indexed_images(256)
    labels = np.arange(256) % 10
    stream = data.training_dataset(images, labels, 32, seed=0, augment=True, one_hot=True)
    batch_images, batch_labels = next(iter(stream))
    assert batch_images.shape == (32, 32, 32, 3) and batch_images.dtype == tf.uint8
    assert batch_labels.shape == (32, 10) and batch_labels.dtype == tf.float32
    np.testing.assert_array_equal(batch_labels.numpy().sum(axis=1), np.ones(32))
    same = next(iter(data.training_dataset(images, labels, 32, seed=0, one_hot=True)))
    np.testing.assert_array_equal(same[0].numpy(), batch_images.numpy())


def test_evaluation_pipeline_gives_every_image_once_in_order():
    images = indexed_images(1234)
    batches = list(data.evaluation_dataset(images, np.arange(1234) % 10, batch_size=500))
    assert [len(labels) for _, labels in batches] == [500, 500, 234]
    np.testing.assert_array_equal(
        np.concatenate([decode_indices(x) for x, _ in batches]), np.arange(1234)
    )


def test_batch_larger_than_the_data_raises():
    with pytest.raises(ValueError, match="batch_size must be at most"):
        data.training_dataset(indexed_images(10), np.zeros(10), batch_size=16)


@pytest.mark.parametrize("side", [1, 8, 16])
def test_cutout_blanks_one_square_of_the_given_side_clipped_by_the_border(side):
    # one colour that is not the fill colour, no crop shift: the only fill pixels are the hole's
    colour = np.array([255, 0, 128], dtype=np.uint8)
    assert not np.array_equal(colour, np.asarray(data.FILL_COLOUR, dtype=np.uint8))
    images = np.broadcast_to(colour, (256, 32, 32, 3)).copy()
    augmented = data.augment_batch(images, tf.constant([4, 2], tf.int64), pad_pixels=0,
                                   cutout=side).numpy()
    holes = np.all(augmented == np.asarray(data.FILL_COLOUR, dtype=np.uint8), axis=-1)
    whole = 0
    for hole in holes:
        rows, columns = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
        assert len(rows) and len(columns), "every image has a hole"
        # one axis-aligned rectangle: every pixel of its bounding box is in it
        box = hole[rows.min():rows.max() + 1, columns.min():columns.max() + 1]
        assert box.all() and hole.sum() == box.size
        assert len(rows) <= side and len(columns) <= side
        # cut only by the image's border
        assert len(rows) == side or rows.min() == 0 or rows.max() == 31
        assert len(columns) == side or columns.min() == 0 or columns.max() == 31
        whole += box.shape == (side, side)
    # a centre drawn uniformly from 32 positions leaves the square whole in 33 - K of them, on
    # each axis: the count of whole squares is binomial with that probability
    whole_share = ((33 - side) / 32) ** 2
    expected = len(holes) * whole_share
    spread = (expected * (1 - whole_share)) ** 0.5
    assert abs(whole - expected) <= 4 * spread + 1, (whole, expected)
    unchanged = data.augment_batch(images, tf.constant([4, 2], tf.int64), pad_pixels=0).numpy()
    assert not np.all(unchanged == np.asarray(data.FILL_COLOUR, np.uint8), axis=-1).any()
