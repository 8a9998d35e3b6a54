"""Residual networks as ensembles: lesion studies that delete and reorder blocks.

Chapter "Residual networks" (``book/resnet.md``), after Veit, Wilber and Belongie 2016,
*Residual Networks Behave Like Ensembles of Relatively Shallow Networks* (arXiv 1605.06431).

The unrolled view
-----------------
The path mathematics of the unrolled view (``2**n`` paths through ``n`` blocks, their lengths
``Binomial(n, 1/2)``) needs no network and lives in :mod:`cnnbook.resnet.unrolled`.

Lesion studies
--------------
A :mod:`cnnbook.nets.models` CIFAR network is a chain of top-level layers in which every block
``stage{s}_block{b}`` is one layer (a nested functional model). Deleting a residual block
``x -> h(x) + F(x)`` at test time replaces it by its shortcut ``h`` alone (the identity, or
option A's zero padding / option B's projection in a downsampling block); deleting a plain block
replaces it by the identity, which is only possible where the block keeps the shape. Reordering
calls the blocks in another order. Both rebuild a new ``keras.Model`` that *shares* the trained
layers (no copy, no retraining): :func:`delete_blocks`, :func:`reorder_blocks`,
:func:`lesion_study`, :func:`deletion_curve`, :func:`reorder_curve`.

The same chain gives :func:`block_gradient_norms`: how large the loss's gradient is at the output
of every block, the quantity that the identity shortcut's ``1 +`` term keeps from shrinking or
growing geometrically with depth; and :func:`branch_ratios`: how much each block's residual
branch changes the signal, which says which deletions a trained network can absorb.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from cnnbook.checks import check_int as _check_int
from cnnbook.training.metrics import top1_correct

__all__ = [
    "block_table",
    "deletable_blocks",
    "delete_blocks",
    "reorder_blocks",
    "swappable_pairs",
    "random_swaps",
    "accuracy",
    "lesion_study",
    "deletion_curve",
    "curve_summary",
    "reorder_curve",
    "block_gradient_norms",
    "branch_ratios",
]


# --- Lesion studies ----------------------------------------------------------------------------


_OUTPUT_RELU = "relu_out"
"""The layer after the addition in an original (post-activation) block of cnnbook.nets.models."""


def _models():
    from cnnbook.nets import models  # imports Keras: only when a lesion function needs it

    return models


def _blocks(model, required: bool = True) -> dict:
    models = _models()
    names = models.block_names(model)
    if not names and required:
        raise ValueError(
            f"model {model.name!r} has no blocks named stage{{s}}_block{{b}}: lesion functions "
            "take a network built by cnnbook.nets.models.resnet_cifar or plain_cifar"
        )
    return {name: model.get_layer(name) for name in names}


def _check_names(model, names, argument: str) -> list[str]:
    if isinstance(names, str):
        raise ValueError(f"{argument} must be a list of block names, got the string {names!r}")
    names = list(names)
    blocks = _blocks(model, required=bool(names))
    unknown = [name for name in names if name not in blocks]
    if unknown:
        raise ValueError(
            f"{argument} names blocks that {model.name!r} does not have: {unknown}; "
            f"its blocks are {list(blocks)}"
        )
    return names


def block_table(model) -> list[dict]:
    """One row per block of ``model``, in order: ``name``, ``residual`` (has a shortcut),
    ``downsampling`` (changes the shape: the first block of stages 2 and 3), ``params`` (weights
    of the block, trainable or not) and ``deletable`` (see :func:`deletable_blocks`)."""
    models = _models()
    rows = []
    for name, block in _blocks(model).items():
        residual = models.is_residual_block(block)
        downsampling = models.is_downsampling_block(block)
        rows.append({
            "name": name,
            "residual": residual,
            "downsampling": downsampling,
            "params": int(block.count_params()),
            "deletable": residual or not downsampling,
        })
    return rows


def deletable_blocks(model, include_downsampling: bool = True) -> list[str]:
    """Blocks that :func:`delete_blocks` can remove: every residual block (its shortcut keeps
    the shape), but only the plain blocks that keep the shape. ``include_downsampling=False``
    leaves out the downsampling blocks (Veit et al. delete and reorder among the others)."""
    return [
        row["name"] for row in block_table(model)
        if row["deletable"] and (include_downsampling or not row["downsampling"])
    ]


def _rebuild(model, sequence, name: str):
    """A new model whose top-level chain is ``sequence``: a list of layers or callables applied
    in turn to the image input, sharing ``model``'s layers."""
    import keras  # slow to import: only when a lesion function needs it (see _models)

    inputs = keras.Input(shape=tuple(model.input.shape[1:]), name=model.input.name)
    x = inputs
    for step in sequence:
        x = step(x)
    return keras.Model(inputs, x, name=name)


