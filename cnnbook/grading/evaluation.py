"""What the accuracy grader does with one submitted model, in a sandboxed child process of its
own (``python -m cnnbook.grading evaluate``): load it with ``safe_mode=True``, refuse a copy of a
model the course ships, load its weights by layer name and shape into the grader's own reference
network (:mod:`cnnbook.grading.reference_networks`), measure that network on the test images, and
compute what the grader compares between submissions: a signature of the function it computes
(copies are found by function, :func:`copy_groups`) and its validation accuracy (a network that
has seen the test images, :func:`seen_test_images`).
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnbook.course.data import load_cifar10, load_test_images, load_training_split
from cnnbook.grading.reference_networks import REFERENCE_ARCHITECTURES
from cnnbook.training.metrics import top1_correct

__all__ = ["load_submitted_model", "load_weights_by_name", "keras_file_arrays",
           "copied_from_shipped", "function_signature", "copy_groups", "seen_test_images",
           "evaluate_model", "LOADING_MARK"]

COPY_CORRELATION = 0.9
"""Two weight arrays whose Pearson correlation reaches this are treated as copies of each other.
Independently trained (or initialised) kernels correlate at about 0 (within +-0.1 for the arrays
compared here); a copy, a copy with a little noise added, or a few epochs of fine-tuning of a copy
stay close to 1."""

COMPARED_MIN_VALUES = 256
"""Only weight arrays with at least this many values (and not constant) are compared for copies:
kernels, not the 16..64-value vectors of batch normalisation that start at 0 or 1 everywhere."""

PROBE_IMAGES = 256
"""Test images whose logits make a submission's function signature (:func:`function_signature`)."""

FUNCTION_COPY_CORRELATION = 0.99
"""Two submissions whose function signatures correlate at this or more compute (nearly) the same
function: copies, whatever was done to the weights (channels permuted, rescaled with the batch
norms compensating, names changed). Independently trained networks of the same accuracy disagree
on many probe images and correlate well below it; a copy fine-tuned for a while drifts below it
too (``solutions/README.md`` says what this cannot catch)."""

GENERALISATION_MARGIN = 0.03
"""How much better than on the validation images a model may do on the test images, beyond the
sampling error of both measurements, before the grader flags it (:func:`seen_test_images`)."""


def _all_layers(model):
    """Every layer of ``model``, descending into nested models (blocks built as sub-models)."""
    import keras  # TensorFlow takes seconds: only the commands that load a model pay for it

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _weighted_layers(model) -> dict:
    """``{name: layer}`` of the layers of ``model`` (nested ones included) that hold weights
    themselves; raises ``ValueError`` when two of them share a name."""
    import keras  # TensorFlow takes seconds: only the commands that load a model pay for it

    layers = {}
    for layer in _all_layers(model):
        if isinstance(layer, keras.Model) or not layer.weights:
            continue
        if layer.name in layers:
            raise ValueError(f"two layers with weights are both named {layer.name!r}")
        layers[layer.name] = layer
    return layers


def load_weights_by_name(reference, submitted) -> list[str]:
    """Copy the weights of ``submitted`` into ``reference`` layer by layer, matching layers by
    name; return why that is impossible (an empty list when every weight was loaded).

    Every layer of ``reference`` that holds weights needs a layer of the same name, the same
    class and the same weight shapes in ``submitted``, and ``submitted`` may hold no weights
    anywhere else: a model padded with extra weights, or with a layer changed, is not the
    network asked for. Layers without weights (activations, additions, shortcuts) are the
    reference's own, whatever ``submitted`` holds.
    """
    wanted = _weighted_layers(reference)
    try:
        given = _weighted_layers(submitted)
    except ValueError as error:
        return [str(error)]
    problems = []
    missing = [name for name in wanted if name not in given]
    if missing:
        problems.append(f"it has no layer with weights named {', '.join(missing)}")
    extra = [name for name in given if name not in wanted]
    if extra:
        values = sum(int(np.prod(weight.shape)) for name in extra for weight in given[name].weights)
        problems.append(f"it has weights the network asked for does not have ({values:,} values "
                        f"in {', '.join(extra[:8])}{', ...' if len(extra) > 8 else ''})")
    for name, layer in wanted.items():
        if name not in given:
            continue
        other = given[name]
        shapes = [tuple(weight.shape) for weight in layer.weights]
        other_shapes = [tuple(weight.shape) for weight in other.weights]
        if type(other).__name__ != type(layer).__name__:
            problems.append(f"{name} is a {type(other).__name__}, not a {type(layer).__name__}")
        elif shapes != other_shapes:
            problems.append(f"{name} has weights of shapes {other_shapes}, not {shapes}")
    if not problems:
        for name, layer in wanted.items():
            layer.set_weights([np.asarray(weight, dtype=np.float32)
                               for weight in given[name].get_weights()])
    return problems


