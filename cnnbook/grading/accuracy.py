"""The accuracy grader: grades the trained network of every submission into nbgrader's gradebook
(``python -m cnnbook.grading accuracy ASSIGNMENT --training-set SET``).

It reads the assignment's rule (:mod:`cnnbook.grading.tiers`: model file, grade cell, reference
architecture, tiers), evaluates each submitted model in a sandboxed child process of its own
(``python -m cnnbook.grading evaluate``, :mod:`cnnbook.grading.evaluation`: ``safe_mode=True``,
no copy of a shipped model, the student's weights in the grader's own network, the 10,000 CIFAR-10
test images that students' notebooks never load, or the instructor's private images with
``--test-images``), and writes the points of the highest tier reached and the reason into the
gradebook: the cell's comment, which ``nbgrader generate_feedback`` shows to the student. A child
that dies after it started loading the student's file costs the student the points; one that
fails before is the grader's own failure, never recorded as a zero. Groups of submissions that
compute (nearly) the same function are reported to the instructor, and a network that does
better on the test images than on its validation images is left for review.
``solutions/README.md`` gives the commands; the command line is :mod:`cnnbook.grading.__main__`.

Importing this module is cheap (it does not import TensorFlow or nbgrader).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cnnbook.course.data import load_test_images
from cnnbook.grading.evaluation import LOADING_MARK, copy_groups, seen_test_images
from cnnbook.grading.sandbox import require_sandbox, run_sandboxed
from cnnbook.grading.settings import GradingSandbox
from cnnbook.grading.similarity import record_same_function
from cnnbook.grading.tiers import (
    AccuracyRule,
    accuracy_rule,
    load_course_config,
    points_for,
    unmatched_shipped_warnings,
)

__all__ = ["grade_accuracy", "EVALUATION_TIMEOUT_S"]

# --- The accuracy grader --------------------------------------------------------------------------

EVALUATION_TIMEOUT_S = 600
"""Seconds one child process may take to load, check and evaluate a model."""


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
    allows (:func:`~cnnbook.grading.evaluation.seen_test_images`)."""
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


ACCURACY_IN_COMMENT = re.compile(r"^Accuracy grade: [0-9.]+ of [0-9.]+ points for a test accuracy "
                                 r"of ([0-9]+\.[0-9]{2})% on ")
"""How :func:`_comment` states a measured accuracy (what the leaderboard reads back)."""


def accuracy_in_comment(comment: str | None) -> float | None:
    """The test accuracy (a fraction) that the grader's comment on an accuracy task states, or
    ``None`` when the comment states none (no network, a failed check, an edited comment)."""
    match = ACCURACY_IN_COMMENT.match(comment or "")
    return float(match.group(1)) / 100 if match else None


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
    other students whose networks compute (nearly) the same function,
    :func:`~cnnbook.grading.evaluation.copy_groups`; ``flagged``: the test accuracy is higher
    than the validation accuracy allows, :func:`~cnnbook.grading.evaluation.seen_test_images`,
    and the grade waits for an instructor). With ``test_images`` (an ``.npz`` of the
    instructor's own images, :func:`cnnbook.course.data.load_test_images`) the accuracy is
    measured there instead of on CIFAR-10's public test images.

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
    entry, assignment = assignment, rule.assignment  # an entry may grade one of its models
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
    if not students:  # a whole class graded: the similarity report lists these groups
        record_same_function(root, entry, [list(group) for group in groups])  # even none
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
