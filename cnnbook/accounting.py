"""Counting a Keras CNN: parameters, activations, multiply-accumulates and training memory.

The chapter "Parameters, memory and compute" (``book/parameters.md``) derives the rules this
module applies; ``tests/test_accounting.py`` checks them against Keras itself (``count_params``
equals ``model.count_params()`` for every ``keras.applications`` model) and against the papers'
published compute figures.

**How a model is counted.** Every layer call of a functional model (recursing into nested
functional models and ``Sequential`` models, and counting a shared layer's weights once but its
compute at every call) is looked up in a registry of :class:`LayerRule`, keyed by the layer's
exact class. A rule says

* ``params``: the layer's weights as ``(trainable, non_trainable)`` from its configuration and
  its input shape (never from the weights Keras built); a layer frozen with ``trainable=False``
  has all its weights counted as non-trainable, as Keras does;
* ``macs``: multiply-accumulates per example (see below);
* ``extra_ops``: the other, elementwise arithmetic per example (see below);
* ``is_view``: whether the output is only a view of the input (``Flatten``, ``Reshape``,
  ``Activation("linear")``), which writes no new activation to memory.

A layer class without a rule raises ``NotImplementedError`` naming the layer's class and name:
nothing is ever counted as zero by default. :func:`register_rule` adds a rule for a new class.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import keras

from cnnbook import blocks as cnnbook_blocks
from cnnbook import keras_internals
from cnnbook import layers as cnnbook_layers
from cnnbook.checks import check_int as _check_int
from cnnbook.formulas import (  # the formulas live in cnnbook.formulas; re-exported here
    batch_norm_param_counts,
    conv_macs,
    conv_params,
    dense_macs,
    dense_params,
    depthwise_conv_macs,
    depthwise_conv_params,
    separable_conv_macs,
    separable_conv_params,
)
from cnnbook.formulas import kernel_taps as _kernel_taps

__all__ = [
    "LayerCall",
    "LayerRule",
    "TrainingMemory",
    "register_rule",
    "rule_for",
    "conv_params",
    "depthwise_conv_params",
    "separable_conv_params",
    "dense_params",
    "batch_norm_param_counts",
    "conv_macs",
    "depthwise_conv_macs",
    "separable_conv_macs",
    "dense_macs",
    "layer_stats",
    "count_params",
    "macs",
    "extra_ops",
    "activation_count",
    "training_memory",
    "max_batch_size",
    "OPTIMIZER_SLOTS",
    "DTYPE_BYTES",
]


# --------------------------------------------------------------------------------------------
# The rule registry.


class _UnknownSize(Exception):
    """A spatial size needed for a per-example count is ``None`` in the model's shapes."""


def _elements(shape) -> int:
    """Elements per example of a tensor of ``shape`` (batch axis first, excluded)."""
    if any(size is None for size in shape[1:]):
        raise _UnknownSize(shape)
    return math.prod(shape[1:])


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer inside a model: the shapes it saw (batch axis first, ``None``)."""

    layer: object
    input_shapes: tuple
    output_shapes: tuple

    @property
    def input_shape(self) -> tuple:
        return self.input_shapes[0]

    @property
    def output_shape(self) -> tuple:
        return self.output_shapes[0]

    @property
    def output_elements(self) -> int:
        """Output elements per example, summed over the outputs."""
        return sum(_elements(shape) for shape in self.output_shapes)


def _no_params(call: LayerCall) -> tuple[int, int]:
    return 0, 0


def _no_ops(call: LayerCall) -> int:
    return 0


@dataclass(frozen=True)
class LayerRule:
    """How to count one layer class (see the module docstring for the conventions).

    ``params(call) -> (trainable, non_trainable)``, ``macs(call) -> int`` and
    ``extra_ops(call) -> int`` (both per example) take a :class:`LayerCall`; ``is_view`` is a
    bool or a function ``is_view(call) -> bool``.
    """

    params: Callable[[LayerCall], tuple[int, int]] = _no_params
    macs: Callable[[LayerCall], int] = _no_ops
    extra_ops: Callable[[LayerCall], int] = _no_ops
    is_view: bool | Callable[[LayerCall], bool] = False

    def output_is_view(self, call: LayerCall) -> bool:
        return bool(self.is_view(call) if callable(self.is_view) else self.is_view)


_RULES: dict[type, LayerRule] = {}


def register_rule(*layer_classes: type, params=_no_params, macs=_no_ops, extra_ops=_no_ops,
                  is_view=False, replace: bool = False) -> LayerRule:
    """Register how to count ``layer_classes`` (exact classes: a subclass needs its own rule,
    since it may add weights). Returns the :class:`LayerRule`. Registering a class twice raises
    ``ValueError`` unless ``replace=True``."""
    if not layer_classes:
        raise ValueError("register_rule needs at least one layer class")
    rule = LayerRule(params=params, macs=macs, extra_ops=extra_ops, is_view=is_view)
    for layer_class in layer_classes:
        if not isinstance(layer_class, type):
            raise ValueError(f"layer_classes must be classes, got {layer_class!r}")
        if layer_class in _RULES and not replace:
            raise ValueError(
                f"{layer_class.__qualname__} already has a rule; pass replace=True to change it"
            )
        _RULES[layer_class] = rule
    return rule


def rule_for(layer) -> LayerRule:
    """The rule of ``layer``'s exact class, or ``NotImplementedError`` naming class and layer."""
    try:
        return _RULES[type(layer)]
    except KeyError:
        layer_class = type(layer)
        raise NotImplementedError(
            f"cnnbook.accounting has no rule for layer {getattr(layer, 'name', '?')!r} of class "
            f"{layer_class.__module__}.{layer_class.__qualname__}; it will not count it as zero. "
            "Register one with cnnbook.accounting.register_rule("
            f"{layer_class.__qualname__}, params=..., macs=..., extra_ops=...)"
        ) from None


