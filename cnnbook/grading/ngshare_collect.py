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
renamed into place when every file is written; a submission it cannot write is left out, with
its reason in the log, and the others are collected. ngshare's record of when the submission
arrived (taken on the server) is appended by ngshare_exchange as the last ``timestamp.txt`` and
wins over one the student put in the folder.

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

__all__ = ["NgshareCollect", "UnsafeSubmission", "submission_files"]


class UnsafeSubmission(ValueError):
    """A submission's file list that cannot be written under its destination as it is."""


def submission_files(entries: list[dict], limit_bytes: int) -> list[tuple[PurePosixPath, bytes]]:
    """``(relative path, content)`` of each file of an ngshare submission (``{"path",
    "content"}``, content base64), in order; raises :class:`UnsafeSubmission` for an absolute
    path, a ``..``, an empty or ``.`` part, content that is not base64, or more than
    ``limit_bytes`` in all."""
    files, total = [], 0
    for entry in entries:
        path = PurePosixPath(str(entry.get("path", "")))
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

    def do_copy(self, src, dest):
        destination = Path(dest)
        staging = destination.with_name(destination.name + ".collecting")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for path, content in submission_files(src, self.max_submission_mib * 2**20):
                target = staging.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as written:  # ngshare's timestamp.txt comes last, wins
                    written.write(content)
            if destination.exists():
                shutil.rmtree(destination)
            os.rename(staging, destination)
        except (UnsafeSubmission, OSError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            self.log.error("Left out the submission for %s: %s", destination, error)
