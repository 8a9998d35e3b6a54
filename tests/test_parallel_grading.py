"""cnnbook.grading.parallel (issue 26.5): a class graded in parallel shards by the real
``nbgrader autograde``, into a real PostgreSQL gradebook, on this machine and on a local Dask
cluster of two workers; SQLite refused for more than one worker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from nbgrader_course import (
    WITHOUT_FEEDBACK_KERNEL,
    Course,
    auto_points,
    course_environment,
    read_notebook,
)
from postgres_server import PostgresMissing, private_postgres

from cnnbook.grading.parallel import deal, shard_command

CLASS = {f"s{index:02d}": "reference" if index % 2 else "blank" for index in range(1, 7)}
"""Six students: odd numbers submit the reference solution, even numbers the blank release."""


def test_students_are_dealt_round_robin_and_each_shard_grades_only_its_own():
    shards = deal(["e", "a", "d", "b", "c"], 2)
    assert shards == [["a", "c", "e"], ["b", "d"]]
    assert deal(["a"], 4) == [["a"]]
    command = shard_command("sizing", ["b", "d"], ["a", "b", "c", "d", "e"], ("--force",))
    assert command[1:] == ["-m", "nbgrader", "autograde", "sizing", "--force",
                           "--CourseDirectory.student_id_exclude=a,c,e"]
    with pytest.raises(ValueError, match="at least 1"):
        deal(["a"], 0)


def test_more_than_one_worker_on_sqlite_is_refused_before_grading(tmp_path, repo_root):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy2(repo_root / "nbgrader_config.py", course / "nbgrader_config.py")
    for student in ("alice", "bob"):
        (course / "submitted" / student / "sizing").mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-m", "cnnbook.grading", "autograde", "sizing", "--workers", "2"],
        cwd=course, capture_output=True, text=True, timeout=120,
        env=course_environment(repo_root))
    assert done.returncode == 2
    assert "not SQLite" in done.stderr and "postgresql://" in done.stderr
    assert not (course / "autograded").exists()


@pytest.fixture(scope="module")
def postgres_url():
    """A private PostgreSQL server (tests/postgres_server.py); a missing server fails the test with
    the command that installs it."""
    try:
        with private_postgres() as url:
            yield url
    except PostgresMissing as missing:
        pytest.fail(str(missing))


@pytest.fixture(scope="module")
def parallel_course(repo_root, cifar_subset_dir, tmp_path_factory, postgres_url):
    environment = course_environment(repo_root, CNNBOOK_DATA=str(cifar_subset_dir))
    course = Course.copy_of(repo_root, tmp_path_factory.mktemp("parallel"), environment)
    with open(course.root / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.CourseDirectory.db_url = {postgres_url!r}\n")
    course.nbgrader("generate_assignment", "sizing", "--force")
    for student, kind in CLASS.items():
        course.submit(student, "sizing", course.source("sizing") if kind == "reference"
                      else course.release("sizing"))
    return course


def _scores(postgres_url: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(postgres_url, "cnnbook") as gradebook:
        return {submission.student.id: submission.code_score
                for submission in gradebook.assignment_submissions("sizing")}


@pytest.mark.slow
def test_a_class_is_graded_in_shards_into_postgresql(parallel_course, postgres_url,
                                                     report_timing):
    output, seconds = parallel_course.python(
        "-m", "cnnbook.grading", "autograde", "sizing", "--workers", "2",
        f"--nbgrader-option={WITHOUT_FEEDBACK_KERNEL}")
    report_timing("python -m cnnbook.grading autograde sizing, 6 submissions, 2 shards "
                  "(PostgreSQL)", seconds)
    assert output.count("shard of 3 on ") == 2 and "FAILED" not in output
    full = auto_points(read_notebook(parallel_course.source("sizing")))
    expected = {student: full if kind == "reference" else 0 for student, kind in CLASS.items()}
    assert _scores(postgres_url) == expected
    for student in CLASS:  # each shard's nbgrader wrote its students' graded notebooks
        assert (parallel_course.root / "autograded" / student / "sizing" / "sizing.ipynb").is_file()


@pytest.mark.slow
def test_the_shards_run_on_a_dask_cluster(parallel_course, postgres_url, report_timing,
                                          tmp_path):
    from distributed import Client, LocalCluster

    shutil.rmtree(parallel_course.root / "autograded")  # so that only these shards can write it

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, local_directory=str(tmp_path)) as cluster, \
            Client(cluster) as client:
        output, seconds = parallel_course.python(
            "-m", "cnnbook.grading", "autograde", "sizing", "--scheduler",
            cluster.scheduler_address, "--force", "--workers", "2",
            f"--nbgrader-option={WITHOUT_FEEDBACK_KERNEL}")
        worker_processes = set(client.run(os.getpid).values())
    report_timing("python -m cnnbook.grading autograde sizing --scheduler (local cluster of 2), "
                  "6 submissions", seconds)
    assert output.count("shard of 3 on ") == 2 and "FAILED" not in output
    full = auto_points(read_notebook(parallel_course.source("sizing")))
    assert _scores(postgres_url) == {
        student: full if kind == "reference" else 0 for student, kind in CLASS.items()}
    for student in CLASS:  # every student graded again, by the cluster's shards
        assert (parallel_course.root / "autograded" / student / "sizing" / "sizing.ipynb").is_file()
    # the two shards ran in the cluster's two worker processes, not in the command's
    assert set(map(int, re.findall(r"shard of 3 on \S+ \(process (\d+)\)", output))) == (
        worker_processes)