def _per_output(ops_per_element: int) -> Callable[[LayerCall], int]:
    def count(call: LayerCall) -> int:
        return ops_per_element * call.output_elements

    return count


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _channels(layer, shape) -> int:
    channels = shape[-1] if _channels_last(layer) else shape[1]
    if channels is None:
        raise ValueError(f"layer {layer.name!r} has an unknown channel count in shape {shape}")
    return int(channels)


def _spatial_positions(layer, shape) -> int:
    spatial = shape[1:-1] if _channels_last(layer) else shape[2:]
    if any(size is None for size in spatial):
        raise _UnknownSize(shape)
    return math.prod(spatial)


def _is_linear(activation) -> bool:
    return activation is None or getattr(activation, "__name__", "") == "linear"


def _bias_and_activation_ops(call: LayerCall) -> int:
    layer = call.layer
    per_element = int(bool(getattr(layer, "use_bias", False)))
    per_element += int(not _is_linear(getattr(layer, "activation", None)))
    return per_element * call.output_elements if per_element else 0


# Convolutions -------------------------------------------------------------------------------


def _conv_params(call: LayerCall) -> tuple[int, int]:
    layer = call.layer
    return conv_params(layer.kernel_size, _channels(layer, call.input_shape), layer.filters,
                       getattr(layer, "groups", 1), layer.use_bias), 0


def _conv_macs(call: LayerCall) -> int:
    layer = call.layer
    return conv_macs(_spatial_positions(layer, call.output_shape), layer.kernel_size,
                     _channels(layer, call.input_shape), layer.filters, getattr(layer, "groups", 1))


def _conv_transpose_params(call: LayerCall) -> tuple[int, int]:
    # kernel (k_h, k_w, C_out, C_in): every input value is spread over k*k*C_out outputs
    layer = call.layer
    return conv_params(layer.kernel_size, _channels(layer, call.input_shape), layer.filters,
                       1, layer.use_bias), 0


def _conv_transpose_macs(call: LayerCall) -> int:
    layer = call.layer
    input_positions = _spatial_positions(layer, call.input_shape)
    return (input_positions * _channels(layer, call.input_shape)
            * _kernel_taps(layer.kernel_size) * layer.filters)


def _depthwise_params(call: LayerCall) -> tuple[int, int]:
    layer = call.layer
    return depthwise_conv_params(layer.kernel_size, _channels(layer, call.input_shape),
                                 layer.depth_multiplier, layer.use_bias), 0


def _depthwise_macs(call: LayerCall) -> int:
    layer = call.layer
    return depthwise_conv_macs(_spatial_positions(layer, call.output_shape), layer.kernel_size,
                               _channels(layer, call.input_shape), layer.depth_multiplier)


def _separable_params(call: LayerCall) -> tuple[int, int]:
    layer = call.layer
    return separable_conv_params(layer.kernel_size, _channels(layer, call.input_shape),
                                 layer.filters, layer.depth_multiplier, layer.use_bias), 0


