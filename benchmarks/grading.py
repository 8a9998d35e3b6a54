"""What the grading sandbox and the judge cost: seconds per submission of ``nbgrader autograde``,
sandboxed (the course's configuration: cnnbook.grading.nbgrader_steps, bubblewrap, and for
``sizing`` and
``parameters`` the judge outside the kernel, cnnbook.grading) against plain (nbgrader's stock
autograde steps with the same notebooks) and, for the judged assignments, against the same sandbox
graded by its kernel (``c.JudgeOutsideKernel.assignments = []``), for each assignment, and the time
a class of 200 ``sizing`` submissions takes: extrapolated from the per-submission figure, and with
``--class-size 200`` measured by grading a whole class of that many submissions in one sandboxed
``nbgrader autograde``; with ``--workers 1 2 4`` as well, the same class is graded by ``python -m
cnnbook.grading autograde sizing --workers N`` for each N, into a private PostgreSQL server
(tests/postgres_server.py), each in a fresh copy of the course.

Each assignment is graded in a fresh temporary copy of the course, with ``--submissions`` copies of
the reference solution (for ``resnet``: without a trained model, so its architecture tests run and
the tests that need the model fail fast), once per mode, the two modes alternating ``--rounds``
times so that a change of the machine's load hits both. One run prints a Markdown table and writes
JSON; ``benchmarks/README.md`` records the figures::

    CNNBOOK_DATA=../shared/data/cifar10 .venv/bin/python benchmarks/grading.py
    .venv/bin/python benchmarks/grading.py --assignments sizing --submissions 3 --rounds 1
    CNNBOOK_DATA=../shared/data/cifar10 .venv/bin/python benchmarks/grading.py --class-size 200
    CNNBOOK_DATA=../shared/data/cifar10 .venv/bin/python benchmarks/grading.py --assignments \
        --class-size 200 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from nbgrader_course import Course, course_environment, read_notebook  # noqa: E402
from postgres_server import private_postgres  # noqa: E402

PLAIN_CONFIG = """
# benchmarks/grading.py, plain mode: nbgrader 0.9's stock autograde steps (no sandbox)
c.Autograde.sanitize_preprocessors = [
    ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata]
from nbgrader.preprocessors import Execute as _Execute, SaveAutoGrades as _SaveAutoGrades
c.Autograde.autograde_preprocessors = [
    _Execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, _SaveAutoGrades,
    AssignLatePenalties, CheckCellMetadata]
