"""Grading the course: the check the assignments' tests share, and the accuracy grader.

* :func:`check_written_here` -- used by the tests of ``solutions/*/*.ipynb``: an answer must be a
  function written in the student's notebook that uses no reference code of ``cnnbook``.
* ``python -m cnnbook.grade accuracy ASSIGNMENT`` -- grades the trained model of every submission
  of ``ASSIGNMENT`` (``submitted/<student>/<ASSIGNMENT>/<model_file>``) into nbgrader's gradebook:
  each model is loaded with ``safe_mode=True`` in its own process, checked for the architecture the
  assignment asks for, evaluated on the 10,000 CIFAR-10 test images, and its accuracy earns the
  points of the highest tier it reaches. A missing, unloadable or wrong model earns zero; the
  reason goes into the cell's comment, which ``nbgrader generate_feedback`` shows to the student.
  Settings (model file, grade cell, architecture, tiers per training set) come from
  ``c.AccuracyGrader`` in ``nbgrader_config.py``; ``solutions/README.md`` gives the commands.
* ``python -m cnnbook.grade evaluate MODEL.keras`` -- what the accuracy grader runs in each child
  process: loads, checks and evaluates one model and prints a JSON line.

Importing this module is cheap (it does not import TensorFlow or nbgrader): the assignments'
tests import :func:`check_written_here` from it.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import types
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "check_written_here",
    "load_course_config",
    "checked_tiers",
    "AccuracyRule",
    "accuracy_rule",
    "points_for",
    "inspect_model",
    "evaluate_model",
    "grade_accuracy",
    "main",
]

# Packages whose code an answer must not call: the reference implementations of the course.
_REFERENCE_PACKAGES = ("cnnbook",)


def _code_objects(code: types.CodeType):
    """``code`` and every code object nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _package_of(value) -> str:
    """Top-level package an object comes from (``""`` when it does not say)."""
    if isinstance(value, types.ModuleType):
        module = value.__name__
    else:
        try:
            module = getattr(value, "__module__", None) or ""
        except Exception:  # an object whose attribute lookup itself fails says nothing
            module = ""
    return module.split(".")[0] if isinstance(module, str) else ""


def _is_notebook_function(value) -> bool:
    return isinstance(value, types.FunctionType) and value.__module__ == "__main__"


def check_written_here(
    function, *, may_use: Iterable[str] = (), forbid: Iterable[str] = ()
) -> None:
    """Assert that ``function`` is the student's own: defined in the notebook (module
    ``__main__``), and neither it nor any notebook function it calls refers to an object of
    ``cnnbook`` (or of the packages in ``forbid``, e.g. ``("keras",)`` for a rule that must be
    computed, not read off a layer), except the global names listed in ``may_use`` (what the
    assignment hands out, e.g. ``image_input``).

    The check reads the names the compiled code looks up (``co_names`` of the function and of the
    code nested in it) and resolves them in the function's globals, so it catches
    ``cnnbook.sizing.conv_output_size(...)``, ``from cnnbook.sizing import conv_output_size as f``
    then ``f(...)``, and a wrapper calling either. It is a guard against handing in the reference
    code, not a sandbox.

    Raises ``AssertionError`` with a message for the student; ``ValueError`` when ``function`` is
    not callable.
    """
    if not callable(function):
        raise ValueError(f"function must be a function defined in the notebook, got {function!r}")
    name = getattr(function, "__name__", repr(function))
    if not _is_notebook_function(function):
        raise AssertionError(
            f"{name} must be a function defined in this notebook with `def`, but it comes from "
            f"{getattr(function, '__module__', None) or type(function).__name__!r}: write your own"
        )
    allowed = set(may_use)
    forbidden = set(_REFERENCE_PACKAGES) | set(forbid)
    to_visit, seen, uses = [function], set(), []
    while to_visit:
        current = to_visit.pop()
        if current in seen:
            continue
        seen.add(current)
        for code in _code_objects(current.__code__):
            for global_name in code.co_names:
                if global_name not in current.__globals__ or global_name in allowed:
                    continue
                value = current.__globals__[global_name]
                if _is_notebook_function(value):
                    to_visit.append(value)
                elif _package_of(value) in forbidden:
                    uses.append(f"{current.__name__} uses {global_name} ({_package_of(value)})")
    if uses:
        raise AssertionError(
            f"{name} must be your own code, without {' or '.join(sorted(forbidden))}: "
            + "; ".join(sorted(set(uses)))
        )


