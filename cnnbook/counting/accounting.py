"""Counting a Keras CNN: parameters, activations, multiply-accumulates and training memory.

The chapter "Parameters, memory and compute" (``book/parameters.md``) derives the rules this
module applies; ``tests/test_accounting.py`` checks them against Keras itself (``count_params``
equals ``model.count_params()`` for every ``keras.applications`` model) and against the papers'
published compute figures.

**How a model is counted.** Every layer call of a functional model (recursing into nested
functional models and ``Sequential`` models, and counting a shared layer's weights once but its
compute at every call) is looked up in a registry of
:class:`~cnnbook.counting.layer_rules.LayerRule`,
keyed by the layer's exact class. A rule says

* ``params``: the layer's weights as ``(trainable, non_trainable)`` from its configuration and
  its input shape (never from the weights Keras built); a layer frozen with ``trainable=False``
  has all its weights counted as non-trainable, as Keras does;
* ``macs``: multiply-accumulates per example (see below);
* ``extra_ops``: the other, elementwise arithmetic per example (see below);
* ``is_view``: whether the output is only a view of the input (``Flatten``, ``Reshape``,
  ``Activation("linear")``), which writes no new activation to memory.

A layer class without a rule raises ``NotImplementedError`` naming the layer's class and name:
nothing is ever counted as zero by default. :func:`~cnnbook.counting.layer_rules.register_rule`
adds a
rule for a new class.

**What is counted.**

* Parameters: every weight element, trainable or not (batch-norm moving statistics, the
  ``mean``/``variance``/``count`` of an adapted ``Normalization`` layer), as
  ``model.count_params()`` does.
* MACs (the main compute total, comparable with the papers' "FLOPs" or "multiply-adds"): one
  multiply-accumulate is one product of a weight with an input value added to a running sum.
  Only convolutions (plain, grouped, dilated, depthwise, separable, transposed) and dense layers
  have MACs::

      Conv (groups g):   H_out * W_out * C_out * (k_h * k_w * C_in / g)
      Depthwise:         H_out * W_out * C_in * m * (k_h * k_w)          (m: depth multiplier)
      Separable:         depthwise + H_out * W_out * (C_in * m) * C_out
      Transposed conv:   H_in * W_in * C_in * (k_h * k_w * C_out)
      Dense:             positions * C_in * C_out   (positions = 1 for a flat input)

  A dilation changes which inputs a kernel reads, not how many: it does not change the MACs.
  Bias additions are not MACs.
* Extra operations (``extra_ops``, reported separately; ``macs(..., include_extras=True)`` adds
  them), one per elementwise arithmetic step, per output element unless stated:
  bias add 1; activation function (fused or a layer; any function, ReLU or swish) 1;
  ``BatchNormalization`` 2 (inference: a multiply and an add with the statistics folded in);
  ``LayerNormalization``/``GroupNormalization`` 4 (2 for the statistics, 2 to normalise, scale and
  shift); ``Normalization``/``Rescaling`` 2; ``Add``/``Multiply``/``Subtract``/``Maximum``/
  ``Minimum`` of n tensors n - 1 (an elementwise op with a constant: 1); ``Average`` n;
  pooling window size (``k_h * k_w`` per output); global pooling 1 per *input* element;
  reshapes, padding, cropping, concatenation, dropout and inputs 0.
* Activations: elements per example that a layer writes (its output), 0 for views; the model's
  input image counts (it is in memory too). :func:`activation_count` sums them.

**Where things are.** The formulas are in :mod:`cnnbook.counting.formulas` (shared with
:mod:`cnnbook.nets.blocks`), the rule registry in :mod:`cnnbook.counting.layer_rules`, the walk
through a
model's graph and the per-layer table here (:func:`layer_rows`, :func:`column_total`), the
training-memory estimate in :mod:`cnnbook.counting.memory`. Keras' private graph API is reached
only through
:mod:`cnnbook.keras_internals`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import keras

from cnnbook import keras_internals
from cnnbook.checks import check_int as _check_int
from cnnbook.counting.layer_rules import LayerCall, LayerRule, UnknownSize, rule_for

__all__ = [
    "layer_stats",
    "count_params",
    "macs",
    "extra_ops",
    "activation_count",
    "layer_rows",
    "column_total",
]

@dataclass
class _Row:
    name: str
    type: str
    output_shape: object
    trainable_params: int
    non_trainable_params: int
    activations: int | None
    macs: int | None
    extra_ops: int | None


def _keras_tensors(structure) -> list:
    return [x for x in keras.tree.flatten(structure) if isinstance(x, keras.KerasTensor)]


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _per_example(count: Callable[[LayerCall], int], call: LayerCall) -> int | None:
    try:
        return int(count(call))
    except UnknownSize:
        return None


class _Walker:
    """Runs through a model's graph with symbolic tensors and records one row per layer call."""

    def __init__(self):
        self.rows: list[_Row] = []
        self._counted_layers: set[int] = set()
        self._calls: dict[tuple[str, int], int] = {}

    def call_name(self, operation, prefix: str) -> str:
        """``prefix + name``, with ``#2``, ``#3``... on the second and later calls of a layer
        within the same (sub)model call."""
        key = (prefix, id(operation))
        calls = self._calls[key] = self._calls.get(key, 0) + 1
        return prefix + operation.name + (f"#{calls}" if calls > 1 else "")

    def visit(self, operation, args, kwargs, prefix: str, node):
        """Count one call of ``operation``; return its symbolic outputs."""
        name = self.call_name(operation, prefix)
        if keras_internals.is_graph_model(operation):
            return self.walk(operation, _keras_tensors((args, kwargs)), name + "/")
        rule = rule_for(operation)
        inputs = _keras_tensors((args, kwargs))
        if node is not None and [_shape(x) for x in inputs] == [
            _shape(x) for x in node.input_tensors
        ]:
            outputs = node.outputs  # the shapes Keras recorded for this call
        else:
            outputs = keras.tree.flatten(operation.compute_output_spec(*args, **kwargs))
        call = LayerCall(operation, tuple(_shape(x) for x in inputs),
                         tuple(_shape(x) for x in outputs))
        self.record(call, name, rule)
        return outputs

    def record(self, call: LayerCall, name: str, rule: LayerRule) -> None:
        layer = call.layer
        if id(layer) in self._counted_layers:  # a shared layer: its weights are counted once
            trainable, non_trainable = 0, 0
        else:
            self._counted_layers.add(id(layer))
            trainable, non_trainable = rule.params(call)
            if not getattr(layer, "trainable", True):
                trainable, non_trainable = 0, trainable + non_trainable
        activations = 0 if rule.output_is_view(call) else _per_example(
            lambda c: c.output_elements, call)
        shapes = [shape[1:] for shape in call.output_shapes]
        self.rows.append(_Row(
            name=name,
            type=type(layer).__name__,
            output_shape=shapes[0] if len(shapes) == 1 else shapes,
            trainable_params=int(trainable),
            non_trainable_params=int(non_trainable),
            activations=activations,
            macs=_per_example(rule.macs, call),
            extra_ops=_per_example(rule.extra_ops, call),
        ))

    def walk(self, model, inputs: list, prefix: str = "") -> list:
        if isinstance(model, keras.Sequential):
            outputs = inputs
            for layer in model.layers:
                outputs = self.visit(layer, tuple(outputs), {}, prefix, None)
                outputs = keras.tree.flatten(outputs)
            return outputs
        tensor_values = {id(reference): value
                         for reference, value in zip(model.inputs, inputs, strict=False)}
        for node in keras_internals.nodes_in_call_order(model):
            if node.operation is None or node.is_input:
                continue
            if any(id(x) not in tensor_values for x in node.input_tensors):
                continue
            args, kwargs = keras_internals.node_call_arguments(node, tensor_values)
            outputs = self.visit(node.operation, args, kwargs, prefix, node)
            for reference, value in zip(node.outputs, keras.tree.flatten(outputs), strict=False):
                tensor_values[id(reference)] = value
        return [tensor_values[id(x)] for x in model.outputs]


