"""The grader's side of judging a notebook outside the student's kernel.

:func:`judge_notebook` starts a judge (:mod:`cnnbook.grading.judge_side`) and, when the judge
first asks for a student's name, one student process per set of forbidden packages
(:mod:`cnnbook.grading.student_side`), each in the bubblewrap sandbox with a fresh copy of the
submission's files as its only writable folder; it relays the judge's requests and returns one
:class:`Verdict` per test cell. What the processes print never reaches the grader's log: the
student processes' output goes nowhere, the judge's is captured. Every message is one JSON line
of at most ``max_message_bytes``; a process that sends more, ends, or stays silent past its time
limit is killed.

Who is to blame decides the verdict: a judge that dies or runs out of time while it holds a
Keras network of the student's (from its rebuilding, of a returned model, a block's layers or a
submitted file, to the verdict of the test that asked for it) fails every test not yet decided;
a student process
that dies or runs out of time while the
student's code runs fails that test (and is started afresh for the next one, at most
``restarts`` times), and when the notebook's time runs out while the student's processes, and
the judge while it held a network of the student's, took more than half of the time since the
judge was ready (its start, slow on a busy machine, is not theirs), the tests not reached fail; a
judge that cannot start, fails in the
instructor's set-up cells or dies, and a student process that cannot start before any student code
ran, are the grader's failures: those verdicts have ``passed=None`` and go to manual grading,
never to a zero.

Inside a student process, ``cnnbook`` shows only :data:`STUDENT_MODULES` (its reference code
cannot be imported), and each forbidden package is replaced by a module that raises
``ImportError`` when imported: the files are not there to be found by any other road.
"""

from __future__ import annotations

import ast
import atexit
import functools
import json
import os
import queue
import re
import shutil
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cnnbook
from cnnbook.grading import sandbox, student_side
from cnnbook.grading.judge_side import declared_forbids, preloaded_modes

__all__ = ["STUDENT_MODULES", "Limits", "Verdict", "NotebookJob", "judge_notebook", "notebook_job",
           "student_overlays", "copy_regular_files"]

STUDENT_MODULES = ("__init__.py", "checks.py", "course")
"""The files and folders of the ``cnnbook`` package a student process can import (relative to the
package): :mod:`cnnbook.course`, what the assignments hand students (the data split, the image
input and its normalisation, the course's layers), and what it imports. Everything else of
``cnnbook`` (the reference networks, the book's models, training, the grader) is hidden."""


@dataclass(frozen=True)
class Limits:
    """The limits of judging one notebook (``nbgrader_config.py`` sets them through
    ``c.GradingSandbox`` and ``c.JudgeOutsideKernel``)."""

    memory_bytes: int = 4 * 2**30
    """Resident memory of each process (student or judge) with its threads."""
    max_processes: int = 64
    max_threads: int = 1024
    folder_bytes: int = 2**30
    """Bytes each process may write into its folder."""
    tmp_bytes: int = sandbox.TMP_BYTES
    startup_s: float = 180
    """Seconds a process may take to start (and the judge to run the set-up cells)."""
    load_s: float = 600
    """Seconds all the student's cells may run in a student process before it answers."""
    statement_s: float = 60
    """Seconds one top-level statement of the student's cells may run (then it is skipped)."""
    call_s: float = 60
    """Seconds one call of a student's function may take."""
    judge_step_s: float = 300
    """Seconds the judge may take between two messages (it builds Keras networks)."""
    notebook_s: float = 1200
    """Seconds for the whole notebook; past it the remaining tests fail when the student's
    processes took more than half of the time since the judge was ready, and go to manual
    grading otherwise."""
    max_message_bytes: int = 20 * 2**20
    restarts: int = 2
    """How often a student process that died in a call is started again."""
    readonly_paths: tuple[str, ...] = ()
    """What the judge and the student processes may read besides the Python environment (the
    training-only copy of the data set)."""
    environment: tuple[tuple[str, str], ...] = ()
    """Environment variables of every process (``CNNBOOK_DATA``), besides the grader's own
    (``NBGRADER_EXECUTION=autograde``: a notebook loads its saved networks, never trains)."""


