"""The accuracy grader: grades the trained network of every submission into nbgrader's gradebook.

* ``python -m cnnbook.grading accuracy ASSIGNMENT --training-set SET`` -- grades the trained model
  of every submission of ``ASSIGNMENT`` (``submitted/<student>/<ASSIGNMENT>/<model_file>``) into
  nbgrader's gradebook. Each model is loaded with ``safe_mode=True`` in its own sandboxed process;
  a model that copies one the course ships is refused; the grader builds the reference
  architecture itself (:mod:`cnnbook.grading.reference_networks`) and loads only the student's
  weights into it, layer by layer by name and shape (a padded or altered model says which layers
  differ); that network is evaluated on the 10,000 CIFAR-10 test images, which students'
  notebooks never load (or on the instructor's private images, ``--test-images``), and its
  accuracy earns the points of the highest tier it reaches. A missing, unloadable or wrong model
  earns zero; the reason goes into the cell's comment, which ``nbgrader generate_feedback`` shows
  to the student. Groups of submissions that compute (nearly) the same function are printed for
  the instructor, and a network that does better on the test images than on its validation
  images is left for review. Settings (model file, grade cell, architecture, tiers per training
  set with their measured source, shipped models) come from ``c.AccuracyGrader`` in
  ``nbgrader_config.py``; ``solutions/README.md`` gives the commands.
* ``python -m cnnbook.grading evaluate MODEL.keras`` -- what the accuracy grader runs in each child
  process: loads, checks and evaluates one model and prints a JSON line.

The command line itself is :mod:`cnnbook.grading.__main__`.

Importing this module is cheap (it does not import TensorFlow or nbgrader).
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from traitlets.config.loader import PyFileConfigLoader

from cnnbook.course.data import load_cifar10, load_test_images, load_training_split
from cnnbook.grading.reference_networks import REFERENCE_ARCHITECTURES
from cnnbook.grading.sandbox import require_sandbox, run_sandboxed
from cnnbook.grading.settings import GradingSandbox
from cnnbook.training.metrics import top1_correct

__all__ = [
    "load_course_config",
    "checked_tiers",
    "AccuracyRule",
    "accuracy_rule",
    "points_for",
    "load_submitted_model",
    "load_weights_by_name",
    "copied_from_shipped",
    "function_signature",
    "copy_groups",
    "seen_test_images",
    "evaluate_model",
    "grade_accuracy",
]

# --- The accuracy grader --------------------------------------------------------------------------

EVALUATION_TIMEOUT_S = 600
"""Seconds one child process may take to load, check and evaluate a model."""

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


@dataclass(frozen=True)
class AccuracyRule:
    """How ``python -m cnnbook.grading accuracy`` grades one assignment (from
    ``nbgrader_config.py``).

    ``architecture`` names the reference network of
    :data:`~cnnbook.grading.reference_networks.REFERENCE_ARCHITECTURES` that the
    grader builds itself and loads the submitted weights into. ``tiers`` are ``(threshold,
    points)`` pairs, highest threshold first: an accuracy of at least ``threshold`` (a fraction of
    the test images) earns ``points``; below every threshold, zero. ``tiers_source`` says which
    measured reference run the tiers come from (``None``: not measured). ``shipped_models`` are
    the ``.keras`` files the course ships (paths), which a submission must not copy;
    ``unmatched_shipped_patterns`` the patterns of ``c.AccuracyGrader.shipped_models`` that matched
    no file (for those, the copy check compares nothing: the grader warns).
    """

    assignment: str
    notebook: str
    grade_id: str
    model_file: str
    architecture: str
    training_set: str
    tiers: tuple[tuple[float, float], ...]
    tiers_source: str | None = None
    shipped_models: tuple[str, ...] = ()
    unmatched_shipped_patterns: tuple[str, ...] = ()

    @property
    def max_points(self) -> float:
        return max(points for _, points in self.tiers)


def checked_tiers(tiers, where: str) -> tuple[tuple[float, float], ...]:
    """``tiers`` as ``((threshold, points), ...)`` sorted by threshold, highest first; raises
    ``ValueError`` (naming ``where``) unless every threshold is in (0, 1], every points value is
    >= 0 and a higher threshold never earns fewer points."""
    pairs = []
    for tier in tiers:
        try:
            threshold, points = (float(value) for value in tier)
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: every tier must be a pair [threshold, points], got {tier!r}"
            ) from None
        if not 0 < threshold <= 1 or points < 0:
            raise ValueError(
                f"{where}: a threshold is an accuracy in (0, 1] and points are >= 0, got "
                f"{tier!r}; write e.g. [0.9, 4] for 'at least 90% earns 4 points'"
            )
        pairs.append((threshold, points))
    if not pairs:
        raise ValueError(f"{where}: give at least one tier [threshold, points]")
    pairs.sort(reverse=True)
    if any(lower[1] > higher[1] for higher, lower in zip(pairs, pairs[1:], strict=False)):
        raise ValueError(f"{where}: a higher threshold must not earn fewer points, got {pairs}")
    return tuple(pairs)


def points_for(accuracy: float, tiers: Sequence[tuple[float, float]]) -> float:
    """Points of the highest tier whose threshold ``accuracy`` reaches (0 below every tier)."""
    return max((points for threshold, points in tiers if accuracy >= threshold), default=0.0)


def load_course_config(root: Path):
    """The traitlets ``Config`` of ``root/nbgrader_config.py`` (what nbgrader itself reads)."""
    if not (root / "nbgrader_config.py").is_file():
        raise FileNotFoundError(
            f"{root} has no nbgrader_config.py: run from the course root or pass --root"
        )
    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


def accuracy_rule(config, assignment: str, training_set: str | None = None,
                  root: Path | None = None, accept_unmeasured: bool = False) -> AccuracyRule:
    """The :class:`AccuracyRule` of ``assignment`` in ``config.AccuracyGrader``.

    Its ``assignments[assignment]`` entry holds ``model_file``, ``grade_id``, ``architecture``
    (a key of :data:`~cnnbook.grading.reference_networks.REFERENCE_ARCHITECTURES`), optional
    ``notebook`` (default: the assignment
    id; an assignment that grades several models has one entry per model, keyed e.g.
    ``architectures-plain``, whose ``assignment`` names the nbgrader assignment) and ``tiers``: per
    training set, ``{"tiers": [[threshold, points], ...], "source": ...}``
    where ``source`` describes the measured reference run (command, budget, accuracy) or is
    ``None`` while nobody has measured it. ``training_set`` must be given, here (the command's
    ``--training-set``) or as ``c.AccuracyGrader.training_set``: tiers only mean something for
    the data the class trained on. Tiers without a source are refused unless
    ``accept_unmeasured``. ``c.AccuracyGrader.shipped_models`` lists glob patterns (relative to
    ``root``) of the models the course ships.
    """
    settings = config.AccuracyGrader
    assignments = dict(settings.get("assignments", {}))
    if assignment not in assignments:
        raise ValueError(
            f"assignment {assignment!r} has no accuracy grading in nbgrader_config.py; "
            f"c.AccuracyGrader.assignments names {sorted(assignments) or 'none'}"
        )
    entry = assignments[assignment]
    tiers_by_set = entry.get("tiers", {})
    training_set = training_set or settings.get("training_set")
    if not training_set:
        raise ValueError(
            f"name the data the class trained {assignment!r} on: --training-set "
            f"{' or --training-set '.join(sorted(tiers_by_set))} (or set "
            "c.AccuracyGrader.training_set in nbgrader_config.py); the tiers of one set mean "
            "nothing for another"
        )
    if training_set not in tiers_by_set:
        raise ValueError(
            f"training set {training_set!r} has no tiers for {assignment!r}; choose one of "
            f"{sorted(tiers_by_set)} (--training-set or c.AccuracyGrader.training_set)"
        )
    missing = [key for key in ("model_file", "grade_id", "architecture") if key not in entry]
    if missing:
        raise ValueError(
            f"c.AccuracyGrader.assignments[{assignment!r}] lacks {', '.join(missing)}"
        )
    if entry["architecture"] not in REFERENCE_ARCHITECTURES:
        raise ValueError(
            f"c.AccuracyGrader.assignments[{assignment!r}]['architecture'] is "
            f"{entry['architecture']!r}; the grader knows {sorted(REFERENCE_ARCHITECTURES)}"
        )
    tier_set = tiers_by_set[training_set]
    if not isinstance(tier_set, dict) or "tiers" not in tier_set or "source" not in tier_set:
        raise ValueError(
            f"tiers[{training_set!r}] of {assignment!r} must be a dict "
            "{'tiers': [[threshold, points], ...], 'source': 'the measured reference run' or None}"
        )
    source = tier_set["source"]
    if source is None and not accept_unmeasured:
        raise ValueError(
            f"the tiers of {training_set!r} for {assignment!r} were never measured (source None in "
            "nbgrader_config.py): train the reference notebook on that data with the class's "
            "budget, set the tiers from its accuracy and record the run as their source, or pass "
            "--accept-unmeasured-tiers to grade with them anyway"
        )
    root = Path(root) if root is not None else Path.cwd()
    files_by_pattern = {pattern: [path for path in root.glob(pattern) if path.is_file()]
                        for pattern in settings.get("shipped_models", [])}
    shipped = sorted({str(path.resolve()) for paths in files_by_pattern.values() for path in paths})
    return AccuracyRule(
        assignment=entry.get("assignment", assignment),
        notebook=entry.get("notebook", entry.get("assignment", assignment)),
        grade_id=entry["grade_id"],
        model_file=entry["model_file"],
        architecture=entry["architecture"],
        training_set=training_set,
        tiers=checked_tiers(tier_set["tiers"], f"tiers[{training_set!r}]"),
        tiers_source=source,
        shipped_models=tuple(shipped),
        unmatched_shipped_patterns=tuple(pattern for pattern, paths in files_by_pattern.items()
                                         if not paths),
    )


def unmatched_shipped_warnings(rule: AccuracyRule, root: Path) -> list[str]:
    """One warning line per pattern of ``c.AccuracyGrader.shipped_models`` that matched no file
    under ``root``: the instructor must know that the copy check is off for those models."""
    return [f"warning: c.AccuracyGrader.shipped_models pattern {pattern!r} matches no file under "
            f"{root}: submissions are not checked for copies of those models (build or restore "
            "them, or fix the pattern in nbgrader_config.py)"
            for pattern in rule.unmatched_shipped_patterns]



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


def _data_paths() -> list[Path]:
    """What the child reads besides the model files: the CIFAR-10 folder of ``CNNBOOK_DATA``, or
    Keras' own cache when the variable is not set."""
    folder = os.environ.get("CNNBOOK_DATA")
    if folder:
        return [Path(folder).expanduser()] if Path(folder).expanduser().exists() else []
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return [keras_home] if keras_home.exists() else []


