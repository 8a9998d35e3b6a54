"""The limits of grading, in one place: ``c.GradingSandbox`` of ``nbgrader_config.py``.

One traitlets object, :class:`GradingSandbox`, is read by every part of the grader: the sandboxed
kernels and the judge of ``nbgrader autograde`` (:mod:`cnnbook.grading.nbgrader_steps`) and the
child processes of the accuracy grader (:mod:`cnnbook.grading.accuracy`), so a limit set in the
course's configuration applies to all of them with one default.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

from traitlets import Bool, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from cnnbook.course.data import write_training_only

__all__ = ["GradingSandbox"]


def _default_readonly_paths() -> list[str]:
    data = os.environ.get("CNNBOOK_DATA")
    return [data] if data else []


@functools.lru_cache(maxsize=None)
def _training_only_copy(folder: str) -> str:
    """A folder, made once per grader process and removed at its exit, holding only the training
    images of the data set in ``folder`` (:func:`cnnbook.course.data.write_training_only`)."""
    copy = tempfile.mkdtemp(prefix="cnnbook-training-only-")
    atexit.register(shutil.rmtree, copy, True)
    write_training_only(folder, copy)
    return copy


class GradingSandbox(LoggingConfigurable):
    """The limits of grading (``c.GradingSandbox`` in ``nbgrader_config.py``): of autograding's
    kernels, judge and student processes, and of the accuracy grader's child processes.
    ``GradingSandbox(config=config)`` reads them from a loaded configuration."""

    enabled = Bool(True, help="Run grading kernels under bubblewrap. When bwrap is missing, "
                   "autograde stops with instructions; set False only to grade on a machine "
                   "without it, knowing that student code then runs with your rights.").tag(
                       config=True)
    memory_limit_mib = Integer(4096, help="Resident memory (MiB) of one grading kernel and its "
                               "children; the kernel is killed above it.").tag(config=True)
    max_processes = Integer(64, help="Processes one grading kernel may have at once (a fork "
                            "bomb is killed).").tag(config=True)
    max_threads = Integer(1024, help="Threads of one grading process and its children (TensorFlow "
                          "starts a few per core).").tag(config=True)
    max_folder_mib = Integer(1024, help="MiB a grading process may write into its folder (a "
                             "throwaway copy of the submission); it is killed above it.").tag(
                                 config=True)
    max_tmp_mib = Integer(512, help="MiB of a grading process's private /tmp (held in memory); "
                          "writes past it fail.").tag(config=True)
    max_output_bytes = Integer(2_000_000, help="Bytes of cell output kept per notebook; later "
                               "output is dropped with a note.").tag(config=True)
    max_file_bytes = Integer(100 * 2**20, help="Largest submitted file (bytes) copied into "
                             "the grading folder; larger files are left out with a note.").tag(
                                 config=True)
    readonly_paths = List(Unicode(), help="Files or folders every grading kernel may read "
                          "(default: the CNNBOOK_DATA folder when set). One that is missing on "
                          "the grading machine defers the whole notebook to manual grading."
                          ).tag(config=True)

    hide_test_images = Bool(True, help="Give grading kernels a copy of the CNNBOOK_DATA folder "
                            "that holds its training images only: the test images the accuracy "
                            "grader measures on are never in a student's process.").tag(
                                config=True)

    @default("readonly_paths")
    def _readonly_paths_default(self):
        return _default_readonly_paths()

    def kernel_data(self) -> tuple[list[str], dict[str, str]]:
        """What a grading kernel reads, and the environment that points it there: the
        ``readonly_paths``, with the ``CNNBOOK_DATA`` folder replaced by its training-only copy
        (``hide_test_images``)."""
        data = os.environ.get("CNNBOOK_DATA")
        paths = list(self.readonly_paths)
        if not (self.hide_test_images and data and data in paths and os.path.isdir(data)):
            return paths, {}
        copy = _training_only_copy(os.path.realpath(data))
        return [copy if path == data else path for path in paths], {"CNNBOOK_DATA": copy}
