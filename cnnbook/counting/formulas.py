"""The counting formulas of convolutions, dense layers and batch normalisation, in one place.

Pure integer arithmetic with no dependency (not even Keras), so that the block builders'
parameter formulas (:mod:`cnnbook.nets.blocks`) and the layer rules of
:mod:`cnnbook.counting.accounting` share
one definition. Chapter "Parameters, memory and compute" (``book/parameters.md``) derives them;
``tests/test_formulas.py`` checks them against Keras' own counts.

Notation: kernel ``k_h x k_w`` (an int ``k`` is a square ``k x k``), ``C_in`` input channels,
``C_out`` filters, ``g`` groups, depth multiplier ``m``; ``H_out * W_out`` output positions.
"""

from __future__ import annotations

import math
import numbers

from cnnbook.checks import check_int

__all__ = [
    "kernel_taps",
    "check_groups",
    "conv_params",
    "depthwise_conv_params",
    "separable_conv_params",
    "dense_params",
    "batch_norm_param_counts",
    "batch_norm_params",
    "conv_macs",
    "depthwise_conv_macs",
    "separable_conv_macs",
    "dense_macs",
]


def kernel_taps(kernel_size) -> int:
    """``k_h * k_w`` (or ``k_d * k_h * k_w``): an int ``k`` means a square ``k x k``."""
    if isinstance(kernel_size, numbers.Integral) and not isinstance(kernel_size, bool):
        return check_int("kernel_size", kernel_size, 1) ** 2
    if isinstance(kernel_size, str):
        raise ValueError(f"kernel_size must be an int or a tuple of ints >= 1, got {kernel_size!r}")
    sizes = tuple(kernel_size)
    if not sizes:
        raise ValueError("kernel_size must be an int or a non-empty tuple of ints >= 1, got ()")
    return math.prod(check_int("kernel_size", size, 1) for size in sizes)


def check_groups(groups, **channel_counts: int) -> int:
    """``groups`` as an int that divides every channel count given by name, or ``ValueError``:
    a grouped convolution splits its input and its output channels into ``groups`` equal parts.

    ``check_groups(4, in_channels=32, filters=64)`` returns 4.
    """
    groups = check_int("groups", groups, 1)
    for name, channels in channel_counts.items():
        if channels % groups:
            raise ValueError(
                f"{name} ({channels}) must be a multiple of groups ({groups}): grouped "
                f"convolutions split the channels into {groups} equal groups; choose {name} "
                f"= {groups} x an integer, or groups that divides it"
            )
    return groups


def conv_params(kernel_size, in_channels: int, filters: int, groups: int = 1,
                use_bias: bool = True) -> int:
    """Weights of a convolution: ``(k_h * k_w * C_in / g + 1) * C_out`` (``+ 1`` only with a
    bias). ``groups = C_in = C_out`` is a depthwise convolution."""
    taps = kernel_taps(kernel_size)
    in_channels = check_int("in_channels", in_channels, 1)
    filters = check_int("filters", filters, 1)
    groups = check_groups(groups, in_channels=in_channels, filters=filters)
    return (taps * in_channels // groups + int(bool(use_bias))) * filters


def depthwise_conv_params(kernel_size, in_channels: int, depth_multiplier: int = 1,
                          use_bias: bool = True) -> int:
    """Weights of a depthwise convolution: ``(k_h * k_w + 1) * C_in * m``: one ``k x k`` filter
    (and bias) per input channel and multiplier ``m``, no sum across channels."""
    taps = kernel_taps(kernel_size)
    in_channels = check_int("in_channels", in_channels, 1)
    depth_multiplier = check_int("depth_multiplier", depth_multiplier, 1)
    return (taps + int(bool(use_bias))) * in_channels * depth_multiplier


def separable_conv_params(kernel_size, in_channels: int, filters: int, depth_multiplier: int = 1,
                          use_bias: bool = True) -> int:
    """Weights of a separable convolution: a depthwise ``k x k`` step without bias,
    ``k_h * k_w * C_in * m``, then a pointwise 1x1 step ``(C_in * m + 1) * C_out``."""
    filters = check_int("filters", filters, 1)
    depthwise = depthwise_conv_params(kernel_size, in_channels, depth_multiplier, use_bias=False)
    return depthwise + (in_channels * depth_multiplier + int(bool(use_bias))) * filters


def dense_params(in_features: int, units: int, use_bias: bool = True) -> int:
    """Weights of a dense (fully connected) layer: ``(C_in + 1) * C_out``."""
    in_features = check_int("in_features", in_features, 1)
    units = check_int("units", units, 1)
    return (in_features + int(bool(use_bias))) * units


def batch_norm_param_counts(channels: int, center: bool = True,
                            scale: bool = True) -> tuple[int, int]:
    """``(trainable, non_trainable)`` weights of batch normalisation over ``C`` channels:
    ``gamma`` and ``beta`` (``C`` each, when ``scale``/``center``) are learnt; the moving mean and
    variance (``2 C``) are statistics, updated during training but not by gradients."""
    channels = check_int("channels", channels, 1)
    return (int(bool(scale)) + int(bool(center))) * channels, 2 * channels


def batch_norm_params(channels: int) -> int:
    """All weights of batch normalisation over ``C`` channels, as Keras' ``count_params``
    counts them: ``4 C`` (``gamma``, ``beta``, moving mean and moving variance)."""
    return sum(batch_norm_param_counts(channels))


def conv_macs(output_positions: int, kernel_size, in_channels: int, filters: int,
              groups: int = 1) -> int:
    """MACs of a convolution per example: ``H_out * W_out * C_out * (k_h * k_w * C_in / g)``;
    ``output_positions`` is ``H_out * W_out``. Dilation does not change it."""
    output_positions = check_int("output_positions", output_positions, 1)
    taps = kernel_taps(kernel_size)
    in_channels = check_int("in_channels", in_channels, 1)
    filters = check_int("filters", filters, 1)
    groups = check_groups(groups, in_channels=in_channels, filters=filters)
    return output_positions * filters * taps * (in_channels // groups)


def depthwise_conv_macs(output_positions: int, kernel_size, in_channels: int,
                        depth_multiplier: int = 1) -> int:
    """MACs of a depthwise convolution per example: ``H_out * W_out * C_in * m * k_h * k_w``."""
    output_positions = check_int("output_positions", output_positions, 1)
    taps = kernel_taps(kernel_size)
    in_channels = check_int("in_channels", in_channels, 1)
    depth_multiplier = check_int("depth_multiplier", depth_multiplier, 1)
    return output_positions * in_channels * depth_multiplier * taps


def separable_conv_macs(output_positions: int, kernel_size, in_channels: int, filters: int,
                        depth_multiplier: int = 1) -> int:
    """MACs of a separable convolution per example: the depthwise step
    ``H_out * W_out * C_in * m * k_h * k_w`` plus the pointwise step
    ``H_out * W_out * C_in * m * C_out``."""
    depthwise = depthwise_conv_macs(output_positions, kernel_size, in_channels, depth_multiplier)
    filters = check_int("filters", filters, 1)
    return depthwise + output_positions * in_channels * depth_multiplier * filters


def dense_macs(in_features: int, units: int, positions: int = 1) -> int:
    """MACs of a dense layer per example: ``positions * C_in * C_out`` (``positions`` > 1 when
    it is applied at every pixel of a feature map, like ConvNeXt's pointwise layers)."""
    in_features = check_int("in_features", in_features, 1)
    units = check_int("units", units, 1)
    positions = check_int("positions", positions, 1)
    return positions * in_features * units
