"""Drawings of a Keras functional model's layer graph, for the blocks of ``cnnbook.nets.blocks``.

Chapter "Known ConvNet architectures" (``book/architectures.md``) draws every building block
with :func:`draw_block`: one box per layer, read top to bottom, with arrows along the data flow.
Normalisation and activation layers that directly follow a single layer (``BN``, ``ReLU``,
``GELU``, layer scale...) are folded into that layer's box, so that a box reads like the papers'
figures ("3x3 conv 64" over "BN, ReLU"; an activation fused into a layer goes on the second line
too). The last line of a box is the output shape (without
the batch axis).

Layout: a box's row is the length of the longest path from the input to it; within a row, boxes
sit near the mean position of their inputs (a barycentre layout), ties broken in the order in
which the output reads its inputs (so a concatenation's first branch is drawn on the left); an
arrow that skips rows (a shortcut) is drawn as an arc.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BlockNode", "block_graph", "layer_label", "draw_block"]

# Layers that join their parent's box when they are its only consumer and have only that input.
FOLDED_TYPES = (
    "BatchNormalization", "LayerNormalization", "ReLU", "Activation", "LayerScale",
)

_SHORT_ACTIVATIONS = {
    "relu": "ReLU", "gelu": "GELU", "sigmoid": "sigmoid", "swish": "swish", "silu": "swish",
    "hard_swish": "h-swish", "hard_sigmoid": "h-sigmoid", "tanh": "tanh", "softmax": "softmax",
}


@dataclass
class BlockNode:
    """One box: the layers it shows (``names``, the first one gives the box its place), its
    text ``lines`` (the layer, then the folded layers if any, then the output shape) and the
    boxes whose output it reads (``inputs``)."""

    names: list[str]
    lines: list[str]
    inputs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.names[0]


def _pair_text(value) -> str:
    value = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    return f"{value[0]}x{value[1]}"


def _activation_text(config) -> str | None:
    activation = config.get("activation")
    if activation in (None, "linear"):
        return None
    return _SHORT_ACTIVATIONS.get(activation, str(activation))


def _strides_text(config) -> str:
    """``"/2"`` for stride 2 (the papers' "3x3/2"), nothing for stride 1."""
    strides = config.get("strides") or (1, 1)
    strides = tuple(strides) if isinstance(strides, (list, tuple)) else (strides, strides)
    return f"/{strides[0]}" if strides != (1, 1) else ""


def layer_label(class_name: str, config: dict) -> str:
    """A short text for one layer, from its class name and Keras config: ``"3x3/2 conv 64"``
    (kernel/stride, filters), ``"1x1 conv 120 g3"`` (3 groups), ``"5x5 depthwise"``,
    ``"dense 384, ReLU"`` (with its fused activation), ``"3x3 max pool"``, ``"BN"``..."""
    text, activation = _label_parts(class_name, config)
    return f"{text}, {activation}" if activation else text


def _label_parts(class_name: str, config: dict) -> tuple[str, str | None]:
    """(the layer's text, its fused activation or ``None``): see :func:`layer_label`."""
    if class_name == "Conv2D":
        window = f"{_pair_text(config['kernel_size'])}{_strides_text(config)}"
        text = f"{window} conv {config['filters']}"
        if config.get("groups", 1) > 1:
            text += f" g{config['groups']}"
    elif class_name == "DepthwiseConv2D":
        text = f"{_pair_text(config['kernel_size'])}{_strides_text(config)} depthwise"
    elif class_name == "SeparableConv2D":
        text = (f"{_pair_text(config['kernel_size'])}{_strides_text(config)} separable "
                f"{config['filters']}")
    elif class_name == "Dense":
        text = f"dense {config['units']}"
    elif class_name in ("MaxPooling2D", "AveragePooling2D"):
        kind = "max" if class_name.startswith("Max") else "avg"
        text = f"{_pair_text(config['pool_size'])}{_strides_text(config)} {kind} pool"
    elif class_name in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        text = "global " + ("avg" if "Average" in class_name else "max") + " pool"
    elif class_name == "BatchNormalization":
        return "BN", None
    elif class_name == "LayerNormalization":
        return "LN", None
    elif class_name == "ReLU":
        return ("ReLU6" if config.get("max_value") == 6 else "ReLU"), None
    elif class_name == "Activation":
        return _activation_text(config) or "linear", None
    elif class_name == "LayerScale":
        return "layer scale", None
    elif class_name == "GlobalResponseNormalization":
        return "GRN", None
    elif class_name == "InputLayer":
        return "input", None
    else:
        text = {
            "Concatenate": "concatenate", "Add": "add", "Multiply": "multiply",
            "Reshape": "reshape", "Permute": "transpose", "Flatten": "flatten",
            "Dropout": "dropout", "ZeroPadding2D": "zero pad",
        }.get(class_name, class_name)
    return text, _activation_text(config)


def _shape_text(shape) -> str:
    return "x".join(str(size) for size in shape[1:])


def block_graph(model) -> list[BlockNode]:
    """The boxes of ``model``'s diagram in creation order, with folded layers merged (see the
    module docstring). ``model`` must be a functional Keras model whose layers are each called
    once (a block, not a network that shares layers)."""
    # Keras (and keras_internals, which imports it) take seconds: the layout code of this module
    # does not need them, so only the functions that read a model import them
    import keras

    from cnnbook import keras_internals  # imports Keras, as above

    if not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        raise ValueError(f"model must be a functional keras.Model, got {type(model).__name__}")
    try:
        layer_configs = model.get_config()["layers"]
    except (KeyError, TypeError, NotImplementedError):
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} is not a functional model with a layer "
            "graph: build it with keras.Input and layer calls (cnnbook.nets.blocks.block_model)"
        ) from None
    if not all("name" in entry and "inbound_nodes" in entry for entry in layer_configs):
        raise ValueError(
            f"model {model.name!r} is a {type(model).__name__} without a layer graph: build "
            "the block with keras.Input and layer calls (cnnbook.nets.blocks.block_model)"
        )
    parents, consumers, labels, shapes = {}, {}, {}, {}
    for entry in layer_configs:
        name = entry["name"]
        if len(entry["inbound_nodes"]) > 1:
            raise ValueError(
                f"layer {name!r} is called {len(entry['inbound_nodes'])} times: draw_block draws "
                "blocks whose layers are each called once"
            )
        parents[name] = keras_internals.serialized_input_layer_names(entry["inbound_nodes"])
        for parent in parents[name]:
            consumers.setdefault(parent, []).append(name)
        labels[name] = _label_parts(entry["class_name"], entry["config"])
        shapes[name] = _shape_text(model.get_layer(name).output.shape)

    box_of: dict[str, BlockNode] = {}
    boxes: list[BlockNode] = []
    for entry in layer_configs:
        name = entry["name"]
        layer_parents = parents[name]
        foldable = (
            entry["class_name"] in FOLDED_TYPES
            and len(layer_parents) == 1
            and len(consumers.get(layer_parents[0], [])) == 1
            and labels[box_of[layer_parents[0]].name][0] != "input"
        )
        if foldable:
            box = box_of[layer_parents[0]]
            box.names.append(name)
            folded = layer_label(entry["class_name"], entry["config"])
            if len(box.lines) == 2:
                box.lines.insert(1, folded)
            else:
                box.lines[1] = f"{box.lines[1]}, {folded}"
            box.lines[-1] = shapes[name]
        else:
            text, activation = labels[name]
            box = BlockNode(
                names=[name],
                lines=[text, *([activation] if activation else []), shapes[name]],
                inputs=[box_of[parent].name for parent in layer_parents],
            )
            boxes.append(box)
        box_of[name] = box
    return boxes