def _top_level_chain(model) -> list:
    layers = list(model.layers)
    if type(layers[0]).__name__ != "InputLayer" or len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} is not a single-input chain of layers")
    return layers[1:]


def _without_branch(block, x):
    """What the residual ``block`` outputs for ``x`` once its branch is deleted (``F = 0``):
    ``h(x)``, followed by the block's output ReLU in an original (post-activation) block."""
    kept = _models().apply_shortcut(block, x)
    if _OUTPUT_RELU in [layer.name for layer in block.layers]:
        kept = block.get_layer(_OUTPUT_RELU)(kept)  # the original block: relu(h(x) + 0)
    return kept


def delete_blocks(model, names: Iterable[str]):
    """``model`` with the blocks ``names`` deleted, as a new ``keras.Model`` sharing the trained
    layers (no copy, no retraining).

    A deleted residual block computes what the block computes with its residual branch
    silenced, ``F = 0``: ``y = h(x)`` for a pre-activation block ``y = h(x) + F(x)``, and
    ``y = relu(h(x))`` for an original block ``y = relu(h(x) + F(x))``, where ``h`` is the
    shortcut (:func:`cnnbook.nets.models.apply_shortcut`): the identity in most blocks (then the
    ReLU
    changes nothing, the input being a ReLU's output already), option A's subsample-and-zero-pad
    or option B's 1x1 projection in a downsampling block. A deleted plain block becomes the
    identity. ``delete_blocks(model, [])`` computes exactly what ``model``
    computes. Raises ``ValueError`` for an unknown name, a repeated name, or a downsampling
    block of a plain network (nothing of the right shape remains without it).
    """
    import keras  # slow to import: only when a lesion function needs it (see _models)

    models = _models()
    names = _check_names(model, names, "names")
    if len(set(names)) != len(names):
        raise ValueError(f"names lists a block more than once: {names}")
    blocks = _blocks(model, required=False)
    for name in names:
        block = blocks[name]
        if not models.is_residual_block(block) and models.is_downsampling_block(block):
            raise ValueError(
                f"cannot delete {name!r}: it is a downsampling block of a plain network, so "
                "without it the shapes no longer fit; choose among deletable_blocks(model)"
            )
    deleted = set(names)
    sequence = []
    for layer in _top_level_chain(model):
        if layer.name not in deleted:
            sequence.append(layer)
        elif models.is_residual_block(layer) and models.shortcut_layers(layer):
            # A sub-model holding only the shortcut path: a unique name in the new model.
            kept = _without_branch(layer, layer.input)
            shortcut_only = keras.Model(layer.input, kept, name=f"{layer.name}_shortcut_only")
            sequence.append(shortcut_only)
        # else: an identity shortcut or a shape-keeping plain block: nothing to apply
    return _rebuild(model, sequence, model.name + ("_lesioned" if names else ""))


def reorder_blocks(model, order: Sequence[str]):
    """``model`` with its blocks called in the order ``order`` (a permutation of
    :func:`cnnbook.nets.models.block_names`), as a new ``keras.Model`` sharing the trained layers.
    Position ``i`` of the chain gets block ``order[i]``; every other layer stays in place.

    Raises ``ValueError`` unless ``order`` lists every block exactly once and each block receives
    an input of the shape it was built for (so a downsampling block stays where the shape
    changes, and blocks move only among those of the same shape).
    """
    order = _check_names(model, order, "order")
    blocks = _blocks(model)
    if sorted(order) != sorted(blocks):
        raise ValueError(
            f"order must list each of the {len(blocks)} blocks exactly once, got {order}"
        )
    replacement = dict(zip(blocks, order, strict=True))
    sequence = [blocks[replacement[layer.name]] if layer.name in replacement else layer
                for layer in _top_level_chain(model)]
    # Check shapes before Keras does, to name the block and the position.
    shape = tuple(model.input.shape[1:])
    for layer in sequence:
        if layer.name in blocks:
            expected = tuple(layer.input.shape[1:])
            if expected != shape:
                raise ValueError(
                    f"order puts {layer.name!r} (built for inputs of shape {expected}) where the "
                    f"input has shape {shape}; blocks can only move among blocks of equal shape"
                )
            shape = tuple(layer.output.shape[1:])
        else:
            shape = tuple(layer.compute_output_shape((None, *shape))[1:])
    changed = [name for name, new in replacement.items() if name != new]
    suffix = "_reordered" if changed else ""
    return _rebuild(model, sequence, model.name + suffix)


