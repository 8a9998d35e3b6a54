"""cnnbook.book.diagrams: the boxes and arrows of a block's drawing follow the Keras layer graph."""

from __future__ import annotations

import keras
import matplotlib
import pytest

matplotlib.use("Agg")

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from cnnbook.book import diagrams  # noqa: E402
from cnnbook.nets import blocks


@pytest.fixture(scope="module")
def projection_bottleneck():
    return blocks.block_model(blocks.bottleneck_block, (8, 8, 16), filters=8, strides=2,
                              name="bottleneck")


def test_bottleneck_boxes_fold_norms_and_activations_into_their_convolutions(
    projection_bottleneck,
):
    boxes = diagrams.block_graph(projection_bottleneck)
    lines = [box.lines for box in boxes]
    assert ["input", "8x8x16"] in lines
    assert ["1x1 conv 8", "BN, ReLU", "8x8x8"] in lines
    assert ["3x3/2 conv 8", "BN, ReLU", "4x4x8"] in lines
    assert ["1x1 conv 32", "BN", "4x4x32"] in lines
    assert ["1x1/2 conv 32", "BN", "4x4x32"] in lines  # the projection shortcut
    assert ["add", "ReLU", "4x4x32"] in lines
    assert len(boxes) == 6
    # Every layer of the model is in exactly one box.
    drawn = [name for box in boxes for name in box.names]
    assert sorted(drawn) == sorted(layer.name for layer in projection_bottleneck.layers)
    add = boxes[-1]
    assert len(add.inputs) == 2


def test_drawing_has_one_box_per_node_and_one_arrow_per_edge(projection_bottleneck):
    boxes = diagrams.block_graph(projection_bottleneck)
    ax = diagrams.draw_block(projection_bottleneck, title="bottleneck")
    patches = ax.patches
    assert sum(isinstance(p, FancyBboxPatch) for p in patches) == len(boxes)
    assert sum(isinstance(p, FancyArrowPatch) for p in patches) == sum(
        len(box.inputs) for box in boxes
    )
    texts = {text.get_text() for text in ax.texts}
    assert {"input", "add", "1x1/2 conv 32"} <= texts
    matplotlib.pyplot.close(ax.figure)


def test_an_inception_module_is_drawn_as_four_branches_read_left_to_right():
    model = blocks.block_model(
        blocks.inception_module, (28, 28, 192), filters_1x1=64, reduce_3x3=96, filters_3x3=128,
        reduce_5x5=16, filters_5x5=32, filters_pool_proj=32,
    )
    boxes = diagrams.block_graph(model)
    # A fused activation goes on the second line, under the layer.
    assert ["1x1 conv 64", "ReLU", "28x28x64"] in [box.lines for box in boxes]
    positions = diagrams._layout(boxes)
    first_row = sorted((x, name) for name, (x, row) in positions.items() if row == 1)
    assert [name.split("_", 2)[-1] for _, name in first_row] == [
        "1x1", "3x3_reduce", "5x5_reduce", "pool"
    ]


@pytest.mark.parametrize(
    "class_name, config, label",
    [
        ("Conv2D", {"kernel_size": (3, 3), "filters": 64, "strides": (1, 1), "groups": 1,
                    "activation": "relu"}, "3x3 conv 64, ReLU"),
        ("Conv2D", {"kernel_size": (1, 1), "filters": 120, "strides": (1, 1), "groups": 3,
                    "activation": "linear"}, "1x1 conv 120 g3"),
        ("DepthwiseConv2D", {"kernel_size": (7, 7), "strides": (2, 2), "activation": "linear"},
         "7x7/2 depthwise"),
        ("MaxPooling2D", {"pool_size": (3, 3), "strides": (1, 1)}, "3x3 max pool"),
        ("ReLU", {"max_value": 6.0}, "ReLU6"),
        ("Activation", {"activation": "hard_swish"}, "h-swish"),
    ],
)
def test_layer_labels_read_like_the_papers_tables(class_name, config, label):
    assert diagrams.layer_label(class_name, config) == label


def test_only_functional_models_can_be_drawn():
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="keras.Input"):
        diagrams.block_graph(sequential)


def test_several_blocks_share_one_scale():
    small = blocks.block_model(blocks.squeeze_excitation, (8, 8, 16), ratio=4)
    wide = blocks.block_model(blocks.fire_module, (8, 8, 16), squeeze=4, expand_1x1=8,
                              expand_3x3=8)
    figure = diagrams.draw_blocks([(small, "se"), (wide, "fire")])
    small_ax, wide_ax = figure.axes
    # One drawing unit takes the same width on both axes; rows are aligned top to bottom.
    small_width = small_ax.get_xlim()[1] - small_ax.get_xlim()[0]
    wide_width = wide_ax.get_xlim()[1] - wide_ax.get_xlim()[0]
    assert small_ax.get_position().width / small_width == pytest.approx(
        wide_ax.get_position().width / wide_width, rel=0.05)
    assert small_ax.get_ylim() == wide_ax.get_ylim()
    matplotlib.pyplot.close(figure)
    with pytest.raises(ValueError, match="direction"):
        diagrams.draw_blocks([(small, "se")], direction="diagonal")