def _separable_macs(call: LayerCall) -> int:
    layer = call.layer
    return separable_conv_macs(_spatial_positions(layer, call.output_shape), layer.kernel_size,
                               _channels(layer, call.input_shape), layer.filters,
                               layer.depth_multiplier)


register_rule(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
              params=_conv_params, macs=_conv_macs, extra_ops=_bias_and_activation_ops)
register_rule(keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
              keras.layers.Conv3DTranspose, params=_conv_transpose_params,
              macs=_conv_transpose_macs, extra_ops=_bias_and_activation_ops)
register_rule(keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
              params=_depthwise_params, macs=_depthwise_macs, extra_ops=_bias_and_activation_ops)
register_rule(keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
              params=_separable_params, macs=_separable_macs, extra_ops=_bias_and_activation_ops)


# Dense --------------------------------------------------------------------------------------


def _dense_in_features(call: LayerCall) -> int:
    in_features = call.input_shape[-1]
    if in_features is None:
        raise ValueError(f"layer {call.layer.name!r} has an unknown input size {call.input_shape}")
    return int(in_features)


def _dense_params(call: LayerCall) -> tuple[int, int]:
    layer = call.layer
    return dense_params(_dense_in_features(call), layer.units, layer.use_bias), 0


def _dense_macs(call: LayerCall) -> int:
    shape = call.input_shape
    positions = _elements(shape[:-1]) if len(shape) > 2 else 1
    return dense_macs(_dense_in_features(call), call.layer.units, positions)


register_rule(keras.layers.Dense, params=_dense_params, macs=_dense_macs,
              extra_ops=_bias_and_activation_ops)


# Normalisation ------------------------------------------------------------------------------


def _axes(axis) -> tuple[int, ...]:
    return tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)


def _size_over_axes(call: LayerCall, axis) -> int:
    sizes = [call.input_shape[a] for a in _axes(axis)]
    if any(size is None for size in sizes):
        raise ValueError(f"layer {call.layer.name!r} normalises over an unknown axis of "
                         f"{call.input_shape}")
    return math.prod(sizes)


def _batch_norm_params(call: LayerCall) -> tuple[int, int]:
    layer = call.layer
    return batch_norm_param_counts(_size_over_axes(call, layer.axis), layer.center, layer.scale)


def _layer_norm_params(call: LayerCall) -> tuple[int, int]:
    layer = call.layer
    size = _size_over_axes(call, layer.axis)
    rms_scaling = getattr(layer, "rms_scaling", False)
    gamma = int(bool(layer.scale or rms_scaling))
    beta = int(bool(layer.center and not rms_scaling))
    return (gamma + beta) * size, 0


def _group_norm_params(call: LayerCall) -> tuple[int, int]:
    layer = call.layer
    size = _size_over_axes(call, layer.axis)
    return (int(bool(layer.scale)) + int(bool(layer.center))) * size, 0


def _normalization_params(call: LayerCall) -> tuple[int, int]:
    """An adapted (or to-be-adapted) ``Normalization`` keeps ``mean`` and ``variance`` over its
    kept axes and a scalar ``count`` as non-trainable weights; one given ``mean=`` and
    ``variance=`` holds them as constants, not weights."""
    layer = call.layer
    if layer.input_mean is not None:
        return 0, 0
    return 0, 2 * _size_over_axes(call, layer.axis) + 1


register_rule(keras.layers.BatchNormalization, params=_batch_norm_params, macs=_no_ops,
              extra_ops=_per_output(2))
register_rule(keras.layers.LayerNormalization, params=_layer_norm_params,
              extra_ops=_per_output(4))
register_rule(keras.layers.GroupNormalization, params=_group_norm_params,
              extra_ops=_per_output(4))
register_rule(keras.layers.Normalization, params=_normalization_params, extra_ops=_per_output(2))
register_rule(keras.layers.Rescaling, extra_ops=_per_output(2))


# Activations --------------------------------------------------------------------------------


def _prelu_params(call: LayerCall) -> tuple[int, int]:
    layer = call.layer
    shared = {axis % len(call.input_shape) for axis in (layer.shared_axes or ())}
    sizes = [1 if axis in shared else call.input_shape[axis]
             for axis in range(1, len(call.input_shape))]
    if any(size is None for size in sizes):
        raise ValueError(f"PReLU {layer.name!r} has an unshared unknown axis in {call.input_shape}")
    return math.prod(sizes), 0


register_rule(keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.Softmax,
              extra_ops=_per_output(1))