# --- The accuracy grader -------------------------------------------------------------------------

EVALUATION_TIMEOUT_S = 600
"""Seconds one child process may take to load, check and evaluate a model."""


@dataclass(frozen=True)
class AccuracyRule:
    """How ``python -m cnnbook.grade accuracy`` grades one assignment (from ``nbgrader_config.py``).

    ``tiers`` are ``(threshold, points)`` pairs, highest threshold first: an accuracy of at least
    ``threshold`` (a fraction of the test images) earns ``points``; below every threshold, zero.
    """

    assignment: str
    notebook: str
    grade_id: str
    model_file: str
    trainable_params: int
    residual_additions: int
    training_set: str
    tiers: tuple[tuple[float, float], ...]

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
    if any(lower[1] > higher[1] for higher, lower in zip(pairs, pairs[1:])):
        raise ValueError(f"{where}: a higher threshold must not earn fewer points, got {pairs}")
    return tuple(pairs)


def points_for(accuracy: float, tiers: Sequence[tuple[float, float]]) -> float:
    """Points of the highest tier whose threshold ``accuracy`` reaches (0 below every tier)."""
    return max((points for threshold, points in tiers if accuracy >= threshold), default=0.0)


def load_course_config(root: Path):
    """The traitlets ``Config`` of ``root/nbgrader_config.py`` (what nbgrader itself reads)."""
    from traitlets.config.loader import PyFileConfigLoader

    if not (root / "nbgrader_config.py").is_file():
        raise FileNotFoundError(
            f"{root} has no nbgrader_config.py: run from the course root or pass --root"
        )
    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


def accuracy_rule(config, assignment: str, training_set: str | None = None) -> AccuracyRule:
    """The :class:`AccuracyRule` of ``assignment`` in ``config.AccuracyGrader``: its
    ``assignments[assignment]`` entry (``model_file``, ``grade_id``, ``trainable_params``,
    ``residual_additions``, ``tiers`` per training set, optional ``notebook``, default the
    assignment id) and the tiers of ``training_set`` (default ``AccuracyGrader.training_set``)."""
    settings = config.AccuracyGrader
    assignments = dict(settings.get("assignments", {}))
    if assignment not in assignments:
        raise ValueError(
            f"assignment {assignment!r} has no accuracy grading in nbgrader_config.py; "
            f"c.AccuracyGrader.assignments names {sorted(assignments) or 'none'}"
        )
    entry = assignments[assignment]
    training_set = training_set or settings.get("training_set")
    tiers_by_set = entry.get("tiers", {})
    if training_set not in tiers_by_set:
        raise ValueError(
            f"training set {training_set!r} has no tiers for {assignment!r}; choose one of "
            f"{sorted(tiers_by_set)} (--training-set or c.AccuracyGrader.training_set)"
        )
    missing = [key for key in ("model_file", "grade_id", "trainable_params", "residual_additions")
               if key not in entry]
    if missing:
        raise ValueError(
            f"c.AccuracyGrader.assignments[{assignment!r}] lacks {', '.join(missing)}"
        )
    return AccuracyRule(
        assignment=assignment,
        notebook=entry.get("notebook", assignment),
        grade_id=entry["grade_id"],
        model_file=entry["model_file"],
        trainable_params=int(entry["trainable_params"]),
        residual_additions=int(entry["residual_additions"]),
        training_set=training_set,
        tiers=checked_tiers(tiers_by_set[training_set], f"tiers[{training_set!r}]"),
    )


