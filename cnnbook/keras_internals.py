"""Every use of Keras' and TensorFlow's private APIs in cnnbook, in one small module.

Keras 3 does not make public what :mod:`cnnbook.counting.accounting` needs to walk a functional
model's
graph call by call (its nodes by depth, the arguments of each call), what
:mod:`cnnbook.book.diagrams`
reads from a serialised model (which layers a call's inputs come from), the classes of a few
``keras.applications`` layers, nor a way to swap a layer's ``call``; :mod:`cnnbook.training.train`
uses
TensorFlow's fused batch-norm kernel, which only ``tf.compat.v1`` exposes. Anything here may
change with a Keras or TensorFlow release: ``tests/test_keras_internals.py`` exercises each
function and fails when the installed versions differ from :data:`CHECKED_VERSIONS`, so an
upgrade starts by re-checking this file.
"""

from __future__ import annotations

import keras
from keras.src.applications.convnext import LayerScale as ConvNeXtLayerScale
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer as InceptionResNetScale
from keras.src.models.functional import Functional
from keras.src.ops import numpy as _numpy_ops

__all__ = [
    "CHECKED_VERSIONS",
    "ConvNeXtLayerScale",
    "InceptionResNetScale",
    "Functional",
    "NUMPY_ARITHMETIC_OPERATIONS",
    "is_graph_model",
    "nodes_in_call_order",
    "node_call_arguments",
    "input_layer_of",
    "serialized_input_layer_names",
    "replace_call",
    "restore_call",
    "has_replaced_call",
    "tf_fused_batch_norm_training",
]

CHECKED_VERSIONS = {"keras": "3.15.1", "tensorflow": "2.21.0"}
"""The releases this module was last checked against (requirements.txt pins them)."""

NUMPY_ARITHMETIC_OPERATIONS = (
    _numpy_ops.Add, _numpy_ops.Subtract, _numpy_ops.Multiply, _numpy_ops.Divide,
    _numpy_ops.TrueDivide,
)
"""The operation classes Keras records for ``x + y``, ``x - y``, ``x * y`` and ``x / y`` on
symbolic tensors (``keras.applications`` models use them between layers)."""


def is_graph_model(model) -> bool:
    """Whether ``model`` has a layer graph to walk: a functional or a ``Sequential`` model
    (``Sequential`` is a subclass of ``Functional`` once built; a subclassed model is neither)."""
    return isinstance(model, (Functional, keras.Sequential))


def nodes_in_call_order(model) -> list:
    """The nodes (layer calls) of a functional ``model``, inputs first: deepest depth first, in
    Keras' own order within a depth (``model._nodes_by_depth``)."""
    by_depth = model._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def node_call_arguments(node, tensor_values: dict) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of ``node``'s call with every symbolic input replaced by
    ``tensor_values[id(tensor)]`` (``node.arguments.fill_in``)."""
    return node.arguments.fill_in(tensor_values)


def input_layer_of(tensor):
    """The ``InputLayer`` (or the operation) that produced the symbolic ``tensor``
    (``tensor._keras_history.operation``)."""
    return tensor._keras_history.operation


def serialized_input_layer_names(structure) -> list[str]:
    """Names of the layers whose outputs a call reads, from one entry of ``inbound_nodes`` in a
    functional model's ``get_config()``: every ``{"class_name": "__keras_tensor__", "config":
    {"keras_history": [layer_name, node_index, tensor_index]}}`` found inside ``structure``."""
    found = []
    if isinstance(structure, dict):
        config = structure.get("config")
        history = config.get("keras_history") if isinstance(config, dict) else None
        if structure.get("class_name") == "__keras_tensor__" and history:
            found.append(history[0])
        else:
            for value in structure.values():
                found.extend(serialized_input_layer_names(value))
    elif isinstance(structure, (list, tuple)):
        for value in structure:
            found.extend(serialized_input_layer_names(value))
    return found


def replace_call(layer, call) -> None:
    """Make ``layer(...)`` run ``call`` instead of the class's ``call`` (an instance attribute:
    Keras' ``Layer.__call__`` looks ``self.call`` up on the instance). Undo with
    :func:`restore_call`."""
    layer.call = call


def restore_call(layer) -> None:
    """Undo :func:`replace_call`: ``layer`` runs its class's ``call`` again."""
    del layer.call


def has_replaced_call(layer) -> bool:
    """Whether :func:`replace_call` is in effect on ``layer``."""
    return "call" in vars(layer)


def tf_fused_batch_norm_training(inputs, gamma, beta, epsilon: float):
    """TensorFlow's fused training-mode batch norm on an NHWC float tensor:
    ``(outputs, batch_mean, batch_variance)``, the variance with Bessel's correction
    ``n / (n - 1)`` (``tf.compat.v1.nn.fused_batch_norm``; TensorFlow 2 has no public name for
    it)."""
    # TensorFlow itself only where a TensorFlow API is called: the rest of the module reaches
    # Keras' private API (the package keeps TensorFlow imports out of its modules' tops)
    import tensorflow as tf

    return tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, epsilon=epsilon, data_format="NHWC", is_training=True,
    )