c.Execute.timeout = 120
"""
KERNEL_GRADED_CONFIG = """
# benchmarks/grading.py, kernel-graded mode: the sandbox, no judge
c.JudgeOutsideKernel.assignments = []
"""
JUDGED = ("sizing", "parameters")
CLASS_SIZE = 200


def _grade(course: Course, assignment: str) -> float:
    """Wall seconds of one ``nbgrader autograde --force`` of every submission of ``assignment``.
    (CPU time is not comparable: a sandboxed kernel is reaped inside its PID namespace, so its
    time never reaches this process.)"""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment,
                             "--force"], cwd=course.root, env=course.environment,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:  # 2 would mean cells deferred: not a measurement of grading
        raise RuntimeError(f"autograde {assignment} failed:\n{result.stderr[-3000:]}")
    return seconds


def _course(base: Path, name: str, assignment: str, submissions: int, mode: str,
            db_url: str | None = None) -> Course:
    environment = course_environment(REPO_ROOT, **({"CNNBOOK_DATA": os.environ["CNNBOOK_DATA"]}
                                                   if "CNNBOOK_DATA" in os.environ else {}))
    folder = base / name
    folder.mkdir()
    course = Course.copy_of(REPO_ROOT, folder, environment)
    extra = {"plain": PLAIN_CONFIG, "kernel": KERNEL_GRADED_CONFIG}.get(mode)
    if db_url:
        extra = (extra or "") + f"\nc.CourseDirectory.db_url = {db_url!r}\n"
    if extra:
        with open(course.root / "nbgrader_config.py", "a") as config:
            config.write(extra)
    course.nbgrader("generate_assignment", assignment, "--force")
    source = read_notebook(course.source(assignment))
    for index in range(submissions):
        course.submit(f"student{index:03d}", assignment, source)
    return course


def grade_class(class_size: int) -> dict:
    """One sandboxed ``nbgrader autograde sizing`` of ``class_size`` reference submissions, as an
    instructor grades a class: wall minutes for the whole batch."""
    base = Path(tempfile.mkdtemp(prefix="cnnbook-grading-class-"))
    try:
        course = _course(base, "class", "sizing", class_size, mode="sandboxed")
        seconds = _grade(course, "sizing")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"class_size": class_size, "minutes": seconds / 60,
            "seconds_per_submission": seconds / class_size,
            "load_average_at_end": os.getloadavg()}


def grade_class_in_parallel(class_size: int, workers: int) -> dict:
    """``python -m cnnbook.grading autograde sizing --workers workers`` of ``class_size``
    reference submissions into a private PostgreSQL gradebook: wall minutes for the class."""
    base = Path(tempfile.mkdtemp(prefix="cnnbook-grading-parallel-"))
    try:
        with private_postgres() as url:
            course = _course(base, "class", "sizing", 0, mode="sandboxed", db_url=url)
            source = read_notebook(course.source("sizing"))
            for index in range(class_size):
                course.submit(f"student{index:03d}", "sizing", source)
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "cnnbook.grading", "autograde", "sizing", "--workers",
                 str(workers)], cwd=course.root, env=course.environment, capture_output=True,
                text=True)
            seconds = time.perf_counter() - start
            if result.returncode != 0:
                raise RuntimeError(f"parallel autograde failed:\n{result.stdout[-3000:]}"
                                   f"{result.stderr[-3000:]}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"class_size": class_size, "workers": workers, "minutes": seconds / 60,
            "seconds_per_submission": seconds / class_size,
            "load_average_at_end": os.getloadavg()}


def measure(assignments: list[str], submissions: int, rounds: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="cnnbook-grading-bench-"))
    rows = []
    try:
        for assignment in assignments:
            modes = ("plain", "kernel", "sandboxed") if assignment in JUDGED else (
                "plain", "sandboxed")
            courses = {mode: _course(base, f"{assignment}-{mode}", assignment, submissions, mode)
                       for mode in modes}
            seconds = {mode: [] for mode in modes}
            for round_index in range(rounds):
                order = modes if round_index % 2 == 0 else tuple(reversed(modes))
                for mode in order:
                    seconds[mode].append(_grade(courses[mode], assignment) / submissions)
            median = {mode: statistics.median(runs) for mode, runs in seconds.items()}
            rows.append({"assignment": assignment, "plain_s": median["plain"],
                         "kernel_graded_s": median.get("kernel"),
                         "sandboxed_s": median["sandboxed"],
                         "overhead": median["sandboxed"] / median["plain"] - 1, "runs": seconds})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    sizing = next((row for row in rows if row["assignment"] == "sizing"), None)
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_end": os.getloadavg(),
        "submissions_per_run": submissions, "rounds": rounds, "rows": rows,
        "class_of_200_sizing_minutes": (sizing["sandboxed_s"] * CLASS_SIZE / 60
                                        if sizing else None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignments", nargs="*",
                        default=["sizing", "parameters", "resnet", "architectures"])
    parser.add_argument("--submissions", type=int, default=4,
                        help="reference submissions graded per run (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per mode, alternating plain and sandboxed (median kept)")
    parser.add_argument("--class-size", type=int, default=0,
                        help="also grade a class of this many sizing submissions in one "
                             "sandboxed autograde and time it (default: not measured)")
    parser.add_argument("--workers", type=int, nargs="*", default=[],
                        help="with --class-size: also grade the class in parallel with each of "
                             "these numbers of workers, into PostgreSQL")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args(argv)
    if arguments.submissions < 1 or arguments.rounds < 1 or arguments.class_size < 0:
        parser.error("--submissions and --rounds must be >= 1, --class-size >= 0")
    if not arguments.assignments and not arguments.class_size:
        parser.error("nothing to measure: name --assignments or give --class-size")
    started = time.strftime("%Y-%m-%d %H:%M")
    if arguments.workers and not arguments.class_size:
        parser.error("--workers needs --class-size")
    result = measure(arguments.assignments, arguments.submissions, arguments.rounds)
    result["started"] = started
    if arguments.class_size:
        result["class"] = grade_class(arguments.class_size)
    result["parallel"] = [grade_class_in_parallel(arguments.class_size, workers)
                          for workers in arguments.workers]
    print(f"machine: {result['machine']}; load average at the end: "
          f"{', '.join(f'{value:.1f}' for value in result['load_average_at_end'])}")
    print("| assignment | plain s/submission | sandboxed, graded by the kernel | course's "
          "configuration | against plain |")
    print("|---|---|---|---|---|")
    for row in result["rows"]:
        kernel = row["kernel_graded_s"]
        print(f"| `{row['assignment']}` | {row['plain_s']:.1f} | "
              f"{'-' if kernel is None else f'{kernel:.1f}'} | {row['sandboxed_s']:.1f} | "
              f"{row['overhead']:+.0%} |")
    if result["class_of_200_sizing_minutes"] is not None:
        print(f"class of {CLASS_SIZE} `sizing` submissions, sandboxed: "
              f"{result['class_of_200_sizing_minutes']:.0f} minutes at this load")
    if "class" in result:
        graded = result["class"]
        print(f"class of {graded['class_size']} `sizing` submissions, sandboxed, one autograde "
              f"run: {graded['minutes']:.1f} minutes ({graded['seconds_per_submission']:.1f} s "
              f"each; load average at the end "
              f"{', '.join(f'{value:.1f}' for value in graded['load_average_at_end'])})")
    for graded in result["parallel"]:
        print(f"class of {graded['class_size']} `sizing` submissions, {graded['workers']} "
              f"worker(s) into PostgreSQL: {graded['minutes']:.1f} minutes "
              f"({graded['seconds_per_submission']:.1f} s each; load average at the end "
              f"{', '.join(f'{value:.1f}' for value in graded['load_average_at_end'])})")
    if arguments.json:
        arguments.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