def _all_layers(model):
    """Every layer of ``model``, descending into nested models (blocks built as sub-models)."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def inspect_model(model, trainable_params: int, residual_additions: int) -> list[str]:
    """Why ``model`` is not the network asked for (an empty list when it is): raw 32x32x3 images
    in, 10 logits out, a ``Normalization`` layer (the notebook's, so raw images work),
    ``residual_additions`` ``Add`` layers and exactly ``trainable_params`` trainable parameters."""
    import keras

    problems = []
    input_shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    if input_shape != (32, 32, 3):
        problems.append(f"it takes inputs of shape {input_shape}, not one 32x32x3 image batch")
    output_shape = tuple(model.outputs[0].shape[1:]) if len(model.outputs) == 1 else None
    if output_shape != (10,):
        problems.append(f"it outputs shape {output_shape}, not 10 class scores")
    layers = list(_all_layers(model))
    if not any(isinstance(layer, keras.layers.Normalization) for layer in layers):
        problems.append("it has no Normalization layer: start from the notebook's "
                        "image_input() and normalization_layer()")
    additions = sum(isinstance(layer, keras.layers.Add) for layer in layers)
    if additions != residual_additions:
        problems.append(f"it has {additions} Add layers, a ResNet-20 has {residual_additions} "
                        "(one per residual block)")
    trainable = sum(math.prod(weight.shape) for weight in model.trainable_weights)
    if trainable != trainable_params:
        problems.append(f"it has {trainable:,} trainable parameters, the assignment's ResNet-20 "
                        f"has {trainable_params:,}")
    return problems


def evaluate_model(path: Path, trainable_params: int, residual_additions: int,
                   batch_size: int = 500) -> dict:
    """Load ``path`` with ``safe_mode=True``, check it with :func:`inspect_model` and measure its
    accuracy on the test images of :func:`cnnbook.data.load_cifar10`.

    Returns ``{"ok": True, "accuracy": a, "test_images": n}`` or ``{"ok": False, "reason": ...}``;
    what the ``evaluate`` command prints as JSON in the grader's child process.
    """
    import numpy as np

    import cnnbook.layers  # noqa: F401 (registers the course's custom layers for loading)
    import keras

    from cnnbook.data import load_cifar10

    path = Path(path)
    if not path.is_file():
        return {"ok": False, "reason": f"there is no {path.name} in the submission"}
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # anything a broken or unsafe file raises
        message = " ".join(str(error).split())[:400]
        return {"ok": False, "reason": f"{path.name} could not be loaded with safe_mode=True "
                                       f"({type(error).__name__}: {message})"}
    if not isinstance(model, keras.Model):
        return {"ok": False, "reason": f"{path.name} holds a {type(model).__name__}, not a model"}
    try:
        problems = inspect_model(model, trainable_params, residual_additions)
    except Exception as error:  # a model without the usual inputs/outputs/layers
        problems = [f"its structure could not be read ({type(error).__name__}: {error})"]
    if problems:
        return {"ok": False, "reason": f"{path.name} is not the ResNet-20 asked for: "
                                       + "; ".join(problems)}
    _, (x_test, y_test) = load_cifar10()
    correct = 0
    for start in range(0, len(y_test), batch_size):
        logits = np.asarray(model(x_test[start : start + batch_size], training=False))
        correct += int(np.sum(np.argmax(logits, axis=-1) == y_test[start : start + batch_size]))
    return {"ok": True, "accuracy": correct / len(y_test), "test_images": int(len(y_test))}


def _evaluate_in_child(path: Path, rule: AccuracyRule, timeout: float) -> dict:
    """:func:`evaluate_model` in a fresh Python process, so that a model that crashes, hangs or
    exhausts memory costs only its own grade, and no model's custom objects leak into the next."""
    if not path.is_file():
        return {"ok": False, "reason": f"there is no {rule.model_file} in the submission"}
    command = [sys.executable, "-m", "cnnbook.grade", "evaluate", str(path),
               "--trainable-params", str(rule.trainable_params),
               "--residual-additions", str(rule.residual_additions)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"evaluating {path.name} took more than {timeout:.0f} s"}
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    tail = " ".join(result.stderr.split()[-40:])
    return {"ok": False, "reason": f"evaluating {path.name} failed (exit code "
                                   f"{result.returncode}): {tail[-400:]}"}


def _comment(rule: AccuracyRule, outcome: dict, points: float) -> str:
    tiers = ", ".join(f"{threshold:.0%}: {points:g}" for threshold, points in rule.tiers)
    if not outcome["ok"]:
        return (f"Accuracy grade: 0 of {rule.max_points:g} points. {outcome['reason']}. "
                f"(Tiers for {rule.training_set}: {tiers}.)")
    return (f"Accuracy grade: {points:g} of {rule.max_points:g} points for a test accuracy of "
            f"{outcome['accuracy']:.2%} on {outcome['test_images']:,} CIFAR-10 test images "
            f"(tiers for {rule.training_set}: {tiers}).")


def _submitted_students(coursedir, assignment: str) -> list[str]:
    folder = Path(coursedir.root) / coursedir.submitted_directory
    if not folder.is_dir():
        return []
    return sorted(student.name for student in folder.iterdir()
                  if (student / assignment).is_dir())


def grade_accuracy(root: Path, assignment: str, training_set: str | None = None,
                   students: Sequence[str] = (), jobs: int = 1,
                   timeout: float = EVALUATION_TIMEOUT_S) -> list[dict]:
    """Grade the saved model of every submission of ``assignment`` (or of ``students``) under
    ``root`` and write points and comments into the gradebook; return one row per student
    (``student``, ``points``, ``accuracy`` or ``None``, ``comment``).

    The points go to the ``grade_id`` task cell as its manual score (autograding never touches a
    task cell's score, so re-running ``nbgrader autograde`` keeps them; a grader may still
    override them in formgrader), the explanation to the cell's comment, which the feedback
    shows. A submission that nbgrader has not seen yet is created in the gradebook first.
    """
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.coursedir import CourseDirectory

    root = Path(root).resolve()
    config = load_course_config(root)
    rule = accuracy_rule(config, assignment, training_set)
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

    def evaluate(student: str) -> dict:
        folder = Path(coursedir.format_path(coursedir.submitted_directory, student, assignment))
        return _evaluate_in_child(folder / rule.model_file, rule, timeout)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(evaluate, chosen))

    rows = []
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        for student, outcome in zip(chosen, outcomes):
            points = points_for(outcome["accuracy"], rule.tiers) if outcome["ok"] else 0.0
            comment_text = _comment(rule, outcome, points)
            gradebook.update_or_create_student(student)
            try:
                gradebook.find_submission(assignment, student)
            except MissingEntry:
                gradebook.add_submission(assignment, student)
            grade = gradebook.find_grade(rule.grade_id, rule.notebook, assignment, student)
            grade.manual_score = points
            grade.needs_manual_grade = False
            comment = gradebook.find_comment(rule.grade_id, rule.notebook, assignment, student)
            comment.manual_comment = comment_text
            gradebook.db.commit()
            rows.append({"student": student, "points": points,
                         "accuracy": outcome.get("accuracy"), "comment": comment_text})
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbook.grade",
        description="Grade the trained models of an assignment into nbgrader's gradebook.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    accuracy = commands.add_parser(
        "accuracy", help="grade every submitted model of ASSIGNMENT (run from the course root)")
    accuracy.add_argument("assignment", help="assignment id, e.g. resnet")
    accuracy.add_argument("--training-set", help="which tiers of nbgrader_config.py apply "
                          "(default: c.AccuracyGrader.training_set)")
    accuracy.add_argument("--student", action="append", default=[],
                          help="grade only this student (repeatable; default: every submission)")
    accuracy.add_argument("--jobs", type=int, default=1,
                          help="models evaluated at the same time, each in its own process")
    accuracy.add_argument("--timeout", type=float, default=EVALUATION_TIMEOUT_S,
                          help="seconds one model may take (default %(default)s)")
    accuracy.add_argument("--root", type=Path, default=Path.cwd(),
                          help="course root, the folder of nbgrader_config.py (default: here)")
    evaluate = commands.add_parser(
        "evaluate", help="load, check and evaluate one model; print the outcome as JSON")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("--trainable-params", type=int, required=True)
    evaluate.add_argument("--residual-additions", type=int, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "evaluate":
        outcome = evaluate_model(arguments.model, arguments.trainable_params,
                                 arguments.residual_additions)
        print(json.dumps(outcome), flush=True)
        return 0
    rows = grade_accuracy(arguments.root, arguments.assignment, arguments.training_set,
                          arguments.student, arguments.jobs, arguments.timeout)
    for row in rows:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.2%}"
        print(f"{row['student']}\t{row['points']:g}\t{accuracy}\t{row['comment']}")
    print(f"graded {len(rows)} submission(s) of {arguments.assignment}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
