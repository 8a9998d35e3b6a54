"""cnnbook.training.inspection: first-layer filters, their colour share and feature maps, against
Keras itself (the model's own output, a sub-model Keras builds) and filters built to be grey or
pure colour."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnbook.training import inspection


def _chain():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="first")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, name="second")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def test_feature_maps_are_what_keras_computes():
    model = _chain()
    images = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype("float32")
    maps = inspection.feature_maps(model, images, ["second", "first", "logits"])
    assert list(maps) == ["second", "first", "logits"]
    assert np.allclose(maps["logits"], model(images), atol=1e-5)
    reference = keras.Model(model.inputs, model.get_layer("second").output)
    assert np.allclose(maps["second"], reference(images), atol=1e-5)
    assert maps["first"].shape == (5, 8, 8, 4)
    with pytest.raises(ValueError, match="no layer"):
        inspection.feature_maps(model, images, ["missing"])


def test_feature_maps_refuse_a_model_that_is_not_a_chain():
    inputs = keras.Input((8, 8, 3))
    branch = keras.layers.Conv2D(3, 3, padding="same", name="branch")(inputs)
    added = keras.layers.Add(name="add")([inputs, branch])
    model = keras.Model(inputs, keras.layers.ReLU(name="relu")(added))
    with pytest.raises(ValueError, match="not a chain at layer 'add'"):
        inspection.feature_maps(model, np.zeros((1, 8, 8, 3), "float32"), ["relu"])


def test_first_layer_filters_scale_each_filter_to_the_unit_range():
    model = _chain()
    kernel = np.asarray(model.get_layer("first").kernel)  # (3, 3, 3, 4)
    tiles = inspection.first_layer_filters(model)
    assert tiles.shape == (4, 3, 3, 3)
    for index, tile in enumerate(tiles):
        raw = kernel[..., index].ravel()
        assert tile.min() == pytest.approx(0) and tile.max() == pytest.approx(1)
        # an increasing affine map of the filter's own weights: same order, same proportions
        assert np.array_equal(np.argsort(tile.ravel(), kind="stable"),
                              np.argsort(raw, kind="stable"))
        assert np.allclose(tile.ravel(), (raw - raw.min()) / (raw.max() - raw.min()))
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no Conv2D"):
        inspection.first_layer_filters(dense_only)


def test_colour_share_is_zero_for_grey_filters_and_one_for_pure_colour_contrasts():
    edge = np.array([[-1.0, 0.0, 1.0]] * 3)  # a vertical edge in brightness
    grey = np.repeat(edge[:, :, None], 3, axis=2)  # the same for red, green and blue
    contrast = np.zeros((3, 3, 3))
    contrast[..., 0], contrast[..., 1] = 1.0, -1.0  # red against green, everywhere alike
    mixed = grey + contrast
    kernel = np.stack([grey, contrast, mixed], axis=-1)
    share = inspection.colour_share(kernel)
    # grey: no colour part; contrast: no brightness pattern; mixed: the colour part is 1 and -1
    # on 9 positions (|c|^2 = 18), the grey edge -1, 0, 1 in 3 rows and 3 channels (18 as well)
    assert share == pytest.approx([0.0, 1.0, 18 / (18 + 18)])
    # the same shares from the energies of the two parts summed element by element
    grey_energy = ((grey - grey.mean()) ** 2).sum()
    assert grey_energy == pytest.approx(18) and (contrast ** 2).sum() == pytest.approx(18)
    with pytest.raises(ValueError, match="3, filters"):
        inspection.colour_share(np.zeros((3, 3, 1, 4)))
