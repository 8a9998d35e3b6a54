"""Schematic pictures the chapters draw where a table or a formula alone leaves a reader guessing:
a network as a row of activation volumes, the connections of a grouped convolution, the growth
of a receptive field and its "jump", and the connections of a dense block.

Each function draws on a matplotlib ``Axes`` (a new figure when none is given) and returns it;
what it draws is counted from its arguments (a test counts the drawn lines and cells), never
hand-placed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Polygon, Rectangle

from cnnbook.counting.sizing import receptive_field_growth

__all__ = ["draw_volumes", "draw_grouped_connections", "draw_receptive_field_jump",
           "draw_dense_connections"]

_FACE = "#dbe8f5"
_TOP = "#b7cde6"
_SIDE = "#9bb8d9"
_EDGE = "#3d5f80"
_HIGHLIGHT = "#e8833a"


def _axes(ax, size):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    ax.set_axis_off()
    return ax


def draw_volumes(stages: Sequence[tuple[str, Sequence[int]]], ax=None):
    """Draw a network as the row of volumes its layers output: ``stages`` is a list of
    ``(label, shape)`` with ``shape`` ``(height, width, channels)`` or ``(units,)``. A volume's
    height is drawn upright and its width as the slanted depth, both on a square-root scale (so
    32 and 16 stay comparable); its thickness from left to right grows with the channels, on a
    log scale. A vector is a thin bar. Each label (it may hold line breaks)
    and shape is written under its volume."""
    if not stages:
        raise ValueError("stages must list at least one (label, shape) pair")
    ax = _axes(ax, (10, 3.2))
    x = 0.0
    top = 0.0
    for label, shape in stages:
        shape = tuple(int(value) for value in shape)
        if len(shape) == 3:
            height, width, channels = shape
        elif len(shape) == 1:
            height, width, channels = shape[0], 1, 1
        else:
            raise ValueError(f"shape must be (height, width, channels) or (units,), got {shape}")
        if len(shape) == 1:
            face_w, face_h, depth = 0.25, 0.12 * math.sqrt(height) + 0.6, 0.0
        else:
            face_h = 0.35 * math.sqrt(height)
            face_w = 0.3 * math.log2(channels + 1)
            depth = 0.35 * math.sqrt(width)
        dx, dy = 0.45 * depth, 0.3 * depth
        front = [(x, 0), (x + face_w, 0), (x + face_w, face_h), (x, face_h)]
        ax.add_patch(Polygon(front, closed=True, facecolor=_FACE, edgecolor=_EDGE, lw=1.2))
        if depth:
            ax.add_patch(Polygon([(x, face_h), (x + face_w, face_h),
                                  (x + face_w + dx, face_h + dy), (x + dx, face_h + dy)],
                                 closed=True, facecolor=_TOP, edgecolor=_EDGE, lw=1.2))
            ax.add_patch(Polygon([(x + face_w, 0), (x + face_w + dx, dy),
                                  (x + face_w + dx, face_h + dy), (x + face_w, face_h)],
                                 closed=True, facecolor=_SIDE, edgecolor=_EDGE, lw=1.2))
        centre = x + (face_w + dx) / 2
        ax.text(centre, -0.35, f"{label}\n{'x'.join(map(str, shape))}", ha="center", va="top",
                fontsize=11, linespacing=1.4)
        top = max(top, face_h + dy)
        x += face_w + dx + 1.5
    ax.set_xlim(-0.4, x - 1.1)
    lines = max(str(label).count("\n") for label, _ in stages) + 2
    ax.set_ylim(-0.5 - 0.55 * lines, top + 0.3)
    ax.set_aspect("equal")
    return ax


def draw_grouped_connections(in_channels: int, out_channels: int, groups: int, ax=None,
                             title: str | None = None):
    """Draw which input channels each output channel of a convolution reads: a line from input
    channel ``i`` to output channel ``o`` when ``o``'s filter spans ``i``. With ``groups`` groups,
    output channel ``o`` reads only the ``in_channels / groups`` inputs of its own group, so there
    are ``in_channels * out_channels / groups`` lines instead of ``in_channels * out_channels``.
    Channels are coloured by group."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups ({groups}) must divide in_channels ({in_channels}) and "
                         f"out_channels ({out_channels}), as Keras' Conv2D(groups=) requires")
    ax = _axes(ax, (4, 4))
    colours = plt.get_cmap("tab10")
    per_in, per_out = in_channels // groups, out_channels // groups

    def height(index, count):
        return (count - 1 - index) / max(count - 1, 1)

    for o in range(out_channels):
        group = o // per_out
        for i in range(group * per_in, (group + 1) * per_in):
            ax.plot([0, 1], [height(i, in_channels), height(o, out_channels)], lw=0.8,
                    color=colours(group % 10), alpha=0.7, gid="connection")
    for count, x, label in ((in_channels, 0, "input\nchannels"),
                            (out_channels, 1, "output\nchannels")):
        per_group = per_in if x == 0 else per_out
        for index in range(count):
            ax.scatter([x], [height(index, count)], s=60, zorder=3, edgecolors=_EDGE,
                       color=colours((index // per_group) % 10))
        ax.text(x, -0.12, label, ha="center", va="top", fontsize=10)
    lines = in_channels * out_channels // groups
    ax.set_title(title or f"groups={groups}: {lines} connections", fontsize=11)
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylim(-0.35, 1.08)
    return ax


def draw_receptive_field_jump(layers: Sequence[tuple[int, int]], names: Sequence[str],
                              ax=None, input_size: int | None = None):
    """Draw one axis of a stack of ``layers`` (``(kernel, stride)`` each, dilation 1) as rows of
    units, input at the bottom, and the receptive field of the top row's middle unit: in every
    row, the units that feed it are highlighted. Each row is labelled with its *jump*, the input
    pixels between two neighbouring units of that row (the product of the strides below it), and
    its receptive field (:func:`cnnbook.counting.sizing.receptive_field_growth`)."""
    if len(names) != len(layers):
        raise ValueError(f"names ({len(names)}) must name each of the {len(layers)} layers")
    growth = [1] + receptive_field_growth([(kernel, stride, 1) for kernel, stride in layers])
    jumps = [1]
    for _, stride in layers:
        jumps.append(jumps[-1] * stride)
    size = input_size or growth[-1] + 2 * jumps[-1]
    # the number of units of each row with "valid" windows
    counts = [size]
    for kernel, stride in layers:
        counts.append((counts[-1] - kernel) // stride + 1)
    if counts[-1] < 1:
        raise ValueError(f"input_size {size} is too small for these layers")
    ax = _axes(ax, (10, 0.9 * (len(layers) + 1) + 0.6))
    # which units of each row feed the middle unit of the top row: walk down the stack
    chosen = {len(layers): {counts[-1] // 2}}
    for row in range(len(layers), 0, -1):
        kernel, stride = layers[row - 1]
        chosen[row - 1] = {unit * stride + offset for unit in chosen[row]
                           for offset in range(kernel)}
    for row, count in enumerate(counts):
        # a unit of row r sits at the centre of its receptive field on the input
        offset = (growth[row] - 1) / 2
        for unit in range(count):
            centre = offset + unit * jumps[row]
            on = unit in chosen[row]
            ax.add_patch(Rectangle((centre - 0.4, row - 0.3), 0.8, 0.6,
                                   facecolor=_HIGHLIGHT if on else _FACE, edgecolor=_EDGE,
                                   lw=0.8, gid="unit-on" if on else "unit"))
        label = "input" if row == 0 else names[row - 1]
        ax.text(-1.0, row, label, ha="right", va="center", fontsize=10)
        ax.text(size + 0.4, row, f"jump {jumps[row]}, receptive field {growth[row]}",
                ha="left", va="center", fontsize=10)
    ax.set_xlim(-9, size + 12)
    ax.set_ylim(-0.6, len(layers) + 0.6)
    ax.set_aspect("equal")
    return ax


def draw_dense_connections(num_layers: int, ax=None):
    """Draw a dense block of ``num_layers`` layers as its feature maps ``x_0 .. x_L`` in a row,
    with an arc from every map to every later one: layer ``l`` reads the concatenation of all the
    maps before it, so there are ``L (L + 1) / 2`` arcs (a plain chain has ``L``)."""
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    ax = _axes(ax, (10, 3.2))
    spacing = 2.0
    for node in range(num_layers + 1):
        ax.add_patch(Rectangle((node * spacing - 0.45, -0.35), 0.9, 0.7, facecolor=_FACE,
                               edgecolor=_EDGE, lw=1.2))
        ax.text(node * spacing, 0, f"$x_{node}$", ha="center", va="center", fontsize=12)
        if node:
            ax.text(node * spacing, -0.55, f"layer {node}", ha="center", va="top", fontsize=10)
    for target in range(1, num_layers + 1):
        for source in range(target):
            span = target - source
            ax.add_patch(FancyArrowPatch(
                (source * spacing + 0.2, 0.36), (target * spacing - 0.2, 0.36),
                connectionstyle=f"arc3,rad={-0.25 - 0.04 * span}", arrowstyle="-|>",
                mutation_scale=10, lw=1.0, color=_HIGHLIGHT if span == 1 else _EDGE,
                gid="arc"))
    ax.set_xlim(-0.8, num_layers * spacing + 0.8)
    ax.set_ylim(-1.1, 0.75 + 0.45 * num_layers)
    return ax