def _evaluation_command(path: Path, rule: AccuracyRule, test_images: Path | None = None
                        ) -> list[str]:
    command = [sys.executable, "-m", "cnnbook.grading", "evaluate", str(Path(path).resolve()),
               "--architecture", rule.architecture]
    for shipped in rule.shipped_models:
        command += ["--shipped", shipped]
    if test_images is not None:
        command += ["--test-images", str(Path(test_images).resolve())]
    return command


def _evaluate_in_child(path: Path, rule: AccuracyRule, timeout: float,
                       sandbox: GradingSandbox | None = None,
                       test_images: Path | None = None) -> dict:
    """:func:`evaluate_model` in a fresh Python process, so that a model that crashes, hangs or
    exhausts memory costs only its own grade, and no model's custom objects leak into the next.

    With ``sandbox.enabled`` the process runs under bubblewrap (:func:`cnnbook.grading.sandbox.
    run_sandboxed`): it reads the model, the shipped models and the data, writes only a private
    temporary folder, has no network, and is stopped at ``sandbox``'s memory and process limits.
    ``sandbox`` defaults to ``c.GradingSandbox``'s defaults.
    A child stopped by a limit, or that dies after it started loading the file
    (:data:`LOADING_MARK`), gives the student zero with the reason; one that dies before, or
    without a verdict, is the grader's failure: ``{"ok": None, ...}``, never recorded as a zero.
    """
    if not path.is_file():
        return {"ok": False, "reason": f"there is no {rule.model_file} in the submission"}
    command = _evaluation_command(path, rule, test_images)
    sandbox = sandbox or GradingSandbox()
    private = [Path(test_images).resolve()] if test_images is not None else []
    if sandbox.enabled:
        with tempfile.TemporaryDirectory(prefix="cnnbook-grade-") as scratch:
            result = run_sandboxed(
                command, writable_dir=scratch, timeout=timeout,
                readonly_paths=[path.resolve(), *map(Path, rule.shipped_models), *_data_paths(),
                                *private],
                max_memory_bytes=sandbox.memory_limit_mib * 2**20,
                max_processes=sandbox.max_processes)
        returncode, stdout, stderr, limit = (result.returncode, result.stdout, result.stderr,
                                             result.limit)
    else:
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "reason": f"evaluating {path.name} took more than {timeout:.0f} s"}
        returncode, stdout, stderr, limit = (completed.returncode, completed.stdout,
                                             completed.stderr, None)
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    if limit:
        return {"ok": False, "reason": f"evaluating {path.name} was stopped: {limit}"}
    tail = " ".join(stderr.split()[-40:])[-400:]
    if LOADING_MARK in stdout:
        return {"ok": False, "reason": f"evaluating {path.name} crashed while loading or "
                                       f"running it (exit code {returncode}): {tail}"}
    return {"ok": None, "reason": f"evaluating {path.name} failed (exit code {returncode}) "
                                  f"before it loaded the file: {tail}"}


