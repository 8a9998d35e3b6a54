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
following anything: a submission folder that is a link is not collected (an error names it),
symbolic links inside one are copied as links, which the grader then refuses and
reports to the student (``CheckSubmittedFiles``); FIFOs, sockets and devices are left out, with
a warning; a submission too large stays in the exchange with an error naming it, and the others
are collected.

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
whether a submission was autograded.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path

from nbgrader.exchange.default import ExchangeCollect
from nbgrader.utils import ignore_patterns

__all__ = ["CollectWithObservedTime", "latest_status_change", "own_size", "observed_times_path",
           "read_observed_times", "record_observed_time"]


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


def record_observed_time(course_root, assignment: str, student: str, observed: datetime) -> None:
    """Write (or replace) ``student``'s entry in :func:`observed_times_path`, atomically."""
    path = observed_times_path(course_root, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    times = {name: value.isoformat() for name, value in
             read_observed_times(course_root, assignment).items()}
    times[student] = observed.astimezone(timezone.utc).isoformat()
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


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


class CollectWithObservedTime(ExchangeCollect):
    """nbgrader's collect, with the copy and the time of :mod:`cnnbook.grading.collect`."""

    def do_copy(self, src, dest, log=None):
        if not stat.S_ISDIR(os.lstat(src).st_mode):
            # a submission folder that is a link would be copied as the folder it names (say the
            # instructor's solutions/sizing/, at the path the guide gives) under this student
            self.log.error("NOT COLLECTED: %s is a symbolic link or not a folder; it stays in "
                           "the exchange", src)
            return
        observed = latest_status_change(src)
        size = own_size(src)
        if size > 1000 * self.coursedir.max_dir_size:
            # nbgrader raises here, which ends the whole class's collection: only this one is
            # left out, in the exchange, where nothing is lost
            self.log.error("NOT COLLECTED: %s holds %d bytes, more than c.CourseDirectory."
                           "max_dir_size (%d kB); it stays in the exchange", src, size,
                           self.coursedir.max_dir_size)
            return
        nbgrader_ignore = ignore_patterns(
            exclude=self.coursedir.ignore, include=self.coursedir.include,
            max_file_size=self.coursedir.max_file_size, log=self.log)

        def ignore(directory, names):
            left_out = set(nbgrader_ignore(directory, names))
            for name in names:
                mode = os.lstat(os.path.join(directory, name)).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    self.log.warning("%s: left out %s, which is not a regular file, folder or "
                                     "link (a pipe, socket or device)", src,
                                     os.path.relpath(os.path.join(directory, name), src))
                    left_out.add(name)
            return left_out

        shutil.copytree(src, dest, symlinks=True, ignore=ignore)
        student = os.path.basename(os.path.dirname(os.path.abspath(dest)))
        record_observed_time(self.coursedir.root, self.coursedir.assignment_id, student, observed)
        self.log.info("%s: submitted at %s UTC, as the exchange's file system saw it", student,
                      observed.strftime("%Y-%m-%d %H:%M:%S"))
        if self.coursedir.groupshared:
            # as nbgrader's own copy does: folders ug+rwx (setgid), files ug+rw
            for folder, _, files in os.walk(dest):
                os.chmod(folder, (os.stat(folder).st_mode | 0o2770) & 0o2777)
                for name in files:
                    path = os.path.join(folder, name)
                    if not os.path.islink(path):
                        os.chmod(path, (os.stat(path).st_mode | 0o660) & 0o777)