register_rule(keras.layers.PReLU, params=_prelu_params, extra_ops=_per_output(1))


def _is_linear_activation(call: LayerCall) -> bool:
    """``Activation("linear")`` (ConvNeXt's identity) returns its input: a view, no operation."""
    return _is_linear(call.layer.activation)


def _activation_ops(call: LayerCall) -> int:
    return 0 if _is_linear_activation(call) else call.output_elements


register_rule(keras.layers.Activation, extra_ops=_activation_ops, is_view=_is_linear_activation)


# Merges, pooling, reshaping, regularisation -------------------------------------------------


def _merge_ops(call: LayerCall) -> int:
    return max(len(call.input_shapes) - 1, 1) * call.output_elements


def _average_ops(call: LayerCall) -> int:
    return len(call.input_shapes) * call.output_elements


def _pool_ops(call: LayerCall) -> int:
    return _kernel_taps(call.layer.pool_size) * call.output_elements


def _global_pool_ops(call: LayerCall) -> int:
    return _elements(call.input_shape)


register_rule(keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
              keras.layers.Maximum, keras.layers.Minimum,
              *keras_internals.NUMPY_ARITHMETIC_OPERATIONS, extra_ops=_merge_ops)
register_rule(keras.layers.Average, extra_ops=_average_ops)
register_rule(keras.layers.Concatenate, keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D,
              keras.layers.ZeroPadding3D, keras.layers.Cropping1D, keras.layers.Cropping2D,
              keras.layers.Cropping3D, keras.layers.UpSampling1D, keras.layers.UpSampling2D,
              keras.layers.UpSampling3D, keras.layers.Permute, keras.layers.Dropout,
              keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
              keras.layers.SpatialDropout3D, keras.layers.GaussianNoise,
              keras.layers.GaussianDropout, keras.layers.RandomFlip,
              keras.layers.RandomTranslation, keras.layers.RandomCrop,
              keras.layers.RandomRotation, keras.layers.RandomZoom, keras.layers.InputLayer)
register_rule(keras.layers.Flatten, keras.layers.Reshape, keras.layers.Identity, is_view=True)
register_rule(keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
              keras.layers.AveragePooling1D, keras.layers.AveragePooling2D,
              keras.layers.AveragePooling3D, extra_ops=_pool_ops)
register_rule(keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
              keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling1D,
              keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D,
              extra_ops=_global_pool_ops)


# Layers of keras.applications and of cnnbook -------------------------------------------------


def _layer_scale_params(call: LayerCall) -> tuple[int, int]:
    return int(call.layer.projection_dim), 0


register_rule(keras_internals.ConvNeXtLayerScale, params=_layer_scale_params,
              extra_ops=_per_output(1))
register_rule(keras_internals.InceptionResNetScale, extra_ops=_per_output(2))
# Option-A shortcut: subsample and append zero channels; no weights, no arithmetic.
register_rule(cnnbook_layers.ZeroPadShortcut)


def _per_channel_params(copies: int) -> Callable[[LayerCall], tuple[int, int]]:
    def count(call: LayerCall) -> tuple[int, int]:
        return copies * _channels(call.layer, call.input_shape), 0

    return count


# LayerScale: gamma per channel, one multiply per element. Global response normalisation:
# gamma and beta per channel; square-and-sum, divide, two multiplies and two adds ~ 5 per element.
register_rule(cnnbook_blocks.LayerScale, params=_per_channel_params(1), extra_ops=_per_output(1))
register_rule(cnnbook_blocks.GlobalResponseNormalization, params=_per_channel_params(2),
              extra_ops=_per_output(5))


# --------------------------------------------------------------------------------------------
# Walking a model.


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
    except _UnknownSize:
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


def _rows(model, input_shape=None) -> list[_Row]:
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
    import pandas as pd

    rows = _rows(model, input_shape)
    frame = pd.DataFrame([{f.name: getattr(row, f.name) for f in fields(_Row)} for row in rows])
    frame.insert(5, "params", frame["trainable_params"] + frame["non_trainable_params"])
    for column in ("activations", "macs", "extra_ops"):
        if frame[column].notna().all():
            frame[column] = frame[column].astype("int64")
    return frame


def count_params(model) -> int:
    """All weight elements of ``model`` (trainable and not), from the layer rules; equals
    ``model.count_params()``. Needs only the channel counts, not the spatial sizes."""
    return sum(row.trainable_params + row.non_trainable_params for row in _rows(model))


