"""cnnbook.book.schematics: what each picture draws is counted against Keras or the formula written
another way (connections of a grouped Conv2D from its kernel's shape, a receptive field measured
by a gradient in Keras, the arcs of a dense block as a sum over its layers)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

from cnnbook.book import schematics  # noqa: E402
from cnnbook.counting import sizing  # noqa: E402


def _with_gid(ax, gid):
    return [artist for artist in ax.get_children() if artist.get_gid() == gid]


@pytest.mark.parametrize(("channels_in", "channels_out", "groups"), [(8, 8, 1), (8, 8, 4),
                                                                     (6, 12, 3)])
def test_grouped_connections_are_the_inputs_each_filter_spans(channels_in, channels_out, groups):
    import keras

    ax = schematics.draw_grouped_connections(channels_in, channels_out, groups)
    layer = keras.layers.Conv2D(channels_out, 3, groups=groups)
    layer.build((None, 8, 8, channels_in))
    # Keras' kernel: (3, 3, inputs each filter spans, filters)
    spanned, filters = layer.kernel.shape[2], layer.kernel.shape[3]
    assert len(_with_gid(ax, "connection")) == spanned * filters
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="must divide"):
        schematics.draw_grouped_connections(8, 6, 4)


@pytest.mark.parametrize("layers", [[(3, 1), (2, 2), (3, 1), (2, 2)], [(3, 1), (3, 1)],
                                    [(5, 2), (3, 1)]])
def test_receptive_field_drawn_on_the_input_is_the_one_keras_measures(layers):
    names = [f"layer {index}" for index in range(len(layers))]
    ax = schematics.draw_receptive_field_jump(layers, names)
    on_input = [patch for patch in _with_gid(ax, "unit-on") if abs(patch.get_y() + 0.3) < 1e-9]
    measured = sizing.measured_receptive_field([(kernel, stride, 1) for kernel, stride in layers])
    assert len(on_input) == measured
    # the top row: the one unit whose field is drawn
    top = [patch for patch in _with_gid(ax, "unit-on")
           if abs(patch.get_y() - (len(layers) - 0.3)) < 1e-9]
    assert len(top) == 1
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="names"):
        schematics.draw_receptive_field_jump(layers, names[:-1])


@pytest.mark.parametrize("num_layers", [1, 4, 6])
def test_dense_block_draws_one_arc_per_map_each_layer_reads(num_layers):
    ax = schematics.draw_dense_connections(num_layers)
    # layer l reads the concatenation of x_0 .. x_{l-1}: l maps
    assert len(_with_gid(ax, "arc")) == sum(range(1, num_layers + 1))
    plt.close(ax.figure)


def test_volumes_draw_one_front_face_per_stage_and_refuse_other_shapes():
    stages = [("input", (32, 32, 3)), ("conv", (32, 32, 12)), ("pool", (16, 16, 12)),
              ("fc", (10,))]
    ax = schematics.draw_volumes(stages)
    faces = [patch for patch in ax.patches if isinstance(patch, Polygon)]
    assert len(faces) == 3 * 3 + 1  # front, top and side of each volume; a vector is a bar
    texts = [text.get_text() for text in ax.texts]
    assert texts == ["input\n32x32x3", "conv\n32x32x12", "pool\n16x16x12", "fc\n10"]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="shape"):
        schematics.draw_volumes([("bad", (3, 3))])