def _flagged(outcome: dict) -> bool:
    """Whether an evaluated model did better on the test images than its validation accuracy
    allows (:func:`seen_test_images`)."""
    return bool(outcome.get("ok") and outcome.get("validation_accuracy") is not None
                and seen_test_images(outcome["accuracy"], outcome["test_images"],
                                     outcome["validation_accuracy"],
                                     outcome["validation_images"]))


def _comment(rule: AccuracyRule, outcome: dict, points: float, private: bool = False) -> str:
    tiers = ", ".join(f"{threshold:.0%}: {points:g}" for threshold, points in rule.tiers)
    if not outcome["ok"]:
        return (f"Accuracy grade: 0 of {rule.max_points:g} points. {outcome['reason']}. "
                f"(Tiers for {rule.training_set}: {tiers}.)")
    images = "images of the instructor's private test set" if private else (
        "held-out CIFAR-10 test images")
    text = (f"Accuracy grade: {points:g} of {rule.max_points:g} points for a test accuracy of "
            f"{outcome['accuracy']:.2%} on {outcome['test_images']:,} {images}, measured with "
            f"the grader's own {rule.architecture} holding your weights "
            f"(tiers for {rule.training_set}: {tiers}).")
    if outcome.get("validation_accuracy") is not None:
        text += (f" On the {outcome['validation_images']:,} validation images your notebook "
                 f"keeps apart it reaches {outcome['validation_accuracy']:.2%}.")
    if _flagged(outcome):
        text += (" The test accuracy is higher than the validation accuracy allows: a network "
                 "that has seen the test images does that. An instructor will review this "
                 "grade.")
    return text


