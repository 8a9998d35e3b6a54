"""``python -m cnnbook.grading COMMAND``: the grader's command line.

* ``accuracy ASSIGNMENT --training-set SET``: grade every submitted model of an assignment into
  nbgrader's gradebook (:func:`cnnbook.grading.accuracy.grade_accuracy`);
* ``evaluate MODEL --architecture NAME``: load, check and evaluate one model and print the outcome
  as JSON (what each sandboxed child of ``accuracy`` runs);
* ``deferred ASSIGNMENT``: list the test cells that ``nbgrader autograde`` left for manual grading
  (a grader limit or failure, never a student's 0); exit status 2 while any waits, for scripts
  (:func:`cnnbook.grading.nbgrader_steps.deferred_in_gradebook`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cnnbook.grading.accuracy import EVALUATION_TIMEOUT_S, grade_accuracy
from cnnbook.grading.evaluation import FUNCTION_COPY_CORRELATION, PROBE_IMAGES, evaluate_model
from cnnbook.grading.reference_networks import REFERENCE_ARCHITECTURES
from cnnbook.grading.tiers import load_course_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbook.grading",
        description="The cnnbook course's grader: the accuracy of trained models, and the test "
        "cells nbgrader autograde left for manual grading.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    accuracy = commands.add_parser(
        "accuracy", help="grade every submitted model of ASSIGNMENT (run from the course root)")
    accuracy.add_argument("assignment", help="assignment id, e.g. resnet, or the entry of one "
                          "of its models, e.g. architectures-plain")
    accuracy.add_argument("--training-set", help="which tiers of nbgrader_config.py apply; "
                          "required unless c.AccuracyGrader.training_set names it")
    accuracy.add_argument("--accept-unmeasured-tiers", action="store_true",
                          help="grade with tiers that no reference run measured (source None)")
    accuracy.add_argument("--student", action="append", default=[],
                          help="grade only this student (repeatable; default: every submission)")
    accuracy.add_argument("--jobs", type=int, default=1,
                          help="models evaluated at the same time, each in its own process")
    accuracy.add_argument("--timeout", type=float, default=EVALUATION_TIMEOUT_S,
                          help="seconds one model may take (default %(default)s)")
    accuracy.add_argument("--test-images", type=Path,
                          help="an .npz file of your own images (x_test, y_test) to measure on "
                          "instead of CIFAR-10's public test images")
    accuracy.add_argument("--root", type=Path, default=Path.cwd(),
                          help="course root, the folder of nbgrader_config.py (default: here)")
    evaluate = commands.add_parser(
        "evaluate", help="load, check and evaluate one model; print the outcome as JSON")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("--architecture", required=True, choices=sorted(REFERENCE_ARCHITECTURES))
    evaluate.add_argument("--shipped", action="append", default=[],
                          help="a .keras file the course ships, which the model must not copy")
    evaluate.add_argument("--test-images", type=Path,
                          help="an .npz file of private test images (x_test, y_test)")
    deferred = commands.add_parser(
        "deferred", help="list the test cells nbgrader autograde left for manual grading "
        "(exit status 2 while any waits)")
    deferred.add_argument("assignment", help="assignment id, e.g. resnet")
    deferred.add_argument("--root", type=Path, default=Path.cwd(),
                          help="course root, the folder of nbgrader_config.py (default: here)")
    return parser


def _deferred(root: Path, assignment: str) -> int:
    # nbgrader's gradebook and coursedir load only for this command: the sandboxed `evaluate`
    # children start from this module too, and need neither
    from nbgrader.coursedir import CourseDirectory  # see above

    from cnnbook.grading.nbgrader_steps import deferred_in_gradebook  # see above

    try:
        config = load_course_config(root)
        db_url = CourseDirectory(config=config, root=str(root)).db_url
        cells = deferred_in_gradebook(db_url, assignment)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    for student, notebook, grade_id in cells:
        print(f"{student}/{assignment}/{notebook} {grade_id}")
    print(f"{len(cells)} test cell(s) of {assignment} wait for manual grading (the reason is "
          "written under each cell in autograded/; grade them in formgrader, or fix the cause "
          "and autograde again with --force)" if cells else
          f"no test cell of {assignment} waits for manual grading")
    return 2 if cells else 0


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "deferred":
        return _deferred(arguments.root, arguments.assignment)
    if arguments.command == "evaluate":
        outcome = evaluate_model(arguments.model, arguments.architecture, arguments.shipped,
                                 test_images=arguments.test_images)
        print(json.dumps(outcome), flush=True)
        return 0
    try:
        rows = grade_accuracy(arguments.root, arguments.assignment, arguments.training_set,
                              arguments.student, arguments.jobs, arguments.timeout,
                              arguments.accept_unmeasured_tiers, arguments.test_images)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # the sandbox is unavailable, or the grader failed on someone
        print(f"error: {error}", file=sys.stderr)
        return 3
    for row in rows:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.2%}"
        print(f"{row['student']}\t{row['points']:g}\t{accuracy}\t{row['comment']}")
    print(f"graded {len(rows)} submission(s) of {arguments.assignment}")
    groups = sorted({tuple(sorted([row["student"], *row["same_function_as"]]))
                     for row in rows if row["same_function_as"]})
    for group in groups:
        print(f"same function (logits on {PROBE_IMAGES} test images correlate >= "
              f"{FUNCTION_COPY_CORRELATION}): {', '.join(group)} -- a report for the instructor, "
              "not a grade")
    for row in rows:
        if row["flagged"]:
            print(f"{row['student']}: better on the test images than on the validation images "
                  "by more than sampling explains (has the network seen the test images?) -- "
                  "left for an instructor to review in formgrader")
    return 0


if __name__ == "__main__":
    sys.exit(main())
