"""``nbgrader collect`` for hostile submissions: the time of a submission is what the exchange's
file system saw, not what the student wrote, and nothing a submission leaves behind is followed.

nbgrader's own collect (``nbgrader.exchange.default.ExchangeCollect``) trusts two things a
student writes into the exchange's inbound folder:

* ``timestamp.txt``, which decides how late the submission is (and so the late penalty of
  :mod:`cnnbook.grading.late_policy`): a student who writes yesterday's date there is on time;
* the files themselves, copied with ``shutil.copytree``, which follows symbolic links: a
  ``sizing.ipynb`` that links to another student's collected notebook (or the instructor's
  solution) is copied as that file, with the instructor's permissions, and a submission folder
  that is itself a link to the instructor's ``solutions/sizing/`` is collected as that folder.
  A named pipe (FIFO), or a submission over ``c.CourseDirectory.max_dir_size``, stops the copy
  and with it the whole class's collection.

:class:`CollectWithObservedTime` (``c.ExchangeFactory.collect``) copies a submission without
following anything, and one student's submission never stops the others':

* a submission folder that is a link, whose name nbgrader cannot read, whose student id is not a
  user name (``..``, ``a,b``), whose ``timestamp.txt`` is not a time, or that is over
  ``c.CourseDirectory.max_dir_size``, is not collected: it stays in the exchange, and an error
  names it;
* inside a submission, symbolic links, pipes, sockets and devices are left out with a warning
  (``nbgrader autograde`` reads and copies a submission's files, following links, before the
  grader's own checks run, so no link may reach it);
* a copy that fails (an unreadable file) leaves nothing behind for that student: the copy is
  made beside the destination and renamed into place only when complete.

It also records when the submission arrived as the exchange's file system saw it: the latest
status change (``st_ctime``) of the submission's folder and of everything in it, read with
``lstat``. A user can set a file's modification time but not its status-change time, which the
kernel sets to the current time on every write, rename or ``touch``; so the observed time is never
earlier than the last change a student made. An honest ``nbgrader submit`` writes its files in the
second it stamps, so an honest submission's time does not move (the late policy's grace period
covers any lag). The record goes where no submission can write: ``observed_times/<assignment>.json``
in the course root (:func:`observed_times_path`), one entry per student, and the autograde step
:class:`cnnbook.grading.late_policy.AssignLatePenaltiesByArrival` counts the late penalty from it.
The student's ``timestamp.txt``, and the gradebook's submission time read from it, stay as they
were: nbgrader keys the returned feedback by that time, and formgrader compares the two to tell
whether a submission was autograded. Anything that changes the exchange's files after a student
submits (``chmod -R``, ``chown``, a restore from backup, a move) moves their status-change time
too and would make the class late: collect before touching the exchange. The collect warns when
it saw a submission more than an hour after its ``timestamp.txt``.

What this cannot do: the file-system exchange does not authenticate students. Where students'
servers share one Unix user (the demonstration hub, and the course image's one user in every
container), anyone can write a folder named ``alice+sizing+...`` into the inbound folder and it
is collected as Alice's (nbgrader's ``check_owner`` only warns, and only where users differ); the
newest folder name wins. An exchange that authenticates each submission through the hub
(ngshare, issue 26) is the remedy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path

from nbgrader.exchange.default import ExchangeCollect
from nbgrader.utils import ignore_patterns, parse_utc

__all__ = ["CollectWithObservedTime", "latest_status_change", "own_size", "observed_times_path",
           "read_observed_times", "record_observed_time", "forget_observed_time", "STUDENT_ID"]


def observed_times_path(course_root, assignment: str) -> Path:
    """``<course root>/observed_times/<assignment>.json``: when each student's collected
    submission arrived, as the exchange saw it."""
    return Path(course_root) / "observed_times" / f"{assignment}.json"


def read_observed_times(course_root, assignment: str) -> dict[str, datetime]:
    """Student id to the observed (aware, UTC) time of their collected submission; empty when
    nothing was collected with :class:`CollectWithObservedTime`."""
    path = observed_times_path(course_root, assignment)
    if not path.is_file():
        return {}
    return {student: datetime.fromisoformat(text)
            for student, text in json.loads(path.read_text(encoding="utf-8")).items()}


def forget_observed_time(course_root, assignment: str, student: str) -> None:
    """Remove ``student``'s entry from :func:`observed_times_path`, if any."""
    times = read_observed_times(course_root, assignment)
    if student in times:
        del times[student]
        _write_observed_times(course_root, assignment, times)