def _compared_arrays(arrays):
    """The arrays worth comparing for copies, flattened to float64: at least
    :data:`COMPARED_MIN_VALUES` values and not constant."""
    for array in arrays:
        flat = np.asarray(array, dtype=np.float64).reshape(-1)
        if flat.size >= COMPARED_MIN_VALUES and np.ptp(flat) > 0:
            yield flat


def _correlation(first, second) -> float:

    first, second = first - first.mean(), second - second.mean()
    scale = float(np.sqrt(np.dot(first, first) * np.dot(second, second)))
    return float(np.dot(first, second) / scale) if scale > 0 else 0.0


def keras_file_arrays(path: Path) -> list:
    """Every weight array stored in the ``.keras`` file ``path`` (its ``model.weights.h5``),
    read with h5py, without building the model: works for any shipped model whatever its
    layers."""
    import h5py  # comes with Keras; only a submitted .keras file's weights need it
    arrays = []
    with zipfile.ZipFile(path) as archive, h5py.File(
            io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        weights.visititems(lambda _, item: arrays.append(np.asarray(item))
                           if isinstance(item, h5py.Dataset) and item.ndim > 0 else None)
    return arrays


def copied_from_shipped(submitted_arrays, shipped_paths: Sequence[str]) -> str | None:
    """Which shipped model ``submitted_arrays`` copy, if any: the first shipped ``.keras`` file
    holding an array of the same shape whose correlation with a compared submitted array reaches
    :data:`COPY_CORRELATION`, as a sentence for the feedback (``None``: no copy found). Arrays are
    matched by shape only, so renaming or reordering layers does not hide a copy."""
    submitted = list(_compared_arrays(submitted_arrays))
    for path in shipped_paths:
        by_size: dict[int, list] = {}
        for array in _compared_arrays(keras_file_arrays(Path(path))):
            by_size.setdefault(array.size, []).append(array)
        copied, best = 0, 0.0
        for array in submitted:
            scores = [abs(_correlation(array, other)) for other in by_size.get(array.size, [])]
            if scores and max(scores) >= COPY_CORRELATION:
                copied, best = copied + 1, max(best, max(scores))
        if copied:
            return (f"{copied} of its {len(submitted)} weight arrays are those of "
                    f"{Path(path).name}, a model the course ships (correlation {best:.3f}): "
                    "submit the network you trained yourself")
    return None


def function_signature(model, probe_images) -> list[float]:
    """What ``model`` computes on ``probe_images``: its logits, each image's shifted to mean 0
    (a softmax does not see a shift), flattened and rounded. Two networks that compute the same
    function have signatures that correlate at 1, however their weights were permuted or
    rescaled; independently trained ones clearly less."""
    logits = np.asarray(model(probe_images, training=False), dtype=np.float64)
    centred = logits - logits.mean(axis=1, keepdims=True)
    return [round(float(value), 5) for value in centred.reshape(-1)]


def copy_groups(signatures: dict[str, list[float]],
                threshold: float = FUNCTION_COPY_CORRELATION) -> list[list[str]]:
    """Groups (two or more students, sorted) whose signatures (:func:`function_signature`)
    correlate at ``threshold`` or more, joined transitively: submissions that compute (nearly)
    the same function."""
    names = sorted(name for name, signature in signatures.items() if signature)
    parent = {name: name for name in names}

    def root(name):
        while parent[name] != name:
            name = parent[name]
        return name

    for index, first in enumerate(names):
        for second in names[index + 1:]:
            a, b = np.asarray(signatures[first]), np.asarray(signatures[second])
            if a.shape == b.shape and _correlation(a, b) >= threshold:
                parent[root(second)] = root(first)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(root(name), []).append(name)
    return sorted(group for group in groups.values() if len(group) > 1)


def seen_test_images(test_accuracy: float, test_images: int, validation_accuracy: float,
                     validation_images: int, margin: float = GENERALISATION_MARGIN) -> bool:
    """Whether a model does better on the test images than on the validation images the notebook
    keeps apart (it never trains on them) by more than ``margin`` plus three standard errors of
    the difference, ``3 * sqrt(p_t (1 - p_t) / n_t + p_v (1 - p_v) / n_v)``: a model that has seen
    the test images (trained on them) generalises to them, not to images it never saw."""
    spread = math.sqrt(test_accuracy * (1 - test_accuracy) / max(test_images, 1)
                       + validation_accuracy * (1 - validation_accuracy)
                       / max(validation_images, 1))
    return test_accuracy - validation_accuracy > margin + 3 * spread


def load_submitted_model(path: Path):
    """The model in ``path`` loaded as the grader loads it: ``safe_mode=True`` (no ``Lambda``, no
    arbitrary code) with every custom layer of :mod:`cnnbook.course.layers` registered, uncompiled.
    Raises what Keras raises for a broken or unsafe file."""
    import keras  # TensorFlow takes seconds: only the commands that load a model pay for it

    import cnnbook.course.layers  # noqa: F401 (registers the course's custom layers for loading)

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def _accuracy(model, images, labels, batch_size: int) -> float:

    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = np.asarray(model(images[start : start + batch_size], training=False))
        correct += top1_correct(logits, labels[start : start + batch_size])
    return correct / len(labels)


def evaluate_model(path: Path, architecture: str, shipped_models: Sequence[str] = (),
                   batch_size: int = 500, test_images: Path | None = None) -> dict:
    """Grade one saved model: load ``path`` with :func:`load_submitted_model`, refuse it when it
    copies a shipped model (:func:`copied_from_shipped`), build the reference ``architecture``
    afresh, load the submitted weights into it by layer name and shape
    (:func:`load_weights_by_name`) and measure the reference's accuracy on the test images of
    :func:`cnnbook.course.data.load_cifar10`, which students' notebooks never load, or on the
    instructor's private images in ``test_images`` (:func:`cnnbook.course.data.load_test_images`);
    and
    on the validation part of :func:`cnnbook.course.data.load_training_split`, which the notebooks
    keep
    apart from training, for :func:`seen_test_images`.

    Returns ``{"ok": True, "accuracy": a, "test_images": n, "validation_accuracy": v or None,
    "validation_images": m, "signature": [...]}`` (:func:`function_signature` on the first
    :data:`PROBE_IMAGES` test images) or ``{"ok": False, "reason": ...}``; what the ``evaluate``
    command prints as JSON in the grader's child process.
    """
    import keras  # TensorFlow takes seconds: only the commands that load a model pay for it

    path = Path(path)
    if not path.is_file():
        return {"ok": False, "reason": f"there is no {path.name} in the submission"}
    print(LOADING_MARK, flush=True)  # from here on, a crash is the submitted file's doing
    try:
        submitted = load_submitted_model(path)
    except Exception as error:  # anything a broken or unsafe file raises
        message = " ".join(str(error).split())[:400]
        return {"ok": False, "reason": f"{path.name} could not be loaded with safe_mode=True "
                                       f"({type(error).__name__}: {message})"}
    if not isinstance(submitted, keras.Model):
        return {"ok": False, "reason": f"{path.name} holds a {type(submitted).__name__}, "
                                       "not a model"}
    keras.config.set_dtype_policy("float32")
    reference = REFERENCE_ARCHITECTURES[architecture]()
    try:
        copied = copied_from_shipped([weight.numpy() for weight in submitted.weights],
                                     shipped_models)
        problems = ([] if copied else load_weights_by_name(reference, submitted))
    except Exception as error:  # a model whose weights cannot be read
        copied, problems = None, [f"its weights could not be read ({type(error).__name__}: "
                                  f"{' '.join(str(error).split())[:300]})"]
    if copied:
        return {"ok": False, "reason": f"{path.name} is refused: {copied}"}
    if problems:
        return {"ok": False, "reason": f"{path.name} is not the {architecture} asked for: "
                                       + "; ".join(problems)}
    if test_images is not None:
        x_test, y_test = load_test_images(test_images)
    else:
        _, (x_test, y_test) = load_cifar10()
    try:
        _, (x_val, y_val) = load_training_split()
    except (FileNotFoundError, ValueError):  # no training images here: no check against them
        x_val, y_val = None, []
    return {"ok": True, "accuracy": _accuracy(reference, x_test, y_test, batch_size),
            "test_images": int(len(y_test)),
            "validation_accuracy": None if x_val is None else _accuracy(reference, x_val, y_val,
                                                                        batch_size),
            "validation_images": int(len(y_val)),
            "signature": function_signature(reference, x_test[:PROBE_IMAGES])}


LOADING_MARK = "cnnbook.grading.accuracy: loading the submitted model"
"""What the child prints just before it loads the submitted file: a child that dies after it (a
file that crashes Keras, exhausts memory or hangs) costs the student the points, one that dies
before it is the grader's own failure."""