def _total(model, column: str, input_shape, rows=None) -> int:
    rows = _rows(model, input_shape) if rows is None else rows
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
    rows = _rows(model, input_shape)
    total = _total(model, "macs", input_shape, rows)
    if include_extras:
        total += _total(model, "extra_ops", input_shape, rows)
    return batch_size * total


def extra_ops(model, batch_size: int = 1, *, input_shape=None) -> int:
    """The elementwise operations of one forward pass that are not MACs (module docstring)."""
    batch_size = _check_int("batch_size", batch_size, 1)
    return batch_size * _total(model, "extra_ops", input_shape)


def activation_count(model, *, input_shape=None) -> int:
    """Activations of one example's forward pass: the input plus every layer's output elements,
    views (``Flatten``, ``Reshape``) excluded, since they share their input's memory."""
    return _total(model, "activations", input_shape)


# --------------------------------------------------------------------------------------------
# Training memory.

OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
"""How many tensors of optimizer state each trainable weight has (SGD none, momentum one
velocity, Adam the first and second moment estimates)."""

DTYPE_BYTES = {"float32": 4, "mixed_float16": 2}
"""Bytes per stored activation under each Keras dtype policy."""

_VARIABLE_BYTES = 4  # Keras keeps variables, gradients and optimizer slots in float32


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of one training step, in four parts; ``total`` is their sum."""

    weights: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def as_dict(self) -> dict[str, int]:
        """The four parts by name (for a table or a stacked plot)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def training_memory(model, batch_size: int, optimizer: str = "sgd", dtype: str = "float32", *,
                    input_shape=None) -> TrainingMemory:
    """Memory of one training step of ``model`` on ``batch_size`` examples, in bytes.

    * ``weights = 4 * P`` for all ``P`` weights (Keras keeps variables in float32, also under
      ``mixed_float16``), plus ``2 * P_trainable`` under ``mixed_float16`` for the float16 copies
      of the weights that the forward pass makes and the backward pass reuses;
    * ``gradients = 4 * P_trainable`` (one float32 gradient per trainable weight);
    * ``optimizer_state = 4 * s * P_trainable`` with ``s`` slots per weight
      (:data:`OPTIMIZER_SLOTS`: ``sgd`` 0, ``momentum`` 1, ``adam`` 2);
    * ``activations = b * batch_size * A`` where ``A`` is :func:`activation_count` (every layer's
      output is kept for the backward pass) and ``b`` is 4 bytes (``float32``) or 2
      (``mixed_float16``).

    Assumptions: nothing is recomputed or freed early (no gradient checkpointing; a framework may
    free some tensors, e.g. a convolution's output when the ReLU after it keeps its own); the
    transient gradients of activations during the backward pass, the framework's workspaces
    (cuDNN), the CUDA context and allocator fragmentation are not counted. The estimate is linear
    in ``batch_size``; real peaks are higher by a model- and framework-dependent margin.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    if optimizer not in OPTIMIZER_SLOTS:
        raise ValueError(
            f"optimizer must be one of {sorted(OPTIMIZER_SLOTS)}, got {optimizer!r}"
        )
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    rows = _rows(model, input_shape)
    trainable = sum(row.trainable_params for row in rows)
    all_params = trainable + sum(row.non_trainable_params for row in rows)
    weight_copies = 2 * trainable if dtype == "mixed_float16" else 0
    activations = _total(model, "activations", input_shape, rows)
    return TrainingMemory(
        weights=_VARIABLE_BYTES * all_params + weight_copies,
        gradients=_VARIABLE_BYTES * trainable,
        optimizer_state=_VARIABLE_BYTES * OPTIMIZER_SLOTS[optimizer] * trainable,
        activations=DTYPE_BYTES[dtype] * batch_size * activations,
    )


def max_batch_size(model, memory_bytes: int, optimizer: str = "sgd", dtype: str = "float32", *,
                   input_shape=None) -> int:
    """The largest batch whose :func:`training_memory` fits in ``memory_bytes``:
    ``floor((memory - weights - gradients - optimizer_state) / activations_per_example)``,
    0 when the fixed part alone does not fit."""
    memory_bytes = _check_int("memory_bytes", memory_bytes, 1)
    one_example = training_memory(model, 1, optimizer, dtype, input_shape=input_shape)
    fixed = one_example.total - one_example.activations
    return max(0, (memory_bytes - fixed) // one_example.activations)
