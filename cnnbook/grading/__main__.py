"""``python -m cnnbook.grading COMMAND``: the grader's command line.

* ``accuracy ASSIGNMENT --training-set SET``: grade every submitted model of an assignment into
  nbgrader's gradebook (:func:`cnnbook.grading.accuracy.grade_accuracy`);
* ``evaluate MODEL --architecture NAME``: load, check and evaluate one model and print the outcome
  as JSON (what each sandboxed child of ``accuracy`` runs);
* ``deferred ASSIGNMENT``: list the test cells that ``nbgrader autograde`` left for manual grading
  (a grader limit or failure, never a student's 0); exit status 2 while any waits, for scripts
  (:func:`cnnbook.grading.nbgrader_steps.deferred_in_gradebook`);
* ``extend ASSIGNMENT STUDENT --days D --hours H``: give a student more time for an assignment in
  nbgrader's gradebook, which the late policy counts from
  (:func:`cnnbook.grading.late_policy.grant_extension`);
* ``similarity ASSIGNMENT``: pairs of students whose answer code is unusually alike, and networks
  that compute the same function: a report, never a grade
  (:mod:`cnnbook.grading.similarity`);
* ``leaderboard ENTRY --opt-in FILE``: an opt-in, pseudonymous leaderboard of an accuracy task
  from the gradebook (:mod:`cnnbook.grading.leaderboard`);
* ``autograde ASSIGNMENT --workers N`` (or ``--scheduler ADDRESS``): ``nbgrader autograde`` of a
  whole class in parallel shards, here or on a Dask cluster (:mod:`cnnbook.grading.parallel`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cnnbook.grading.accuracy import EVALUATION_TIMEOUT_S, grade_accuracy
from cnnbook.grading.evaluation import FUNCTION_COPY_CORRELATION, PROBE_IMAGES, evaluate_model
from cnnbook.grading.reference_networks import REFERENCE_ARCHITECTURES
from cnnbook.grading.tiers import load_course_config


def _add_root(command: argparse.ArgumentParser) -> None:
    command.add_argument("--root", type=Path, default=Path.cwd(),
                         help="course root, the folder of nbgrader_config.py (default: here)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbook.grading",
        description="The cnnbook course's grader: the accuracy of trained models, the test "
        "cells nbgrader autograde left for manual grading, extensions of due dates, the "
        "similarity report and a leaderboard.",
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
    _add_root(accuracy)
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
    _add_root(deferred)
    extend = commands.add_parser(
        "extend", help="give STUDENT more time for ASSIGNMENT (replaces an earlier extension; "
        "0 days and 0 hours removes it)")
    extend.add_argument("assignment", help="assignment id, e.g. sizing")
    extend.add_argument("student", help="the student's id (their hub user name)")
    extend.add_argument("--days", type=float, default=0.0)
    extend.add_argument("--hours", type=float, default=0.0)
    _add_root(extend)
    similarity = commands.add_parser(
        "similarity", help="report pairs of students whose answer code is unusually alike (and "
        "networks that compute the same function); changes no grade")
    similarity.add_argument("assignment", help="assignment id, e.g. sizing")
    similarity.add_argument("--threshold", type=float, default=0.5,
                            help="share of a student's code fingerprints found in another's "
                            "above which a pair is listed (default %(default)s)")
    similarity.add_argument("--noise-tokens", type=int, default=25,
                            help="shortest run of tokens that counts (default %(default)s)")
    _add_root(similarity)
    board = commands.add_parser(
        "leaderboard", help="an opt-in, pseudonymous leaderboard of an accuracy task, from the "
        "gradebook; changes no grade")
    board.add_argument("entry", help="accuracy entry, e.g. resnet or architectures-plain")
    board.add_argument("--opt-in", type=Path, required=True,
                       help="CSV of the students who agreed: a 'student' column, optionally "
                       "'nickname'")
    board.add_argument("--training-set", help="as for accuracy (default: "
                       "c.AccuracyGrader.training_set)")
    _add_root(board)
    autograde = commands.add_parser(
        "autograde", help="nbgrader autograde of a class in parallel shards (on this machine, or "
        "on a Dask cluster); the gradebook must be PostgreSQL for more than one worker")
    autograde.add_argument("assignment", help="assignment id, e.g. sizing")
    autograde.add_argument("--workers", type=int, default=None,
                           help="shards graded at once (default: half the cores of this machine: "
                           "one shard keeps about two busy)")
    autograde.add_argument("--scheduler", help="address of a Dask scheduler (tcp://host:8786): "
                           "the shards run on its workers")
    autograde.add_argument("--student", action="append", default=[],
                           help="grade only this student (repeatable; default: every submission)")
    autograde.add_argument("--force", action="store_true",
                           help="grade again what was graded (nbgrader's --force)")
    autograde.add_argument("--nbgrader-option", action="append", default=[],
                           help="an option for every shard's nbgrader autograde, e.g. "
                           "--nbgrader-option=--JudgeOutsideKernel.feedback_kernel=False "
                           "(repeatable)")
    _add_root(autograde)
    return parser


def _autograde(arguments) -> int:
    from cnnbook.grading.parallel import grade_class  # nbgrader, Dask: only here

    try:
        graded = grade_class(arguments.root, arguments.assignment, arguments.workers,
                             arguments.scheduler, arguments.student,
                             (*(("--force",) if arguments.force else ()),
                              *arguments.nbgrader_option))
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for record in graded["shards"]:
        state = "done" if record["returncode"] == 0 else f"FAILED ({record['returncode']})"
        print(f"shard of {len(record['students'])} on {record['host']} (process "
              f"{record['process']}): {state} in "
              f"{record['seconds']:.0f} s")
        if record["returncode"] != 0:
            print(f"  students: {', '.join(record['students'])}\n  output ends:\n"
                  + record["output"][-2000:])
    print(f"graded {sum(len(r['students']) for r in graded['shards'])} submission(s) of "
          f"{arguments.assignment} in {graded['workers']} shard(s), {graded['seconds']:.0f} s")
    if graded["failed"]:
        print("grade the failed shards' students again with --student, once the cause is fixed "
              f"(`python -m cnnbook.grading deferred {arguments.assignment}` lists cells left "
              "for manual grading)")
        return 3
    return 0


def _leaderboard(arguments) -> int:
    from cnnbook.grading.leaderboard import leaderboard  # nbgrader: only here

    try:
        board = leaderboard(arguments.root, arguments.entry, arguments.opt_in,
                            arguments.training_set)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for standing in board["standings"]:
        print(f"{standing.rank:>4}  {standing.name:<26} {standing.accuracy:.2%}  "
              f"{standing.points:g} points")
    if not board["standings"]:
        print("nobody on the board yet")
    print(f"{board['not_opted_in']} graded student(s) did not opt in and are not shown; "
          + (f"not on the board yet (not graded, under review or no accuracy): "
             f"{', '.join(board['waiting'])}" if board["waiting"] else "every student who opted "
             "in is on it"))
    print(f"page: {board['page']}")
    return 0


def _similarity(arguments) -> int:
    from nbgrader.coursedir import CourseDirectory  # as in _db_url

    from cnnbook.grading.similarity import similarity_report  # copydetect: only here

    root = arguments.root.resolve()
    try:
        coursedir = CourseDirectory(config=load_course_config(root), root=str(root))
        assignment = arguments.assignment
        name = f"{assignment}.ipynb"
        source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / name
        release = Path(coursedir.format_path(coursedir.release_directory, ".", assignment)) / name
        submitted_root = Path(coursedir.root) / coursedir.submitted_directory
        submitted = {folder.name: folder / assignment / name
                     for folder in sorted(submitted_root.iterdir()) if folder.is_dir()
                     and os.path.lexists(folder / assignment)} if submitted_root.is_dir() else {}
        report = similarity_report(root, assignment, source, release, submitted,
                                   threshold=arguments.threshold,
                                   noise_tokens=arguments.noise_tokens)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{assignment}: answer code of {len(report['compared'])} student(s) compared "
          f"(threshold {report['threshold']:g}, runs of {report['noise_tokens']} tokens; the "
          "code the release gives left out)")
    for pair in report["pairs"]:
        print(f"  {pair.first} and {pair.second}: {pair.first_share:.0%} of {pair.first}'s "
              f"answer fingerprints are in {pair.second}'s, {pair.second_share:.0%} the other way "
              f"({pair.common_tokens} tokens in common)")
    if not report["pairs"]:
        print("  no pair above the threshold")
    for student, reason in report["left_out"].items():
        print(f"  left out {student}: {reason}")
    for entry, groups in report["same_function"].items():
        for group in groups:
            print(f"  {entry}: the networks of {', '.join(group)} compute the same function")
    if report["html"]:
        print(f"side-by-side report: {report['html']}")
    print("A report for the instructor to read: no grade was changed.")
    return 0


def _db_url(root: Path) -> str:
    # nbgrader's coursedir loads only for the commands that use the gradebook: the sandboxed
    # `evaluate` children start from this module too, and need neither
    from nbgrader.coursedir import CourseDirectory  # see above

    return CourseDirectory(config=load_course_config(root), root=str(root)).db_url


def _extend(arguments) -> int:
    from cnnbook.grading.late_policy import grant_extension  # as in _db_url: nbgrader

    try:
        extension = grant_extension(_db_url(arguments.root), arguments.assignment,
                                    arguments.student, days=arguments.days, hours=arguments.hours)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{arguments.student}: {arguments.assignment} is due "
          + (f"{extension} after the assignment's due date" if extension else
             "at the assignment's due date (no extension)"))
    return 0


def _deferred(root: Path, assignment: str) -> int:
    from cnnbook.grading.nbgrader_steps import deferred_in_gradebook  # as in _db_url: nbgrader

    try:
        cells = deferred_in_gradebook(_db_url(root), assignment)
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
    if arguments.command == "extend":
        return _extend(arguments)
    if arguments.command == "similarity":
        return _similarity(arguments)
    if arguments.command == "leaderboard":
        return _leaderboard(arguments)
    if arguments.command == "autograde":
        return _autograde(arguments)
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