def _model_inputs(model, input_shape) -> list:
    if not keras_internals.is_graph_model(model):
        raise ValueError(
            f"model must be a functional or Sequential keras.Model, got {type(model).__name__}; "
            "subclassed models have no graph to walk"
        )
    try:
        references = list(model.inputs)
    except (AttributeError, ValueError):
        references = []
    if not references:
        raise ValueError(
            f"model {model.name!r} has no defined inputs: build it with keras.Input(shape=...) "
            "before counting it"
        )
    if input_shape is None:
        return references
    shapes = [input_shape] if len(references) == 1 else list(input_shape)
    if len(shapes) != len(references):
        raise ValueError(
            f"input_shape must give one shape per model input ({len(references)}), got "
            f"{input_shape!r}"
        )
    tensors = []
    for reference, shape in zip(references, shapes, strict=True):
        shape = tuple(_check_int("input_shape", size, 1) for size in shape)
        if len(shape) != len(reference.shape) - 1:
            raise ValueError(
                f"input_shape {shape} must have {len(reference.shape) - 1} sizes (no batch axis), "
                f"like the model's input {tuple(reference.shape[1:])}"
            )
        tensors.append(keras.KerasTensor((None, *shape), dtype=reference.dtype))
    return tensors


def layer_rows(model, input_shape=None) -> list[_Row]:
    """One row per layer call of ``model`` (its input shape given or its own), in graph order:
    what :func:`layer_stats` tabulates and :mod:`cnnbook.counting.memory` sums."""
    walker = _Walker()
    inputs = _model_inputs(model, input_shape)
    for tensor, reference in zip(inputs, model.inputs, strict=True):
        input_layer = keras_internals.input_layer_of(reference)
        walker.record(LayerCall(input_layer, (_shape(tensor),), (_shape(tensor),)),
                      input_layer.name, rule_for(input_layer))
    walker.walk(model, inputs)
    return walker.rows