@dataclass(frozen=True)
class Verdict:
    """One test cell's outcome: ``passed`` True or False, or None when the grader failed (then
    ``message`` says why, for the instructor)."""

    grade_id: str
    passed: bool | None
    message: str


class _Ended(Exception):
    """The process ended, sent too much, or stayed silent past its limit (``str``: why)."""


class _Process:
    """A sandboxed process that speaks JSON lines on its stdin and stdout."""

    def __init__(self, argv: Sequence[str], workdir: Path, limits: Limits, *,
                 overlays: Sequence[str] = (), readonly_paths: Sequence[str] = ()):
        command = sandbox.sandboxed_command(
            argv, writable_dir=workdir, readonly_paths=readonly_paths, overlays=overlays,
            environment={"TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
                         "NBGRADER_EXECUTION": "autograde", **dict(limits.environment)},
            tmp_bytes=limits.tmp_bytes)
        self.limits = limits
        self.home: Path | None = None  # a folder of its own, removed when it is closed
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)
        self.stderr = bytearray()
        self.lines: queue.Queue = queue.Queue()
        self.watchdog = sandbox.Watchdog(
            self.process.pid, max_memory_bytes=limits.memory_bytes,
            max_processes=limits.max_processes, max_threads=limits.max_threads, folder=workdir,
            max_folder_bytes=limits.folder_bytes).start()
        threading.Thread(target=self._read_lines, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_lines(self) -> None:
        limit = self.limits.max_message_bytes
        stream = self.process.stdout
        while True:
            line = stream.readline(limit + 1)
            if not line:
                self.lines.put(None)
                return
            if len(line) > limit:
                self.lines.put(b"")  # too long: the reader stops, the process is killed
                return
            self.lines.put(line)

    def _read_stderr(self) -> None:
        for chunk in iter(lambda: self.process.stderr.read(65536), b""):
            room = 65536 - len(self.stderr)
            if room > 0:
                self.stderr += chunk[:room]

    def send(self, message) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise _Ended(self._why_ended("it stopped reading")) from error

    def receive(self, timeout: float) -> dict:
        try:
            line = self.lines.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            self.kill()
            raise _Ended(f"it gave no answer within {timeout:g} s") from None
        if line is None:
            self.process.wait()
            raise _Ended(self._why_ended("it ended"))
        if line == b"":
            self.kill()
            raise _Ended(f"it sent more than {self.limits.max_message_bytes:,} bytes at once")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError, MemoryError):  # garbage, or nesting 10**5 deep
            self.kill()
            raise _Ended("it sent something that is not a message") from None
        if not isinstance(message, dict):
            self.kill()
            raise _Ended("it sent something that is not a message")
        return message

    def _why_ended(self, default: str) -> str:
        if self.watchdog.reason:
            return self.watchdog.reason
        code = self.process.poll()
        if code is not None:
            return f"{default} (exit status {code})"
        return default

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.watchdog.stop()

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        self.kill()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def _import_stub(package: str) -> str:
    """A file that takes the place of ``package/__init__.py`` in a student process."""
    folder = tempfile.mkdtemp(prefix="cnnbook-hidden-")
    path = os.path.join(folder, "__init__.py")
    message = (f"{package} cannot be imported while this test runs: the test asks for an answer "
               f"computed without {package}")
    with open(path, "w") as stub:
        stub.write(f"raise ImportError({message!r}, name={package!r})\n")
    return path


def student_overlays(forbid: Sequence[str] = ()) -> list[str]:
    """bwrap arguments that show a student process only :data:`STUDENT_MODULES` of ``cnnbook``
    and put an ``ImportError`` in place of each package of ``forbid``, in every site folder."""
    package = Path(cnnbook.__file__).resolve().parent
    overlays = ["--tmpfs", str(package)]
    for relative in STUDENT_MODULES:
        overlays += ["--ro-bind", str(package / relative), str(package / relative)]
    for site_dir in dict.fromkeys([*site.getsitepackages(), site.getusersitepackages()]):
        for name in forbid:
            folder = Path(site_dir) / name
            if folder.is_dir():
                overlays += ["--tmpfs", str(folder),
                             "--ro-bind", _import_stub(name), str(folder / "__init__.py")]
            elif (Path(site_dir) / f"{name}.py").exists():
                overlays += ["--ro-bind", _import_stub(name), str(Path(site_dir) / f"{name}.py")]
    return overlays