def _submitted_students(coursedir, assignment: str) -> list[str]:
    folder = Path(coursedir.root) / coursedir.submitted_directory
    if not folder.is_dir():
        return []
    return sorted(student.name for student in folder.iterdir()
                  if (student / assignment).is_dir())


def grade_accuracy(root: Path, assignment: str, training_set: str | None = None,
                   students: Sequence[str] = (), jobs: int = 1,
                   timeout: float = EVALUATION_TIMEOUT_S,
                   accept_unmeasured: bool = False, test_images: Path | None = None
                   ) -> list[dict]:
    """Grade the saved model of every submission of ``assignment`` (or of ``students``) under
    ``root`` and write points and comments into the gradebook; return one row per student
    (``student``, ``points``, ``accuracy`` or ``None``, ``comment``, ``same_function_as``: the
    other students whose networks compute (nearly) the same function, :func:`copy_groups`;
    ``flagged``: the test accuracy is higher than the validation accuracy allows,
    :func:`seen_test_images`, and the grade waits for an instructor). With ``test_images`` (an
    ``.npz`` of the instructor's own images, :func:`cnnbook.course.data.load_test_images`) the
    accuracy
    is measured there instead of on CIFAR-10's public test images.

    The points go to the ``grade_id`` task cell as its manual score (autograding never touches a
    task cell's score, so re-running ``nbgrader autograde`` keeps them; a grader may still
    override them in formgrader), the explanation to the cell's comment, which the feedback
    shows. A submission that nbgrader has not seen yet is created in the gradebook first. A
    child process that dies without a verdict (the grader's failure) writes nothing for that
    student and raises ``RuntimeError`` at the end, naming them. Groups of copies are reported
    in the rows, never turned into points.

    Each model is evaluated in the bubblewrap sandbox of :mod:`cnnbook.grading.sandbox` with the
    limits
    of ``c.GradingSandbox``; where ``bwrap`` is missing or cannot run, nothing is graded and
    :class:`cnnbook.grading.sandbox.SandboxUnavailable` (a ``RuntimeError``) says how to install it
    or,
    knowingly, to set ``c.GradingSandbox.enabled = False``.
    """
    # nbgrader (SQLAlchemy, Jupyter) loads only here: the sandboxed `evaluate` children import
    # this module and never touch the gradebook
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.coursedir import CourseDirectory  # as above

    root = Path(root).resolve()
    config = load_course_config(root)
    rule = accuracy_rule(config, assignment, training_set, root, accept_unmeasured)
    for warning in unmatched_shipped_warnings(rule, root):
        print(warning, file=sys.stderr, flush=True)
    assignment = rule.assignment  # an entry may grade one of the models of an assignment
    sandbox = GradingSandbox(config=config)
    if sandbox.enabled:
        require_sandbox()  # SandboxUnavailable (bwrap missing or unusable) says what to do
    coursedir = CourseDirectory(config=config)
    coursedir.root = str(root)
    if jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs}")
    submitted = _submitted_students(coursedir, assignment)
    chosen = list(students) or submitted
    unknown = sorted(set(chosen) - set(submitted))
    if unknown:
        raise ValueError(f"no submission of {assignment!r} from {', '.join(unknown)} in "
                         f"{coursedir.submitted_directory}/; submitted: {submitted or 'nobody'}")

    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        try:
            cell = gradebook.find_task_cell(rule.grade_id, rule.notebook, assignment)
        except MissingEntry:
            raise ValueError(
                f"the gradebook has no task cell {rule.grade_id!r} in notebook {rule.notebook!r} "
                f"of {assignment!r}: run `nbgrader generate_assignment {assignment}` first, and "
                "check grade_id in nbgrader_config.py against the notebook"
            ) from None
        if abs(cell.max_score - rule.max_points) > 1e-9:
            raise ValueError(
                f"the best tier earns {rule.max_points:g} points but cell {rule.grade_id!r} is "
                f"worth {cell.max_score:g}: make the tiers in nbgrader_config.py and the cell's "
                "points agree"
            )

    if test_images is not None:

        load_test_images(test_images)  # a missing or malformed file stops here, grading nothing

    def evaluate(student: str) -> dict:
        folder = Path(coursedir.format_path(coursedir.submitted_directory, student, assignment))
        return _evaluate_in_child(folder / rule.model_file, rule, timeout, sandbox, test_images)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = dict(zip(chosen, pool.map(evaluate, chosen), strict=True))

    groups = copy_groups({student: outcome.get("signature") or []
                          for student, outcome in outcomes.items() if outcome.get("ok")})
    same_function = {student: [other for other in group if other != student]
                     for group in groups for student in group}
    rows, failed = [], []
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        for student, outcome in outcomes.items():
            if outcome["ok"] is None:
                failed.append(f"{student}: {outcome['reason']}")
                continue
            points = points_for(outcome["accuracy"], rule.tiers) if outcome["ok"] else 0.0
            comment_text = _comment(rule, outcome, points, private=test_images is not None)
            gradebook.update_or_create_student(student)
            try:
                gradebook.find_submission(assignment, student)
            except MissingEntry:
                gradebook.add_submission(assignment, student)
            grade = gradebook.find_grade(rule.grade_id, rule.notebook, assignment, student)
            grade.manual_score = points
            grade.needs_manual_grade = _flagged(outcome)
            comment = gradebook.find_comment(rule.grade_id, rule.notebook, assignment, student)
            comment.manual_comment = comment_text
            gradebook.db.commit()
            rows.append({"student": student, "points": points,
                         "accuracy": outcome.get("accuracy"), "comment": comment_text,
                         "same_function_as": same_function.get(student, []),
                         "flagged": _flagged(outcome)})
    if failed:
        raise RuntimeError(
            f"the grader could not evaluate {len(failed)} submission(s); nothing was recorded "
            "for them (fix the grader's environment and run again with --student):\n  "
            + "\n  ".join(failed))
    return rows