def _reading_order(boxes: list[BlockNode]) -> dict[str, int]:
    """Rank of each box in a depth-first walk from the last box through its inputs, first input
    first: the order in which the output "reads" the branches."""
    by_name = {box.name: box for box in boxes}
    order: dict[str, int] = {}
    stack = [boxes[-1].name]
    while stack:
        name = stack.pop()
        if name in order:
            continue
        order[name] = len(order)
        stack.extend(reversed(by_name[name].inputs))
    for box in boxes:  # boxes the output does not read (none in a block) go last
        order.setdefault(box.name, len(order))
    return order


def _layout(boxes: list[BlockNode], spacing: float = 1.0) -> dict[str, tuple[float, int]]:
    """``{box name: (x, row)}``: row = longest path from an input; x by barycentre."""
    row = {}
    for box in boxes:  # the config lists layers in a topological order
        row[box.name] = 1 + max((row[parent] for parent in box.inputs), default=-1)
    reading = _reading_order(boxes)
    x_position: dict[str, float] = {}
    for current in range(max(row.values()) + 1):
        members = [box for box in boxes if row[box.name] == current]
        wanted = [
            sum(x_position[p] for p in box.inputs) / len(box.inputs) if box.inputs else 0.0
            for box in members
        ]
        ordered = sorted(range(len(members)), key=lambda i: (wanted[i], reading[members[i].name]))
        # Spread boxes at least `spacing` apart, keeping their mean where they want to be.
        placed = []
        for index in ordered:
            position = wanted[index]
            if placed and position < placed[-1] + spacing:
                position = placed[-1] + spacing
            placed.append(position)
        shift = (sum(wanted) - sum(placed)) / len(placed)
        for index, position in zip(ordered, placed, strict=True):
            x_position[members[index].name] = position + shift
    return {name: (x_position[name], row[name]) for name in row}


BOX_WIDTH, BOX_HEIGHT, COLUMN_SPACING, ROW_HEIGHT = 1.15, 0.74, 1.35, 1.0
"""Drawing units: boxes are placed ``COLUMN_SPACING`` apart in a row and ``ROW_HEIGHT`` apart."""

INCHES_PER_UNIT = 0.95
"""Figure inches per drawing unit across; a row of boxes takes ``INCHES_PER_ROW``."""
INCHES_PER_ROW = 0.62


def _extent(model) -> tuple[float, int]:
    """(width in drawing units, number of rows) of ``model``'s diagram."""
    positions = _layout(block_graph(model), COLUMN_SPACING)
    xs = [x for x, _ in positions.values()]
    return max(xs) - min(xs) + 2 * BOX_WIDTH, 1 + max(row for _, row in positions.values())