def copy_regular_files(source: Path, destination: Path,
                       names: Sequence[str] | None = None) -> None:
    """Copy the regular files and folders of ``source`` (links, FIFOs and devices skipped); with
    ``names``, only the regular files of those names at its top level."""
    for entry in os.scandir(source):
        if names is not None and (entry.name not in names
                                  or not entry.is_file(follow_symlinks=False)):
            continue
        target = destination / entry.name
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            target.mkdir()
            copy_regular_files(Path(entry.path), target)
        elif entry.is_file(follow_symlinks=False):
            shutil.copyfile(entry.path, target, follow_symlinks=False)


class _StudentProcess:
    """The student's code in one sandboxed process with ``forbid`` hidden; started when first
    asked, started afresh after it died in a call."""

    def __init__(self, forbid: tuple[str, ...], cells: list[str], files: Path | None,
                 limits: Limits, scratch: Path, file_names: Sequence[str] | None = None):
        self.forbid, self.cells, self.files, self.limits = forbid, cells, files, limits
        self.file_names = file_names
        self.scratch = scratch
        self.process: _Process | None = None
        self.broken: str | None = None  # why every further request fails
        self.starts = 0
        self.deaths = 0  # in calls
        self.setup_count = 0
        self.errors: list = []
        self.loading: Future | None = None

    def start_loading(self, executor: ThreadPoolExecutor) -> None:
        """Start the process and run the student's cells in the background (the judge starts
        meanwhile)."""
        self.loading = executor.submit(self._start)

    def _start(self) -> None:
        """Start the process and run the student's cells in it; a statement during which the
        process ends (or stays silent past ``load_s``) is skipped in the next start."""
        skip: list[list[int]] = []
        while True:
            self.starts += 1
            workdir = Path(tempfile.mkdtemp(prefix="student-", dir=self.scratch))
            if self.files is not None:
                copy_regular_files(self.files, workdir, self.file_names)
            self.process = _Process([sys.executable, "-I", "-c", _student_program()], workdir,
                                    self.limits, overlays=student_overlays(self.forbid),
                                    readonly_paths=self.limits.readonly_paths)
            self.process.home = workdir  # removed when the process is closed
            self.process.send({"cells": self.cells, "skip": skip,
                               "statement_seconds": self.limits.statement_s,
                               "setup_cells": self.setup_count,
                               "setup_seconds": self.limits.startup_s})
            try:
                self.process.receive(self.limits.startup_s)
            except _Ended as ended:
                self.process.close()
                raise GraderFailure(f"a student process could not start: {ended}; "
                                    f"{self.process.stderr.decode(errors='replace')[-500:]}"
                                    ) from None
            running, deadline = None, time.monotonic() + self.limits.load_s
            setup_checked = False
            try:
                while True:
                    message = self.process.receive(deadline - time.monotonic())
                    if "setup_done" in message and not setup_checked:
                        # sent before the first student statement: after it, student code
                        # could forge any report, so this is the only one believed
                        setup_checked = True
                        self._check_setup(message["setup_done"])
                    elif "running" in message:
                        running = message["running"]
                    elif message.get("loaded"):
                        break
            except _Ended as ended:
                self.process.close()
                self.process = None
                if (isinstance(running, list) and running not in skip
                        and len(skip) < self.limits.restarts + 2):
                    skip.append(running)
                    continue
                self.broken = f"while your notebook's cells ran, {ended}"
                return
            break
        self.errors = message.get("errors", []) if isinstance(message.get("errors"), list) else []

    def _check_setup(self, errors) -> None:
        """Raise :class:`GraderFailure` when an instructor's set-up cell failed for a reason other
        than a hidden import."""
        for error in errors if isinstance(errors, list) else []:
            if not isinstance(error, dict) or not isinstance(error.get("cell"), int):
                continue
            if error["cell"] < self.setup_count and not self._expected(error):
                self.process.close()
                raise GraderFailure(
                    f"the instructor's set-up cell {error['cell'] + 1} failed in a student "
                    f"process: {error.get('type')}: {str(error.get('message'))[:300]}")

    def _expected(self, error: dict) -> bool:
        """An error a set-up cell may raise here: importing a package this process hides."""
        module = str(error.get("module") or "")
        return error.get("type") in ("ImportError", "ModuleNotFoundError") and (
            module.split(".")[0] in self.forbid or module.startswith("cnnbook."))

    def ask(self, request: dict) -> dict:
        if self.loading is not None:
            loading, self.loading = self.loading, None
            loading.result()  # a GraderFailure of the start is raised here
        if self.broken:
            return {"failed": self.broken}
        if self.process is None:
            if self.deaths > self.limits.restarts:
                return {"failed": "your code ended its process too often"}
            self._start()
            if self.broken:
                return {"failed": self.broken}
        try:
            self.process.send(request)
            return self.process.receive(self.limits.call_s)
        except _Ended as ended:
            self.deaths += 1
            self.process.close()
            self.process = None
            what = request.get("name")
            return {"failed": f"your code's process stopped while it ran {what}: {ended}"}

    def close(self) -> None:
        if self.loading is not None:
            try:
                self.loading.result()
            except Exception:  # closing anyway
                pass
        if self.process is not None:
            self.process.close()


