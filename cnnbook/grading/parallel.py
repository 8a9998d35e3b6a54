"""Grade a large class in parallel: the class's submissions split into shards, each graded by its
own ``nbgrader autograde`` with the course's configuration (sandbox, judge, limits: nothing is
relaxed), on this machine or on the workers of a Dask cluster.

::

    python -m cnnbook.grading autograde sizing --workers 4
    python -m cnnbook.grading autograde sizing --scheduler tcp://grader-1:8786

``nbgrader autograde`` grades one submission at a time, which with the course's judge beside the
student's process keeps about two cores busy. This command lists the students with a submission,
deals them round-robin into ``--workers`` shards (default: half the cores this process may use)
and runs one ``nbgrader autograde ASSIGNMENT --CourseDirectory.student_id_exclude=<everyone
else>`` per shard at the same time. With
``--scheduler``, each shard is a task of an existing Dask distributed cluster instead (``dask
scheduler`` on one machine, ``dask worker <address> --nthreads N`` on each grading machine, N half
its cores): every worker needs the course folder at the same path (a shared file system), this
package and bubblewrap, and reaches the gradebook's database.

Shards write the gradebook at the same time, which SQLite does not allow: with more than one
worker the gradebook must be a database server, set in ``nbgrader_config.py``, for example
``c.CourseDirectory.db_url = "postgresql://grader@db-host/cnnbook"`` (PostgreSQL, with the
psycopg 3 driver, SQLAlchemy's default for ``postgresql://``). Before the shards start, every
student is created in the gradebook (so two shards never race to create the same row), and the
assignment must be there already (``nbgrader generate_assignment``). A shard that fails is
reported with its students and the end of its output; the other shards' grades stand, and the
failed students can be graded again with ``--student``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["deal", "shard_command", "grade_shard", "grade_class"]


def deal(students: list[str], shards: int) -> list[list[str]]:
    """``students`` dealt round-robin into at most ``shards`` non-empty groups (sorted names, so
    neighbours in the alphabet, often a group of copies or a section, spread out)."""
    if shards < 1:
        raise ValueError(f"the number of workers must be at least 1, got {shards}")
    groups = [sorted(students)[start::shards] for start in range(shards)]
    return [group for group in groups if group]


def shard_command(assignment: str, shard: list[str], everyone: list[str],
                  extra: tuple[str, ...] = ()) -> list[str]:
    """The ``nbgrader autograde`` command that grades exactly ``shard`` of ``everyone``."""
    others = sorted(set(everyone) - set(shard))
    command = [sys.executable, "-m", "nbgrader", "autograde", assignment, *extra]
    if others:
        command.append(f"--CourseDirectory.student_id_exclude={','.join(others)}")
    return command


def grade_shard(root: str, command: list[str], timeout: float | None = None) -> dict:
    """Run one shard's command in the course root ``root``; its return code, seconds and the end
    of its output. (A Dask task: it runs on whichever worker takes it.)"""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True,
                              timeout=timeout, check=False)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        code, output = -1, f"timed out after {timeout} s\n{expired.stdout or ''}"
    return {"returncode": code, "seconds": time.perf_counter() - start,
            "output": output[-6000:], "host": os.uname().nodename, "process": os.getpid()}


def _course(root: Path):
    from nbgrader.coursedir import CourseDirectory  # nbgrader: only for this command

    from cnnbook.grading.tiers import load_course_config  # see above

    return CourseDirectory(config=load_course_config(root), root=str(root))


def grade_class(root: Path, assignment: str, workers: int | None = None,
                scheduler: str | None = None, students: list[str] | None = None,
                extra: tuple[str, ...] = (), timeout: float | None = None) -> dict:
    """Autograde every submission of ``assignment`` (or ``students``) under the course root
    ``root`` in ``workers`` shards (module docstring). Returns ``shards`` (one record per shard:
    its ``students`` and :func:`grade_shard`'s result), ``failed`` (the students of failed
    shards), ``seconds`` and ``workers``."""
    from nbgrader.api import Gradebook, MissingEntry  # as in _course

    root = Path(root).resolve()
    coursedir = _course(root)
    # one shard keeps about two cores busy (the judge beside the student's process): on 2 cores
    # a second shard gained nothing (benchmarks/README.md)
    workers = workers or max(1, len(os.sched_getaffinity(0)) // 2)
    submitted_root = root / coursedir.submitted_directory
    everyone = sorted(folder.name for folder in submitted_root.iterdir()
                      if (folder / assignment).is_dir()) if submitted_root.is_dir() else []
    chosen = sorted(students) if students else everyone
    unknown = sorted(set(chosen) - set(everyone))
    if unknown:
        raise ValueError(f"no submission of {assignment!r} from {', '.join(unknown)} in "
                         f"{submitted_root}")
    if not chosen:
        raise ValueError(f"no submission of {assignment!r} in {submitted_root}")
    odd = [student for student in everyone if "," in student or not student.isprintable()]
    if odd:  # a comma would split nbgrader's --CourseDirectory.student_id_exclude list
        raise ValueError(f"student folders with a comma or an unprintable character in their name "
                         f"in {submitted_root}: {', '.join(map(repr, odd))}; rename or remove "
                         "them (cnnbook's collect never makes them)")
    shards = deal(chosen, workers)
    if len(shards) > 1 and coursedir.db_url.startswith("sqlite"):
        raise ValueError(
            f"grading in {len(shards)} shards at once needs a gradebook that several processes "
            f"can write, not SQLite ({coursedir.db_url}): set c.CourseDirectory.db_url in "
            "nbgrader_config.py to a PostgreSQL database (postgresql://user@host/name), or grade "
            "with --workers 1")
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        try:
            gradebook.find_assignment(assignment)
        except MissingEntry:
            raise ValueError(f"assignment {assignment!r} is not in the gradebook "
                             f"{coursedir.db_url}: run `nbgrader generate_assignment "
                             f"{assignment}` first") from None
        for student in chosen:
            gradebook.update_or_create_student(student)
    commands = [shard_command(assignment, shard, everyone, extra) for shard in shards]
    start = time.perf_counter()
    if scheduler:
        from distributed import Client  # Dask: only when a cluster is named

        with Client(scheduler) as client:
            futures = [client.submit(grade_shard, str(root), command, timeout, pure=False)
                       for command in commands]
            results = client.gather(futures)
    else:
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            results = list(pool.map(lambda command: grade_shard(str(root), command, timeout),
                                    commands))
    records = [{"students": shard, **result} for shard, result in zip(shards, results,
                                                                        strict=True)]
    failed = sorted(student for record in records if record["returncode"] != 0
                    for student in record["students"])
    return {"shards": records, "failed": failed, "workers": len(shards),
            "seconds": time.perf_counter() - start}
