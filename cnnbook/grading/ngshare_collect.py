"""The course's collect when the hub's exchange is ngshare (``CNNBOOK_EXCHANGE_KIND=ngshare``,
nbgrader_config.py): ngshare_exchange's collect, with each student's files written safely and one
student's failure kept to that student.

ngshare_exchange 0.5.3 writes a submission's files (paths and contents, as the student's server
uploaded them) with ``decode_dir``, which decides whether a file's folder exists by looking in
the *current* folder rather than the destination: a submission holding ``solutions/x`` or
``cnnbook-course/x`` (folders that exist where the instructor runs the command) makes it write
into a folder it never created, and the error stops the collection of every student after that
one. :class:`NgshareCollect` writes each file under the student's destination only (no absolute
path, no ``..``), within :attr:`NgshareCollect.max_submission_mib`, into a staging folder that is
renamed into place when every file is written (a previous collection of that student stays
until then: ngshare_exchange's own removed it first); a submission it cannot write, or a student
id that could be a path, is left out, with its reason in the log, and the others are collected.
ngshare's record of when the submission arrived (taken on the server) is appended by
ngshare_exchange as the last ``timestamp.txt`` and wins over one the student put in the folder.

Importing this module imports ngshare_exchange, which reads ``JUPYTERHUB_USER`` (or ``USER``) at
import: it is meant for a hub's server, and nbgrader_config.py names it only under ngshare.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
from pathlib import Path, PurePosixPath

from ngshare_exchange import ExchangeCollect
from traitlets import Integer

from cnnbook.grading.collect import STUDENT_ID

__all__ = ["NgshareCollect", "UnsafeSubmission", "submission_files"]


class UnsafeSubmission(ValueError):
    """A submission's file list that cannot be written under its destination as it is."""


def submission_files(entries: list[dict], limit_bytes: int,
                     limit_files: int = 1000) -> list[tuple[PurePosixPath, bytes]]:
    """``(relative path, content)`` of each file of an ngshare submission (``{"path",
    "content"}``, content base64), in order; raises :class:`UnsafeSubmission` for an absolute
    path, a ``..``, an empty or ``.`` part, a control character (a NUL byte included), content
    that is not base64, more than ``limit_bytes`` in all or more than ``limit_files`` files."""
    if len(entries) > limit_files:
        raise UnsafeSubmission(f"more than {limit_files} files")
    files, total = [], 0
    for entry in entries:
        raw = str(entry.get("path", ""))
        if any(ord(character) < 32 or ord(character) == 127 for character in raw):
            raise UnsafeSubmission(f"a file path with a control character: {raw!r}")
        path = PurePosixPath(raw)
        if (not path.parts or path.is_absolute()
                or any(part in ("", ".", "..") for part in path.parts)):
            raise UnsafeSubmission(f"a file path {str(path)!r} that would leave the submission")
        try:
            content = base64.b64decode(str(entry.get("content", "")), validate=False)
        except (binascii.Error, ValueError) as error:
            raise UnsafeSubmission(f"{path}: its content is not base64 ({error})") from None
        total += len(content)
        if total > limit_bytes:
            raise UnsafeSubmission(f"more than {limit_bytes // 2**20} MiB of files")
        files.append((path, content))
    return files


class NgshareCollect(ExchangeCollect):
    """ngshare_exchange's collect; each submission written by :func:`submission_files` into a
    staging folder, renamed into place, or left out with its reason."""

    max_submission_mib = Integer(200, help="A submission with more files than this (MiB, all "
                                 "files together) is left out of the collection.").tag(
                                     config=True)
    max_files = Integer(1000, help="A submission of more files than this is left out of the "
                        "collection.").tag(config=True)

    def copy_files(self):
        """ngshare_exchange's loop over the latest submission of each student, without its
        removal of a previous collection before the new one is written (:meth:`do_copy` swaps
        it), and with one student's failure kept to that student."""
        assignment = self.coursedir.assignment_id
        if not self.src_records:
            self.log.warning('No submissions of "%s" for course "%s" to collect', assignment,
                             self.coursedir.course_id)
        for record in self.src_records:
            student_id = str(record.get("student_id", ""))
            try:
                if not STUDENT_ID.match(student_id):
                    raise UnsafeSubmission(f"a student id that could be a path: {student_id!r}")
                destination = self.coursedir.format_path(self.coursedir.submitted_directory,
                                                         student_id, assignment)
                if os.path.isdir(destination):
                    existing = self.coursedir.get_existing_timestamp(destination)
                    if not self.update or (existing is not None
                                           and record["timestamp"] <= existing):
                        self.log.info("Submission already collected, newest kept: %s %s",
                                      student_id, assignment)
                        continue
                submission = self._get_submission(self.coursedir.course_id, assignment,
                                                  student_id)
                if submission is None:
                    raise UnsafeSubmission("ngshare did not send it")
                self.log.info("Collecting submission: %s %s", student_id, assignment)
                self.do_copy(submission["files"], destination)
            except Exception as error:  # noqa: BLE001 (one student's failure stays theirs)
                self.log.error("Left out the submission of %r: %s: %s", student_id,
                               type(error).__name__, error)

    def do_copy(self, src, dest):
        destination = Path(dest)
        staging = destination.with_name(destination.name + ".collecting")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            files = submission_files(src, self.max_submission_mib * 2**20, self.max_files)
            destination.parent.mkdir(parents=True, exist_ok=True)
            for path, content in files:
                target = staging.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as written:  # ngshare's timestamp.txt comes last, wins
                    written.write(content)
            previous = destination.with_name(destination.name + ".previous")
            shutil.rmtree(previous, ignore_errors=True)
            if destination.exists():
                os.rename(destination, previous)
            os.rename(staging, destination)
            shutil.rmtree(previous, ignore_errors=True)
        except Exception as error:  # noqa: BLE001 (a submission that cannot be written is left out)
            shutil.rmtree(staging, ignore_errors=True)
            self.log.error("Left out the submission for %s: %s: %s", destination,
                           type(error).__name__, error)
