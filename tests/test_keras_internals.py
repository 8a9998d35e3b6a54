"""cnnbook.keras_internals: every private Keras/TensorFlow API that cnnbook uses still behaves as
cnnbook assumes. Checked with Keras 3.15.1 and TensorFlow 2.21.0 (``CHECKED_VERSIONS``): after an
upgrade, run this file first; the version test fails until the module has been re-checked."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnnbook import keras_internals

# the keras.applications models and ResNet-1202 (session fixtures, a minute or more to build) are
# shared by test_accounting, test_blocks, test_keras_internals, test_models, test_resnet_chapter
pytestmark = pytest.mark.xdist_group("keras_models")


def test_installed_versions_are_the_ones_the_internals_were_checked_on():
    installed = {"keras": keras.__version__, "tensorflow": tf.__version__}
    assert installed == keras_internals.CHECKED_VERSIONS == {
        "keras": "3.15.1", "tensorflow": "2.21.0"
    }, "re-check cnnbook/keras_internals.py against these versions, then update CHECKED_VERSIONS"


def small_graph():
    images = keras.Input((4, 4, 2), name="images")
    conv = keras.layers.Conv2D(3, 1, name="conv")(images)
    relu = keras.layers.ReLU(name="relu")(conv)
    model = keras.Model(images, keras.layers.Add(name="add")([conv, relu * 2.0]))
    return model


def test_graph_walk_visits_every_call_after_its_inputs_with_its_arguments():
    model = small_graph()
    assert keras_internals.is_graph_model(model)
    assert keras_internals.is_graph_model(keras.Sequential([keras.Input((2,)),
                                                           keras.layers.Dense(1)]))
    assert not keras_internals.is_graph_model(keras.layers.Dense(1))
    nodes = [node for node in keras_internals.nodes_in_call_order(model) if not node.is_input]
    names = [node.operation.name for node in nodes]
    assert names.index("conv") < names.index("relu") < names.index("add")
    # the multiplication by 2.0 is an operation of keras.ops, recorded as one of these classes
    assert any(isinstance(node.operation, keras_internals.NUMPY_ARITHMETIC_OPERATIONS)
               for node in nodes)
    # filling the symbolic inputs with real tensors replays the model exactly
    values = {id(model.inputs[0]): np.ones((1, 4, 4, 2), "float32")}
    for node in keras_internals.nodes_in_call_order(model):
        if node.is_input:
            continue
        args, kwargs = keras_internals.node_call_arguments(node, values)
        outputs = keras.tree.flatten(node.operation(*args, **kwargs))
        for reference, value in zip(node.outputs, outputs, strict=True):
            values[id(reference)] = value
    np.testing.assert_allclose(values[id(model.outputs[0])],
                               model.predict(np.ones((1, 4, 4, 2), "float32"), verbose=0),
                               rtol=1e-6)
    assert keras_internals.input_layer_of(model.inputs[0]).name == "images"


def test_serialized_config_names_the_inputs_of_every_call():
    model = small_graph()
    inbound = {entry["name"]: keras_internals.serialized_input_layer_names(entry["inbound_nodes"])
               for entry in model.get_config()["layers"]}
    assert inbound["conv"] == ["images"]
    assert inbound["relu"] == ["conv"]
    assert inbound["add"][0] == "conv" and len(inbound["add"]) == 2


def test_application_layer_classes_are_those_keras_applications_build():
    convnext = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3))
    assert any(type(layer) is keras_internals.ConvNeXtLayerScale for layer in convnext.layers)
    assert keras_internals.InceptionResNetScale.__name__ == "CustomScaleLayer"


def test_a_replaced_call_runs_and_is_restored():
    layer = keras.layers.ReLU()
    inputs = np.array([[-1.0, 2.0]], "float32")
    keras_internals.replace_call(layer, lambda x, **kwargs: x * 10.0)
    assert keras_internals.has_replaced_call(layer)
    np.testing.assert_allclose(layer(inputs), inputs * 10.0)
    keras_internals.restore_call(layer)
    assert not keras_internals.has_replaced_call(layer)
    np.testing.assert_allclose(layer(inputs), np.maximum(inputs, 0))


def test_fused_batch_norm_returns_the_batch_statistics_with_bessels_correction():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    gamma, beta = np.full(4, 2.0, "float32"), np.full(4, 0.5, "float32")
    outputs, mean, variance = keras_internals.tf_fused_batch_norm_training(x, gamma, beta, 1e-3)
    flat = x.reshape(-1, 4)
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, flat.var(axis=0, ddof=1), rtol=1e-4)
    expected = gamma * (x - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0) + 1e-3) + beta
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)