class GraderFailure(Exception):
    """The grader could not judge (not the student's doing)."""


class _StudentTooSlow(Exception):
    """The notebook's time ran out, most of it spent in the student's processes."""


class _StudentModelTooBig(Exception):
    """The judge died or ran out of time rebuilding a Keras model the student's code returned."""


@functools.lru_cache(maxsize=1)
def _student_program() -> str:
    return Path(student_side.__file__).read_text()


_IDLE_JUDGES: dict[Limits, list[_Process]] = {}
"""Judges that finished a notebook and wait for the next one (per limits): the grader pays the
judge's start (TensorFlow's import, seconds) once per command, not once per notebook."""
_IDLE_LOCK = threading.Lock()


JUDGE_REUSE_GROWTH_FRACTION = 0.25
"""A judge whose resident memory ever grew by more than this fraction of the memory limit above
what it held when it was new (measured once its first set-up had run: TensorFlow imported) is
not reused for another notebook: TensorFlow does not give back what a notebook's networks took,
so a judge that served heavy notebooks would start the next one near the limit, and a student's
honest network would then push it over (the student's fault, as far as the limit can tell). The
growth is what counts, not the size: TensorFlow alone is about 600 MiB, which a rule on the size
would have to allow for (under a 1.5 GiB limit, a rule of a quarter of the limit retired every
judge after its first notebook, and each notebook paid TensorFlow's import again)."""


def _idle_judge(limits: Limits, fresh: bool = False) -> _Process:
    """A waiting judge for these limits, or a new one (always a new one when ``fresh``)."""
    with _IDLE_LOCK:
        waiting = _IDLE_JUDGES.get(limits, [])
        while waiting and not fresh:
            judge = waiting.pop()
            if judge.process.poll() is None:
                return judge
            judge.close()
    home = Path(tempfile.mkdtemp(prefix="cnnbook-judge-home-"))
    judge = _Process([sys.executable, "-I", "-m", "cnnbook.grading.judge_side"], home,
                     limits, readonly_paths=limits.readonly_paths)
    judge.home = home
    judge.notebooks = 0
    judge.new_bytes = None  # its memory once its first set-up has run
    return judge


def _reusable(judge: _Process, limits: Limits) -> bool:
    """Whether a judge that finished a notebook may take the next one: it is alive, and its
    memory never grew past :data:`JUDGE_REUSE_GROWTH_FRACTION` of the limit above what it held
    when new (unknown: never reused)."""
    if judge.process.poll() is not None or judge.new_bytes is None:
        return False
    growth = judge.watchdog.peak_memory_bytes - judge.new_bytes
    return growth <= JUDGE_REUSE_GROWTH_FRACTION * limits.memory_bytes


@atexit.register
def close_idle_judges() -> None:
    """End every waiting judge (at the grader's exit; bwrap would end them with it anyway)."""
    with _IDLE_LOCK:
        for judges in _IDLE_JUDGES.values():
            for judge in judges:
                judge.close()
        _IDLE_JUDGES.clear()


