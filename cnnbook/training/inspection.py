"""Looking inside a trained network (the lesson of Zeiler and Fergus' ZFNet): the filters of its
first convolution as images, and the feature maps its layers compute for an input.

* :func:`first_layer_filters` returns the first ``Conv2D``'s kernel, one ``(k, k, channels)``
  image per filter, each scaled to ``[0, 1]`` on its own: ``(w - min w) / (max w - min w)``, so
  that a filter's pattern shows whatever its scale (a constant filter becomes mid-grey).
* :func:`colour_share` says how much of each first-layer filter is a colour contrast rather than a
  pattern of brightness.
* :func:`feature_maps` returns what the named layers output for a batch of images, from one
  Keras model that ends at those layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

__all__ = ["first_layer_filters", "colour_share", "feature_maps"]


def first_layer_filters(model) -> np.ndarray:
    """The kernel of ``model``'s first ``Conv2D`` (searching nested models in order) as an array
    ``(filters, k, k, in_channels)``, each filter scaled to ``[0, 1]`` on its own. Raises
    ``ValueError`` when the model has no ``Conv2D``."""
    def convolutions(layer):
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(
                layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
            yield layer
        for inner in getattr(layer, "layers", []):
            yield from convolutions(inner)

    first = next(convolutions(model), None)
    if first is None:
        raise ValueError(f"model {model.name!r} has no Conv2D layer: nothing to show")
    kernel = np.asarray(first.kernel, dtype="float64")  # (k, k, in, out)
    filters = np.moveaxis(kernel, -1, 0)
    low = filters.min(axis=(1, 2, 3), keepdims=True)
    span = filters.max(axis=(1, 2, 3), keepdims=True) - low
    return np.where(span > 0, (filters - low) / np.where(span > 0, span, 1), 0.5)


def colour_share(kernel) -> np.ndarray:
    """For each filter of a first-layer kernel ``(k, k, channels, filters)``: the share of its
    energy in colour contrasts. Split each filter ``w`` into its brightness pattern ``g`` (the mean
    over the colour channels at each position, minus its mean over the positions) and its colour
    part ``c = w - mean_over_channels(w)``. The brightness pattern is the same in every channel,
    so its energy is ``C |g|^2`` for ``C`` channels, and ``c`` is orthogonal to it; the share is
    ``|c|^2 / (|c|^2 + C |g|^2)``: 0 for a filter that treats red, green and blue alike (an edge
    or a blob in brightness), 1 for one that only compares colours. The filter's mean (a constant
    offset, which the next batch norm removes) counts in neither. Raises ``ValueError`` for a
    kernel that is not 4-D with 3 channels."""
    kernel = np.asarray(kernel, dtype="float64")
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"kernel must be (k, k, 3, filters), got shape {kernel.shape}")
    brightness = kernel.mean(axis=2, keepdims=True)
    colour = kernel - brightness
    pattern = brightness - brightness.mean(axis=(0, 1), keepdims=True)
    colour_energy = (colour ** 2).sum(axis=(0, 1, 2))
    pattern_energy = kernel.shape[2] * (pattern ** 2).sum(axis=(0, 1, 2))
    total = colour_energy + pattern_energy
    return np.where(total > 0, colour_energy / np.where(total > 0, total, 1), 0.0)


def feature_maps(model, images, layer_names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{name: the output of layer name for images}`` for each of ``layer_names``, in inference
    mode. ``model`` must be a chain at its top level (each layer takes the previous layer's output,
    as the book's ResNets do, their blocks being nested models): the images go through its layers
    one after another, up to the last layer named. Raises ``ValueError`` naming an unknown layer, or
    the layer where the model stops being a chain."""
    known = [layer.name for layer in model.layers]
    unknown = [name for name in layer_names if name not in known]
    if unknown:
        raise ValueError(f"model {model.name!r} has no layer {unknown}; its layers are "
                         f"{known[:12]}...")
    wanted = set(layer_names)
    last = max(known.index(name) for name in layer_names)
    # what feeds each layer, from the model's serialised graph (a nested model's ``input`` is its
    # own, so the graph is read from the configuration)
    graph = {entry["name"]: entry for entry in model.get_config()["layers"]}

    def sources(name):
        return [argument["config"]["keras_history"][0]
                for node in graph[name].get("inbound_nodes", [])
                for argument in node.get("args", [])
                if isinstance(argument, dict) and argument.get("class_name") == "__keras_tensor__"]

    found = {}
    previous = model.layers[0]
    values = np.asarray(images)
    for layer in model.layers[1:last + 1]:
        if sources(layer.name) != [previous.name]:
            raise ValueError(f"model {model.name!r} is not a chain at layer {layer.name!r} (it "
                             "does not take the previous layer's output): feature_maps follows "
                             "chains only")
        values = layer(values, training=False)
        if layer.name in wanted:
            found[layer.name] = np.asarray(values, dtype="float32")
        previous = layer
    return {name: found[name] for name in layer_names}
