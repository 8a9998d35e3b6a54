"""The rule registry of :mod:`cnnbook.counting.accounting`: how each Keras layer class is counted.

Every layer class that :mod:`cnnbook.counting.accounting` can count has a :class:`LayerRule` here,
keyed
by the exact class: its weights ``(trainable, non_trainable)``, its multiply-accumulates and its
other elementwise operations per example, and whether its output is only a view of its input.
The conventions (what is a MAC, what each extra operation costs) are in
:mod:`cnnbook.counting.accounting`'s docstring; the formulas come from
:mod:`cnnbook.counting.formulas`. A class
without a rule raises ``NotImplementedError``: nothing is counted as zero by default.
:func:`register_rule` adds a rule for a new class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras

from cnnbook import keras_internals
from cnnbook.counting.formulas import (
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
from cnnbook.counting.formulas import kernel_taps as _kernel_taps
from cnnbook.course import layers as cnnbook_layers

__all__ = ["LayerCall", "LayerRule", "UnknownSize", "register_rule", "rule_for", "elements"]


class UnknownSize(Exception):
    """A spatial size needed for a per-example count is ``None`` in the model's shapes."""


def elements(shape) -> int:
    """Elements per example of a tensor of ``shape`` (batch axis first, excluded)."""
    if any(size is None for size in shape[1:]):
        raise UnknownSize(shape)
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
        return sum(elements(shape) for shape in self.output_shapes)


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
            f"cnnbook.counting.accounting has no rule for layer {getattr(layer, 'name', '?')!r} "
            "of class "
            f"{layer_class.__module__}.{layer_class.__qualname__}; it will not count it as zero. "
            "Register one with cnnbook.counting.layer_rules.register_rule("
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
        raise UnknownSize(shape)
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
    positions = elements(shape[:-1]) if len(shape) > 2 else 1
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
    return elements(call.input_shape)


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
register_rule(cnnbook_layers.LayerScale, params=_per_channel_params(1), extra_ops=_per_output(1))
register_rule(cnnbook_layers.GlobalResponseNormalization, params=_per_channel_params(2),
              extra_ops=_per_output(5))