def judge_notebook(student_cells: Sequence[str], setup_cells: Sequence[str],
                   tests: Sequence[tuple[str, str]], files: Path | None = None,
                   limits: Limits | None = None, setup_count: int = 0,
                   answer_names: Sequence[str] | None = None,
                   file_names: Sequence[str] | None = None) -> list[Verdict]:
    """Judge one notebook: ``student_cells`` (Python source, every cell the student process runs,
    in order; the first ``setup_count`` are the instructor's set-up, before any cell a student
    writes: their failure is the grader's, except an import of what the process hides),
    ``answer_names`` (the names the source's answer cells define: the only names the judge looks
    up in a student process; None: any name it lacks),
    ``setup_cells`` (the instructor's cells the judge runs first), ``tests``
    (``(grade_id, source)`` of each test cell, hidden tests included, in the notebook's order;
    a ``grade_id`` of None marks a locked cell of the instructor's that the judge runs at that
    point, such as the one that loads the submitted networks), ``files`` (a folder whose regular
    files, links and special files left out, the judge and the student process without forbidden
    packages get a copy of: the submitted networks; a process that hides a package gets none,
    since a submitted folder could hold a copy of that package; with ``file_names``, only the
    regular files of those names: a submission's other files, a ``matplotlibrc`` that every
    import of Matplotlib in that folder would read, a folder of checkpoints, never reach a
    grading process). Returns one :class:`Verdict` per
    test (instructor cells have none), in order. Raises
    :class:`cnnbook.grading.sandbox.SandboxUnavailable` when bubblewrap cannot run.

    A judge that already served other notebooks and fails this one in a way that blames the
    student (a limit passed while it held the student's network) is not believed: the notebook is
    judged again by a fresh judge, whose verdicts stand."""
    arguments = (student_cells, setup_cells, tests, files, limits, setup_count, answer_names,
                 file_names)
    verdicts, reused = _judge_notebook(*arguments, fresh=False)
    if reused and any(verdict.message.startswith(_TOO_BIG_PREFIX) for verdict in verdicts):
        verdicts, _ = _judge_notebook(*arguments, fresh=True)
    return verdicts


_TOO_BIG_PREFIX = "the Keras network in "
"""How the verdicts of :class:`_StudentModelTooBig` begin."""