def swappable_pairs(model) -> list[tuple[str, str]]:
    """Pairs of blocks that :func:`reorder_blocks` may exchange: two non-downsampling blocks of
    the same stage (same input and output shape), in order."""
    names = deletable_blocks(model, include_downsampling=False)
    blocks = _blocks(model)
    pairs = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if tuple(blocks[first].input.shape) == tuple(blocks[second].input.shape):
                pairs.append((first, second))
    return pairs


def random_swaps(model, num_swaps: int, seed: int = 0) -> list[str]:
    """A block order made by ``num_swaps`` random exchanges of two blocks of equal shape (Veit
    et al.'s reordering): start from the network's order and swap, ``num_swaps`` times, the
    blocks at two positions drawn uniformly among the swappable ones."""
    num_swaps = _check_int("num_swaps", num_swaps, 0)
    order = _models().block_names(model)
    position = {name: i for i, name in enumerate(order)}
    pairs = swappable_pairs(model)
    if num_swaps and not pairs:
        raise ValueError(f"model {model.name!r} has no two blocks of equal shape to swap")
    rng = np.random.default_rng(seed)
    for _ in range(num_swaps):
        first, second = pairs[rng.integers(len(pairs))]
        i, j = position[first], position[second]
        order[i], order[j] = order[j], order[i]
    return order