def layer_stats(model, input_shape=None):
    """One row per layer call of ``model`` as a pandas DataFrame.

    Columns: ``name`` (``outer/inner`` inside nested models), ``type`` (the class name),
    ``output_shape`` (without the batch axis), ``trainable_params``, ``non_trainable_params``,
    ``params`` (their sum), ``activations`` (elements written per example; 0 for views),
    ``macs`` and ``extra_ops`` (per example; see the module docstring). Summing a column gives
    the model's total (a shared layer's weights sit on its first call only).

    ``input_shape`` (without the batch axis, e.g. ``(224, 224, 3)``) replaces the model's own,
    for a model built with ``None`` sizes (MobileNetV3); per-example counts that depend on an
    unknown size are ``NaN``. Raises ``NotImplementedError`` for a layer class without a rule.
    """
    import pandas as pd  # slow to import: only the table needs it, the plain counts do not

    rows = layer_rows(model, input_shape)
    frame = pd.DataFrame([{f.name: getattr(row, f.name) for f in fields(_Row)} for row in rows])
    frame.insert(5, "params", frame["trainable_params"] + frame["non_trainable_params"])
    for column in ("activations", "macs", "extra_ops"):
        if frame[column].notna().all():
            frame[column] = frame[column].astype("int64")
    return frame


def count_params(model) -> int:
    """All weight elements of ``model`` (trainable and not), from the layer rules; equals
    ``model.count_params()``. Needs only the channel counts, not the spatial sizes."""
    return sum(row.trainable_params + row.non_trainable_params for row in layer_rows(model))


def column_total(model, column: str, input_shape, rows=None) -> int:
    """The sum of ``column`` (``"macs"``, ``"activations"``, ...) over :func:`layer_rows`; raises
    when a row's value is unknown."""
    rows = layer_rows(model, input_shape) if rows is None else rows
    values = [getattr(row, column) for row in rows]
    if any(value is None for value in values):
        raise ValueError(
            f"model {model.name!r} has unknown spatial sizes (input {model.inputs[0].shape}): "
            "pass input_shape=(height, width, channels) to count per-example activations or MACs"
        )
    return sum(values)


def macs(model, batch_size: int = 1, *, include_extras: bool = False, input_shape=None) -> int:
    """Multiply-accumulates of one forward pass of ``batch_size`` examples: convolutions and
    dense layers (the papers' "FLOPs"/"multiply-adds"), per the module docstring's formulas.

    ``include_extras=True`` adds the elementwise extras (bias adds, batch norm, activations,
    pooling, additions), each counted as one operation. ``input_shape`` as in
    :func:`layer_stats`.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    rows = layer_rows(model, input_shape)
    total = column_total(model, "macs", input_shape, rows)
    if include_extras:
        total += column_total(model, "extra_ops", input_shape, rows)
    return batch_size * total


def extra_ops(model, batch_size: int = 1, *, input_shape=None) -> int:
    """The elementwise operations of one forward pass that are not MACs (module docstring)."""
    batch_size = _check_int("batch_size", batch_size, 1)
    return batch_size * column_total(model, "extra_ops", input_shape)


def activation_count(model, *, input_shape=None) -> int:
    """Activations of one example's forward pass: the input plus every layer's output elements,
    views (``Flatten``, ``Reshape``) excluded, since they share their input's memory."""
    return column_total(model, "activations", input_shape)