def _judge_notebook(student_cells, setup_cells, tests, files, limits, setup_count, answer_names,
                    file_names, fresh: bool) -> tuple[list[Verdict], bool]:
    """:func:`judge_notebook` with one judge; also says whether that judge had served other
    notebooks before this one."""
    limits = limits or Limits()
    graded = [(grade_id, source) for grade_id, source in tests if grade_id is not None]
    sandbox.require_sandbox()
    scratch = Path(tempfile.mkdtemp(prefix="cnnbook-judge-"))
    verdicts: dict[str, Verdict] = {}
    students: dict[tuple[str, ...], _StudentProcess] = {}
    judge = None
    reused = False
    folder = None
    deadline = time.monotonic() + limits.notebook_s
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="student-process")
    healthy = False
    student_seconds = 0.0  # spent waiting for the student's processes
    rebuilding = None  # what the judge is rebuilding a student's Keras model from, if it is
    held_since = 0.0  # when the judge began to hold that network (its time is the student's)

    def student_process(forbid: tuple[str, ...]) -> _StudentProcess:
        if forbid not in students:
            students[forbid] = _StudentProcess(forbid, list(student_cells),
                                               None if forbid else files, limits, scratch,
                                               file_names)
            students[forbid].setup_count = setup_count
        return students[forbid]

    try:
        # the student processes each test will ask start loading now, beside the judge
        declared: dict[str, set[str]] = {}
        for _, source in tests:
            for name, packages in declared_forbids(source).items():
                declared.setdefault(name, set()).update(packages)
        functions = set().union(*(_top_level_functions(cell) for cell in student_cells))
        if answer_names is not None:
            functions &= set(answer_names)
        for forbid in preloaded_modes([source for _, source in tests], declared, functions):
            student_process(forbid).start_loading(executor)
        judge = _idle_judge(limits, fresh)
        reused = judge.notebooks > 0
        judge.notebooks += 1
        folder = None
        if files is not None:
            folder = Path(tempfile.mkdtemp(prefix="submission-", dir=judge.home))
            copy_regular_files(Path(files), folder, file_names)
        judge.send({"setup": list(setup_cells), "folder": None if folder is None else str(folder),
                    "answer_names": None if answer_names is None else list(answer_names),
                    "tests": [{"grade_id": grade_id, "source": source}
                              for grade_id, source in tests]})
        first = judge.receive(limits.startup_s)
        if "setup_failed" in first:
            raise GraderFailure(f"the instructor's set-up cells failed in the judge: "
                                f"{str(first['setup_failed'])[:500]}")
        if judge.new_bytes is None:  # a new judge, its set-up run: what reuse is measured from
            judge.new_bytes = judge.watchdog.memory_bytes
        ready = time.monotonic()  # the tests' time: the student is judged on a share of it
        while True:
            now = time.monotonic()
            remaining = deadline - now
            held = now - held_since if rebuilding is not None else 0.0
            if remaining <= 0 and student_seconds + held > (now - ready) / 2:
                raise _StudentTooSlow(f"your functions took {student_seconds + held:.0f} s of "
                                      f"the {limits.notebook_s:g} s this notebook may take (with "
                                      "the time the grader spent on networks they returned); "
                                      "the tests not reached by then fail")
            if remaining <= 0:
                raise GraderFailure(f"judging the notebook took longer than "
                                    f"{limits.notebook_s:g} s")
            try:
                message = judge.receive(min(limits.judge_step_s, remaining))
            except _Ended as ended:
                if rebuilding is not None:
                    raise _StudentModelTooBig(
                        f"the Keras network in {rebuilding} could not be rebuilt or run within "
                        f"the grader's limits ({ended})") from None
                if time.monotonic() >= deadline:  # silent to the notebook's end: whose time
                    continue  # it was is decided at the top of the loop
                raise
            if "rebuilding" in message:  # the student's network is in the judge until the
                if rebuilding is None:  # test's verdict; the time it takes there is the
                    held_since = time.monotonic()  # student's, like a student process's
                rebuilding = str(message["rebuilding"])[:100]
                continue
            if "request" in message:
                request = dict(message["request"])
                forbid = tuple(sorted(str(name) for name in request.pop("forbid", [])))
                asked = time.monotonic()
                reply = student_process(forbid).ask(request)
                if rebuilding is None:  # else counted with the time the network is held
                    student_seconds += time.monotonic() - asked
                judge.send(reply)
            elif "verdict" in message:
                if rebuilding is not None:
                    student_seconds += time.monotonic() - held_since
                rebuilding = None
                verdict = message["verdict"]
                passed = None if verdict.get("grader_failure") else bool(verdict.get("passed"))
                verdicts[verdict["grade_id"]] = Verdict(verdict["grade_id"], passed,
                                                        str(verdict.get("message", "")))
            elif message.get("done"):
                healthy = True
                break
    except (_StudentTooSlow, _StudentModelTooBig) as student_failure:
        for grade_id, _ in graded:
            verdicts.setdefault(grade_id, Verdict(grade_id, False, str(student_failure)))
    except (GraderFailure, _Ended) as failure:
        reason = str(failure) if isinstance(failure, GraderFailure) else (
            f"the judge stopped: {failure}; "
            f"{judge.stderr.decode(errors='replace')[-500:] if judge else ''}")
        for grade_id, _ in graded:
            verdicts.setdefault(grade_id, Verdict(grade_id, None, reason))
    except Exception as error:  # a fault of the grader's own (a full disk): never the batch's end
        for grade_id, _ in graded:
            verdicts.setdefault(grade_id, Verdict(
                grade_id, None, f"the grader failed: {type(error).__name__}: {error}"))
    finally:
        for student in students.values():
            student.close()
        if judge is not None:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            if healthy and _reusable(judge, limits):  # it waits for the next notebook
                with _IDLE_LOCK:
                    _IDLE_JUDGES.setdefault(limits, []).append(judge)
            else:
                judge.close()
        executor.shutdown(wait=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return [verdicts.get(grade_id, Verdict(grade_id, None, "the judge gave no verdict"))
            for grade_id, _ in graded], reused


@dataclass(frozen=True)
class NotebookJob:
    """What :func:`judge_notebook` needs of one submission, built by :func:`notebook_job`."""

    student_cells: list[str]
    setup_count: int
    setup_cells: list[str]
    tests: list[tuple[str | None, str]]
    """``(grade_id, source)`` in order; ``grade_id`` None: an instructor's cell, no verdict."""
    answer_names: list[str]
    submitted_files: list[str]
    """The files the source notebook names (``"resnet20.keras"``): the only submitted files the
    judge and the student processes get."""


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _source(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _as_python(source: str) -> str:
    """A cell's source with IPython's syntax (``%matplotlib inline``, ``!ls``, ``%%time``)
    translated to plain Python calls of ``get_ipython()`` (the student process answers them)."""
    # IPython is the grader's (nbgrader's) environment, not one of cnnbook's dependencies, and
    # slow to import: only when a notebook's cells are translated
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except SyntaxError:
        return source


def notebook_job(submission, source) -> NotebookJob:
    """Split a notebook for judging, from the instructor's ``source`` notebook (trusted) and the
    ``submission`` (nbformat notebooks or dicts):

    * the set-up: the source's code cells before its first answer cell (imports, the settings
      cell, loading the data), as the instructor wrote them; each student process runs them
      first, and so does the judge;
    * the answer names: what the source's answer cells define at the top level, the only names
      the judge looks up in a student process;
    * the tests, in the notebook's order: the source's autograded test cells (code, ``grade``,
      not ``solution``), hidden tests included, and between them the source's later locked cells
      (``grade_id`` None: the cell that loads the submitted networks, an instructor's constant);
      they run in the judge only;
    * the student's cells: every other code cell of the submission, in order, magics translated
      (a set-up cell the student left as it was is not run twice).
    """
    setup, tests, answers = [], [], []
    for cell in source["cells"]:
        metadata = _nbgrader(cell)
        if cell["cell_type"] != "code":
            continue
        if metadata.get("solution"):
            answers.append(cell)
        elif not answers and not metadata.get("grade"):
            setup.append(cell)
        elif metadata.get("grade"):
            tests.append((metadata["grade_id"], _source(cell)))
        elif metadata.get("locked") and answers:
            tests.append((None, _source(cell)))
    setup_sources = [_source(cell) for cell in setup]
    skipped = ({_nbgrader(cell).get("grade_id") for cell in setup}
               | {grade_id for grade_id, _ in tests}) - {None}
    student = [_as_python(_source(cell)) for cell in submission["cells"]
               if cell["cell_type"] == "code" and _nbgrader(cell).get("grade_id") not in skipped
               and _source(cell) not in setup_sources]
    named_files = sorted({constant.value for cell in source["cells"] if cell["cell_type"] == "code"
                          for constant in _string_constants(_source(cell))
                          if _SUBMITTED_FILE.fullmatch(constant.value)})
    return NotebookJob([*setup_sources, *student], len(setup_sources), setup_sources, tests,
                       sorted(set().union(*(_top_level_names(_source(cell)) for cell in answers))),
                       named_files)


_SUBMITTED_FILE = re.compile(r"[\w.-]+\.keras")
"""A file a notebook asks students to submit: a saved network
(``MODEL_PATH = "resnet20.keras"``)."""


def _string_constants(source: str) -> list[ast.Constant]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _top_level_functions(source: str) -> set[str]:
    """Functions a cell defines with ``def`` at its top level (none when it does not parse: a
    student's cell may be anything, nesting too deep for the parser or a null byte included)."""
    try:
        statements = ast.parse(source).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {statement.name for statement in statements
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _top_level_names(source: str) -> set[str]:
    """Names a cell binds at its top level (functions, classes, assignments, imports)."""
    try:
        statements = ast.parse(source).body
    except SyntaxError:
        return set()
    names: set[str] = set()
    for statement in statements:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [
                statement.target]
            for target in targets:
                names.update(node.id for node in ast.walk(target) if isinstance(node, ast.Name))
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0]
                         for alias in statement.names)
    return names