def _write_observed_times(course_root, assignment: str, times: dict[str, datetime]) -> None:
    path = observed_times_path(course_root, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({name: value.astimezone(timezone.utc).isoformat()
                       for name, value in times.items()}, indent=1, sort_keys=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(text + "\n", encoding="utf-8")
    os.replace(temporary, path)


def record_observed_time(course_root, assignment: str, student: str, observed: datetime) -> None:
    """Write (or replace) ``student``'s entry in :func:`observed_times_path`, atomically."""
    times = read_observed_times(course_root, assignment)
    times[student] = observed
    _write_observed_times(course_root, assignment, times)


def latest_status_change(folder: str) -> datetime:
    """The latest ``st_ctime`` of ``folder`` and of every entry under it, read with ``lstat``
    (links are not followed; a link's own change counts), as an aware UTC time."""
    latest = os.lstat(folder).st_ctime
    for parent, folders, files in os.walk(folder, followlinks=False):
        for name in (*folders, *files):
            latest = max(latest, os.lstat(os.path.join(parent, name)).st_ctime)
    return datetime.fromtimestamp(latest, tz=timezone.utc)


def own_size(folder: str) -> int:
    """The bytes of the regular files under ``folder``, links not followed (as nbgrader counts:
    a link is copied as a link, not as the file it names)."""
    total = 0
    for parent, _, files in os.walk(folder, followlinks=False):
        for name in files:
            status = os.lstat(os.path.join(parent, name))
            if stat.S_ISREG(status.st_mode):
                total += status.st_size
    return total


STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
"""A student id this collect accepts from an inbound folder's name: what hub user names are, and
nothing that could be a path (``..``), a list (``,``) or a terminal escape."""


class CollectWithObservedTime(ExchangeCollect):
    """nbgrader's collect, with the copy and the time of :mod:`cnnbook.grading.collect`."""

    def _path_to_record(self, path):
        # nbgrader fails the whole collection on one folder name it cannot parse: such a folder
        # becomes a record that do_copy refuses, and the others are collected
        try:
            return super()._path_to_record(path)
        except Exception:  # nbgrader raises its own errors and dateutil's ParserError
            filename = os.path.basename(path)
            return {"username": filename.split("+")[0], "filename": filename,
                    "timestamp": datetime.min, "unreadable": True}

    def do_copy(self, src, dest, log=None):
        student = os.path.basename(os.path.dirname(os.path.abspath(dest)))
        # an earlier time of this student's goes first: if this copy fails, no stale time is left
        forget_observed_time(self.coursedir.root, self.coursedir.assignment_id, student)
        try:
            refusal = self._refusal(src, student)
            if refusal:
                self.log.error("NOT COLLECTED: %s %s; it stays in the exchange", src, refusal)
                return
            observed = latest_status_change(src)
            staging = f"{dest}.cnnbook-collect-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(src, staging, symlinks=True, ignore=self._ignore(src))
            if self.coursedir.groupshared:
                _make_groupshared(staging)
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(staging, dest)
        except OSError as error:  # unreadable files, a full disk: this student only
            shutil.rmtree(f"{dest}.cnnbook-collect-{os.getpid()}", ignore_errors=True)
            shutil.rmtree(dest, ignore_errors=True)
            self.log.error("NOT COLLECTED: %s could not be copied (%s); it stays in the exchange",
                           src, error)
            return
        record_observed_time(self.coursedir.root, self.coursedir.assignment_id, student, observed)
        claimed = self.coursedir.get_existing_timestamp(dest) if _plain_file(
            os.path.join(dest, "timestamp.txt")) else None
        self.log.info("%s: submitted at %s UTC, as the exchange's file system saw it", student,
                      observed.strftime("%Y-%m-%d %H:%M:%S"))
        if claimed is not None and (observed.replace(tzinfo=None) - claimed).total_seconds() > 3600:
            self.log.warning(
                "%s: the exchange saw this submission %.1f hours after its timestamp.txt; a late "
                "change by the student does that, and so does anything that changed the "
                "exchange's files (chmod, chown, a restore or a move): check before grading",
                student, (observed.replace(tzinfo=None) - claimed).total_seconds() / 3600)

    def _refusal(self, src: str, student: str) -> str | None:
        """Why the submission folder ``src`` is not collected, or ``None``."""
        if not STUDENT_ID.match(student) or student in (".", ".."):
            return f"names the student {student!r}, which is not a valid user name"
        if "+" not in os.path.basename(src) or self._path_to_record(src).get("unreadable"):
            return "has a name nbgrader cannot read (student+assignment+time)"
        if not stat.S_ISDIR(os.lstat(src).st_mode):
            # a submission folder that is a link would be copied as the folder it names (say the
            # instructor's solutions/sizing/, at the path the guide gives) under this student
            return "is a symbolic link or not a folder"
        claimed = os.path.join(src, "timestamp.txt")
        if os.path.lexists(claimed):
            # nbgrader reads it (feedback, --update) and stops everything on one it cannot parse
            if not _plain_file(claimed) or os.lstat(claimed).st_size > 100:
                return "has a timestamp.txt that is not a small regular file"
            try:
                with open(claimed, encoding="utf-8") as handle:
                    parse_utc(handle.read().strip())
            except (ValueError, OverflowError, UnicodeDecodeError):
                return "has a timestamp.txt that is not a time"
        size = own_size(src)
        if size > 1000 * self.coursedir.max_dir_size:
            # nbgrader raises here, which ends the whole class's collection
            return (f"holds {size} bytes, more than c.CourseDirectory.max_dir_size "
                    f"({self.coursedir.max_dir_size} kB)")
        return None

    def _ignore(self, src: str):
        nbgrader_ignore = ignore_patterns(
            exclude=self.coursedir.ignore, include=self.coursedir.include,
            max_file_size=self.coursedir.max_file_size, log=self.log)

        def ignore(directory, names):
            left_out = set(nbgrader_ignore(directory, names))
            for name in names:
                mode = os.lstat(os.path.join(directory, name)).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    # nbgrader autograde reads and copies files before the grader's own checks
                    # run, following links: a link to /dev/zero, a FIFO or another student's
                    # notebook must never reach it
                    self.log.warning("%s: left out %s, which is a symbolic link, pipe, socket or "
                                     "device", src, os.path.relpath(os.path.join(directory, name),
                                                                    src))
                    left_out.add(name)
            return left_out

        return ignore


def _plain_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _make_groupshared(folder: str) -> None:
    """As nbgrader's own copy does: folders ug+rwx (setgid), files ug+rw."""
    for parent, _, files in os.walk(folder):
        os.chmod(parent, (os.stat(parent).st_mode | 0o2770) & 0o2777)
        for name in files:
            path = os.path.join(parent, name)
            os.chmod(path, (os.stat(path).st_mode | 0o660) & 0o777)