def accuracy(model, images, labels, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (logits out) on ``images`` with integer ``labels``: the share
    of images whose largest logit is the label. Inference mode (batch norm uses its moving
    averages), as in every lesion experiment."""
    labels = np.asarray(labels).reshape(-1)
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"images and labels must be non-empty and of equal length, got {len(images)} and "
            f"{len(labels)}"
        )
    batch_size = _check_int("batch_size", batch_size, 1)
    # Eager calls in batches: as fast as predict() on the CPU for these sizes, and no
    # tf.function to retrace for every rebuilt model.
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = np.asarray(model(images[start : start + batch_size], training=False))
        correct += top1_correct(logits, labels[start : start + batch_size])
    return correct / len(labels)


def lesion_study(model, images, labels, batch_size: int = 500) -> list[dict]:
    """Delete each block in turn (one at a time, without retraining) and measure test accuracy.

    Returns one row per block, in order: ``name``, ``downsampling``, ``residual``, ``deletable``
    and ``accuracy`` (``None`` where the block cannot be deleted), plus ``baseline``, the
    accuracy of the whole network.
    """
    baseline = accuracy(model, images, labels, batch_size)
    rows = []
    for row in block_table(model):
        result = None
        if row["deletable"]:
            result = accuracy(delete_blocks(model, [row["name"]]), images, labels, batch_size)
        rows.append({
            "name": row["name"], "downsampling": row["downsampling"], "residual": row["residual"],
            "deletable": row["deletable"], "accuracy": result, "baseline": baseline,
        })
    return rows


def deletion_curve(model, images, labels, num_deleted: Iterable[int], repeats: int = 3,
                   seed: int = 0, batch_size: int = 500) -> list[dict]:
    """Accuracy after deleting ``k`` blocks at once, for each ``k`` in ``num_deleted``: ``repeats``
    random draws of ``k`` distinct non-downsampling blocks each. One row per draw: ``num_deleted``,
    ``repeat``, ``blocks`` (the names deleted) and ``accuracy``."""
    candidates = deletable_blocks(model, include_downsampling=False)
    repeats = _check_int("repeats", repeats, 1)
    rng = np.random.default_rng(seed)
    rows = []
    for count in num_deleted:
        count = _check_int("num_deleted", count, 0, len(candidates))
        for repeat in range(repeats if count else 1):
            chosen = sorted(rng.choice(len(candidates), size=count, replace=False).tolist())
            names = [candidates[i] for i in chosen]
            lesioned = delete_blocks(model, names)
            rows.append({"num_deleted": count, "repeat": repeat, "blocks": names,
                         "accuracy": accuracy(lesioned, images, labels, batch_size)})
    return rows


def reorder_curve(model, images, labels, num_swaps: Iterable[int], repeats: int = 3,
                  seed: int = 0, batch_size: int = 500) -> list[dict]:
    """Accuracy after ``k`` random swaps of blocks of equal shape (:func:`random_swaps`), for
    each ``k`` in ``num_swaps``, ``repeats`` draws each. One row per draw: ``num_swaps``,
    ``repeat``, ``order`` and ``accuracy``."""
    repeats = _check_int("repeats", repeats, 1)
    rows = []
    for count in num_swaps:
        count = _check_int("num_swaps", count, 0)
        for repeat in range(repeats if count else 1):
            order = random_swaps(model, count, seed=seed + 1000 * count + repeat)
            reordered = reorder_blocks(model, order)
            rows.append({"num_swaps": count, "repeat": repeat, "order": order,
                         "accuracy": accuracy(reordered, images, labels, batch_size)})
    return rows


def curve_summary(rows: Sequence[dict], by: str) -> list[dict]:
    """The spread of a :func:`deletion_curve` (``by="num_deleted"``) or :func:`reorder_curve`
    (``by="num_swaps"``) over its random draws: one row per count ``k``, in increasing order,
    with ``by``, ``draws`` (how many rows have that ``k``), and the ``mean``, ``std`` (population
    standard deviation, 0 for one draw), ``min`` and ``max`` of their ``accuracy``."""
    if isinstance(rows, (str, bytes)) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(
            "rows must be the list of dicts that deletion_curve or reorder_curve return"
        )
    groups: dict[int, list[float]] = {}
    for row in rows:
        if by not in row or "accuracy" not in row:
            raise ValueError(f"every row needs {by!r} and 'accuracy', got keys {sorted(row)}")
        groups.setdefault(int(row[by]), []).append(float(row["accuracy"]))
    return [{by: count, "draws": len(values), "mean": float(np.mean(values)),
             "std": float(np.std(values)), "min": min(values), "max": max(values)}
            for count, values in sorted(groups.items())]


def block_gradient_norms(model, images, labels, training: bool = True) -> list[dict]:
    """The Euclidean norm of ``dE/dx_i``, the gradient of the mean cross-entropy ``E`` of
    ``model``'s logits on ``images``/``labels`` with respect to the output ``x_i`` of every
    block, in block order: one row per block with ``name`` and ``gradient_norm``.

    For a residual chain ``x_L = x_l + sum_{i=l}^{L-1} F(x_i)``, so
    ``dE/dx_l = dE/dx_L (1 + d/dx_l sum F(x_i))``: the ``1`` carries the gradient of the last
    block back unchanged. ``training=True`` runs batch norm on the batch's own statistics, as
    during a training step (the behaviour at the start of training); the model's running
    statistics are left as they were.
    """
    # Keras and TensorFlow take seconds: only when a lesion function needs them (see _models)
    import keras
    import tensorflow as tf  # as above

    labels = np.asarray(labels).reshape(-1)
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"images and labels must be non-empty and of equal length, got {len(images)} and "
            f"{len(labels)}"
        )
    names = list(_blocks(model))
    outputs = []
    # A training-mode call moves batch norm's running statistics: put them back afterwards.
    saved_state = [variable.numpy() for variable in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        x = tf.convert_to_tensor(np.asarray(images, dtype="float32"))
        for layer in _top_level_chain(model):
            x = layer(x, training=training)
            if layer.name in names:
                tape.watch(x)
                outputs.append(x)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, x, from_logits=True)
        )
    gradients = tape.gradient(loss, outputs)
    for variable, value in zip(model.non_trainable_variables, saved_state, strict=True):
        variable.assign(value)
    return [{"name": name, "gradient_norm": float(tf.norm(gradient))}
            for name, gradient in zip(names, gradients, strict=True)]


def branch_ratios(model, images) -> list[dict]:
    """How much each residual block changes what flows through it, relative to what it would
    pass on if it were deleted: for block output ``y`` and deleted-block output ``d`` (``h(x)``,
    or ``relu(h(x))`` in an original block; see :func:`delete_blocks`), the ratio of Euclidean
    norms over the whole batch ``|y - d| / |d|``. A block whose ratio is well below 1 only
    nudges the signal, and deleting it leaves the rest of the network inputs it has seen; a
    ratio near or above 1 means the branch dominates. Inference mode. One row per residual
    block, in order: ``name``, ``downsampling`` and ``ratio``.
    """
    import tensorflow as tf  # slow to import: only when needed (see _models)

    models = _models()
    x = tf.convert_to_tensor(np.asarray(images, dtype="float32"))
    names = list(_blocks(model))
    rows = []
    for layer in _top_level_chain(model):
        if layer.name in names and models.is_residual_block(layer):
            output = layer(x, training=False)
            deleted = _without_branch(layer, x)
            rows.append({
                "name": layer.name,
                "downsampling": models.is_downsampling_block(layer),
                "ratio": float(tf.norm(output - deleted) / tf.norm(deleted)),
            })
            x = output
        else:
            x = layer(x, training=False)
    if not rows:
        raise ValueError(f"model {model.name!r} has no residual blocks: nothing to measure")
    return rows