def draw_block(model, ax=None, title: str | None = None, *, width: float | None = None,
               num_rows: int | None = None):
    """Draw ``model``'s layer graph (see the module docstring) on ``ax`` (a new figure when
    ``None``) and return the axes. Each box is a ``FancyBboxPatch`` labelled with its layers and
    output shape; each arrow a ``FancyArrowPatch``. ``width`` (drawing units) and ``num_rows``
    widen the axes' limits beyond the diagram's own, so that several diagrams drawn side by side
    share one scale (:func:`draw_blocks`)."""
    # matplotlib is slow to import: only the functions that draw import it
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # as above

    boxes = block_graph(model)
    positions = _layout(boxes, COLUMN_SPACING)
    own_width, own_rows = _extent(model)
    width = max(width or own_width, own_width)
    num_rows = max(num_rows or own_rows, own_rows)
    if ax is None:
        _, ax = plt.subplots(figsize=(INCHES_PER_UNIT * width, INCHES_PER_ROW * num_rows + 0.3))

    def colour(text: str) -> str:
        if "depthwise" in text or "separable" in text:
            return "#d9ead3"
        if "conv" in text:
            return "#cfe2f3"
        if text.startswith("dense"):
            return "#fce5cd"
        if "pool" in text:
            return "#ead1dc"
        if text in ("add", "concatenate", "multiply"):
            return "#fff2cc"
        return "#eeeeee"

    def centre(name):
        x, row = positions[name]
        return x, -row * ROW_HEIGHT

    for box in boxes:
        x, y = centre(box.name)
        ax.add_patch(FancyBboxPatch(
            (x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2), BOX_WIDTH, BOX_HEIGHT,
            boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=colour(box.lines[0]),
            edgecolor="#444444", linewidth=0.8,
        ))
        offsets = [0.1, -0.18] if len(box.lines) == 2 else [0.2, 0.0, -0.22]
        for line, offset in zip(box.lines, offsets, strict=True):
            is_shape = line is box.lines[-1]
            ax.text(x, y + offset, line, ha="center", va="center",
                    fontsize=6.5 if is_shape else 7.5, color="#555555" if is_shape else "black")
        for parent in box.inputs:
            px, py = centre(parent)
            rows_skipped = round((py - y) / ROW_HEIGHT)
            if rows_skipped <= 1:
                start, end, bend = (px, py - BOX_HEIGHT / 2), (x, y + BOX_HEIGHT / 2), 0.0
            else:  # a shortcut: an arc along the right (or left) edges of the boxes
                side = 1.0 if px >= x else -1.0
                start = (px + side * BOX_WIDTH / 2, py)
                end = (x + side * BOX_WIDTH / 2, y)
                bend = -side * min(0.35, 0.9 / rows_skipped)
            ax.add_patch(FancyArrowPatch(
                start, end, arrowstyle="-|>", mutation_scale=8, linewidth=0.8, color="#333333",
                connectionstyle=f"arc3,rad={bend}",
            ))
    xs = [x for x, _ in positions.values()]
    middle = (max(xs) + min(xs)) / 2
    ax.set_xlim(middle - width / 2, middle + width / 2)
    ax.set_ylim(-(num_rows - 1) * ROW_HEIGHT - 0.45, 0.45)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw_blocks(models_and_titles, direction: str = "row"):
    """Draw several blocks (a list of ``(model, title)``) on one figure at one scale, side by
    side (``direction="row"``) or one under the other (``"column"``); returns the figure."""
    import matplotlib.pyplot as plt  # slow to import: only when drawing (as in draw_block)

    models_and_titles = list(models_and_titles)
    if not models_and_titles:
        raise ValueError("models_and_titles must hold at least one (model, title) pair")
    if direction not in ("row", "column"):
        raise ValueError(f"direction must be 'row' or 'column', got {direction!r}")
    extents = [_extent(model) for model, _ in models_and_titles]
    title_inches = 0.3
    if direction == "row":
        num_rows = max(rows for _, rows in extents)
        figure, axes = plt.subplots(
            1, len(extents), squeeze=False, gridspec_kw={"width_ratios": [w for w, _ in extents]},
            figsize=(INCHES_PER_UNIT * sum(w for w, _ in extents),
                     INCHES_PER_ROW * num_rows + title_inches),
        )
        limits = [(width, num_rows) for width, _ in extents]
    else:
        width = max(w for w, _ in extents)
        figure, axes = plt.subplots(
            len(extents), 1, squeeze=False,
            gridspec_kw={"height_ratios": [rows + 0.5 for _, rows in extents]},
            figsize=(INCHES_PER_UNIT * width,
                     sum(INCHES_PER_ROW * rows + title_inches for _, rows in extents)),
        )
        limits = [(width, rows) for _, rows in extents]
    for ax, (model, title), (width, rows) in zip(axes.flat, models_and_titles, limits,
                                                    strict=True):
        draw_block(model, ax=ax, title=title, width=width, num_rows=rows)
    figure.tight_layout()
    return figure
