"""Sandboxed ``nbgrader autograde`` and leak-free ``nbgrader generate_feedback``: the nbgrader
preprocessors that ``nbgrader_config.py`` puts in place of nbgrader's own.

Autograding (``c.Autograde.sanitize_preprocessors`` / ``autograde_preprocessors``):

* :class:`ForgetUnknownCells` (before nbgrader's ``OverwriteCells``): a cell whose metadata names
  a grade id the gradebook does not know becomes an ordinary student cell, so that a renamed test
  cell is put back and graded instead of failing the submission.
* :class:`CheckSubmittedFiles` (after nbgrader has copied the submission to ``autograded/``):
  removes from the copy every file that was a symlink or not a regular file in ``submitted/``,
  every file larger than ``c.GradingSandbox.max_file_bytes``, and every file or folder whose name
  would shadow an installed module (``cnnbook/``, ``numpy.py``); a note at the top of the notebook
  says what was removed and why. A submitted notebook that is itself a symlink is not graded
  (every answer cell raises the reason). ``submitted/`` itself is never modified.
* :class:`CheckAnswerSource` (before execution): analyses the student's cells outside the kernel
  with :mod:`cnnbook.grading.source_rules`; a cell that breaks a rule is replaced by one that
  raises an
  ``AssertionError`` naming the rule, so it defines nothing and the tests that need it fail.
* :class:`SandboxedExecute` (nbgrader's ``Execute`` with a short per-cell timeout): each kernel runs
  under bubblewrap (:mod:`cnnbook.grading.sandbox`), in the submission's own copy, with the memory,
  process and output limits of ``c.GradingSandbox``. When a cell times out or the kernel dies
  (memory or process limit, ``os._exit``, a crash) or cannot start, that cell and every later
  graded cell are *deferred*: they keep no automatic score and wait for manual grading, with the
  reason written under the cell; the cells that ran before keep their scores.
* :class:`SaveAutoGradesOrDefer`: nbgrader's ``SaveAutoGrades``, then marks deferred cells
  ``needs_manual_grade`` without an automatic score. At the end of the command a summary of
  deferred cells goes to stderr; ``python -m cnnbook.grading deferred ASSIGNMENT`` lists them
  from the gradebook and exits with status 2 while any waits.

Feedback (``c.GenerateFeedback.preprocessors``): :class:`StripHiddenTests` removes the hidden-test
region of every cell (the code between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``)
and cuts the traceback of a failing test cell to its last line, which names the error and the
assertion message but shows no test code.

All limits live in ``c.GradingSandbox`` (:class:`cnnbook.grading.settings.GradingSandbox`);
``solutions/README.md`` documents them and the threat model.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_markdown_cell, new_output
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor, SaveAutoGrades
from traitlets import Bool, Integer, List, Unicode, default

from cnnbook.grading import sandbox, verdicts
from cnnbook.grading import source_rules as answers
from cnnbook.grading.jupyter_internals import HookedExecute, HookedKernelManager
from cnnbook.grading.settings import GradingSandbox

__all__ = [
    "SandboxedKernelManager",
    "SandboxedExecute",
    "CheckSubmittedFiles",
    "ForgetUnknownCells",
    "CheckAnswerSource",
    "SaveAutoGradesOrDefer",
    "StripHiddenTests",
    "JudgeOutsideKernel",
    "judged_assignments",
    "without_hidden_tests",
    "deferred_cells",
    "deferred_in_gradebook",
]

JUDGING_KEY = "cnnbook_judging"
"""Key of ``resources`` under which :class:`SandboxedExecute` hands the judging it started to
:class:`JudgeOutsideKernel`."""

_JUDGING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge")
"""Where a notebook's judging runs while its kernel runs."""

DEFERRED_KEY = "cnnbook_deferred"
"""Key of ``resources`` under which the preprocessors of one notebook pass deferred cells
(``{grade_id: reason}``) from :class:`SandboxedExecute` to :class:`SaveAutoGradesOrDefer`."""

_DEFERRED: list[tuple[str, str, str, str, str]] = []
"""(student, assignment, notebook, grade_id, reason) of every cell deferred in this process."""


def deferred_cells() -> list[tuple[str, str, str, str, str]]:
    """Cells deferred to manual grading so far in this process (the exit summary)."""
    return list(_DEFERRED)


def _report_deferred() -> None:
    """At exit: name every deferred cell on stderr. The command's exit status stays nbgrader's
    (the grades are saved); ``python -m cnnbook.grading deferred ASSIGNMENT`` lists the same cells
    from the gradebook and exits 2 when there are any, for scripts."""
    if not _DEFERRED:
        return
    lines = [f"nbgrader autograde: {len(_DEFERRED)} graded cell(s) were NOT graded automatically "
             "(a grader limit or failure, not the student's score); grade them in formgrader "
             "(python -m cnnbook.grading deferred <assignment> lists them):"]
    lines += [f"  {student}/{assignment}/{notebook} {grade_id}: {reason}"
              for student, assignment, notebook, grade_id, reason in _DEFERRED]
    sys.stdout.flush()
    print("\n".join(lines), file=sys.stderr, flush=True)


atexit.register(_report_deferred)


def deferred_in_gradebook(db_url: str, assignment: str) -> list[tuple[str, str, str]]:
    """``(student, notebook, grade_id)`` of every autograded test cell of ``assignment`` in the
    gradebook at ``db_url`` that waits for manual grading without an automatic score: the cells
    a grader limit or failure deferred (:class:`SaveAutoGradesOrDefer`), until an instructor
    grades them. Manually graded answers and tasks are not listed."""
    found = []
    with Gradebook(db_url) as gradebook:
        try:
            submissions = gradebook.find_assignment(assignment).submissions
        except MissingEntry:
            raise ValueError(f"the gradebook has no assignment {assignment!r}") from None
        for submission in submissions:
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if not (grade.needs_manual_grade and grade.auto_score is None
                            and grade.manual_score is None and grade.cell.cell_type == "code"):
                        continue
                    try:
                        gradebook.find_solution_cell(grade.name, notebook.name, assignment)
                        continue  # a manually graded answer, not a test
                    except MissingEntry:
                        found.append((submission.student.id, notebook.name, grade.name))
    return sorted(found)



def _cell_label(cell, index: int) -> str:
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
    return f"`{grade_id}`" if grade_id else f"number {index + 1}"


def _is_graded(cell) -> bool:
    metadata = cell.metadata.get("nbgrader", {})
    return bool(metadata.get("grade")) and cell.cell_type == "code"


@functools.lru_cache(maxsize=1)
def _matplotlib_font_cache() -> Path | None:
    """The grader's own matplotlib font list (built on first import), copied into each kernel's
    private config folder: without it every sandboxed kernel that imports matplotlib rebuilds the
    cache, seconds to a minute on a busy machine."""
    try:  # matplotlib loads slowly and the grader draws nothing: only once a kernel starts
        import matplotlib
        import matplotlib.font_manager  # noqa: F401 (builds the font list when missing)
    except ImportError:
        return None
    caches = sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))
    return caches[-1] if caches else None


class SandboxedKernelManager(HookedKernelManager):
    """A kernel manager whose kernel runs under :func:`cnnbook.grading.sandbox.sandboxed_command`:
    the working directory (the submission's copy) writable, its connection file and ZMQ ``ipc``
    sockets in a private runtime folder, ``python -P`` so that the working directory is not on
    the import path, its stdout and stderr discarded, and a
    :class:`cnnbook.grading.sandbox.Watchdog` on memory and processes."""

    settings: GradingSandbox | None = None
    watchdog: sandbox.Watchdog | None = None
    _runtime_dir: str | None = None

    def before_launch(self) -> None:
        self._runtime_dir = tempfile.mkdtemp(prefix="cnnbook-kernel-")
        self.transport = "ipc"
        self.ip = os.path.join(self._runtime_dir, "kernel")
        self.connection_file = os.path.join(self._runtime_dir, "kernel.json")
        matplotlib_dir = os.path.join(self._runtime_dir, "matplotlib")
        os.mkdir(matplotlib_dir)
        font_cache = _matplotlib_font_cache()
        if font_cache is not None:
            shutil.copy(font_cache, os.path.join(matplotlib_dir, font_cache.name))

    def format_kernel_cmd(self, extra_arguments=None):
        if self.kernel_name not in ("python3", "python"):
            raise ValueError(f"the grading sandbox runs Python kernels only, the notebook asks "
                             f"for {self.kernel_name!r}")
        extra = [argument for argument in (extra_arguments or [])]
        argv = [sys.executable, "-P", "-m", "ipykernel_launcher", "-f",
                os.path.realpath(self.connection_file), "--IPKernelApp.ignore_cwd=True", *extra]
        settings = self.settings or GradingSandbox()
        if not settings.enabled:
            return argv
        readonly_paths, data_environment = settings.kernel_data()
        return sandbox.sandboxed_command(
            argv, writable_dir=self.launch_folder(), readonly_paths=readonly_paths,
            socket_dir=self._runtime_dir, tmp_bytes=settings.max_tmp_mib * 2**20,
            environment={"NBGRADER_EXECUTION": os.environ.get("NBGRADER_EXECUTION", "autograde"),
                         "MPLCONFIGDIR": os.path.join(self._runtime_dir, "matplotlib"),
                         **data_environment})

    def after_start(self) -> None:
        settings = self.settings or GradingSandbox()
        process = self.kernel_process()
        if process is not None:
            self.watchdog = sandbox.Watchdog(
                process.pid, max_memory_bytes=settings.memory_limit_mib * 2**20,
                max_processes=settings.max_processes, max_threads=settings.max_threads,
                folder=self.launch_folder(), max_folder_bytes=settings.max_folder_mib * 2**20
            ).start()

    def after_cleanup(self, restart: bool) -> None:
        """Stop the watchdog and remove the runtime folder (called once or twice per kernel:
        nbclient cleans up again after a shutdown, and only then for a kernel that died)."""
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        if self._runtime_dir and not restart:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None


class SandboxedExecute(HookedExecute):
    """nbgrader's ``Execute`` for autograding: sandboxed kernels (:class:`SandboxedKernelManager`),
    ``timeout`` seconds per cell (``c.SandboxedExecute.timeout``; ``nbgrader validate`` keeps
    ``c.Execute.timeout``), at most ``c.GradingSandbox.max_output_bytes`` of output per notebook,
    and cells that could not be graded deferred to manual grading with their reason."""

    timeout = Integer(120, allow_none=True, help="Seconds one cell may run while autograding."
                      ).tag(config=True)
    notebook_timeout = Integer(1800, help="Seconds all the cells of one notebook may run while "
                               "autograding; past it the rest of the notebook is not run.").tag(
                                   config=True)
    startup_timeout = Integer(180, help="Seconds a grading kernel may take to start (a busy "
                              "machine); past it the notebook waits for manual grading.").tag(
                                  config=True)
    interrupt_on_timeout = Bool(False)

    @default("kernel_manager_class")
    def _kernel_manager_class_default(self):
        return SandboxedKernelManager

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.settings = self._settings
        return km

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        self._output_bytes += size
        limit = self._settings.max_output_bytes
        if self._output_bytes > limit:
            if not self._output_dropped:
                self._output_dropped = True
                outs.append(new_output("stream", name="stderr", text=(
                    f"\n[grader: this notebook's output passed the limit of {limit:,} bytes; "
                    "the rest of it was dropped]\n")))
            return self._keep_grade_signal(outs, msg)
        return super().output(outs, msg, display_id, cell_index)

    def accept_display_update(self, msg: dict) -> bool:
        """A display update rewrites earlier outputs in place: it counts toward the output limit
        like any output, and past the limit it is dropped (a test repeats the 20 MB update)."""
        self._output_bytes += len(json.dumps(msg.get("content", {}), default=str))
        return self._output_bytes <= self._settings.max_output_bytes

    @staticmethod
    def _keep_grade_signal(outs, msg) -> None:
        """Past the output limit, keep (cut short) the outputs that decide a test cell's grade:
        nbgrader scores a test cell 0 when its outputs hold an error or a stderr stream and
        reads partial credit from its result, so dropping them would turn a failing test into
        a passing one (a flood of output before the tests would pass them all). At most one
        error or stderr stream and one result per cell, each under a kilobyte."""
        msg_type, content = msg.get("msg_type"), msg.get("content", {})
        failed = any(output.get("output_type") == "error" or (
            output.get("output_type") == "stream" and output.get("name") == "stderr")
            for output in outs)
        if msg_type == "error" and not failed:
            ename, evalue = str(content.get("ename", ""))[:100], str(content.get("evalue", ""))
            outs.append(new_output("error", ename=ename, evalue=evalue[:500],
                                   traceback=[f"{ename}: {evalue[:500]}"]))
        elif msg_type == "stream" and content.get("name") == "stderr" and not failed:
            outs.append(new_output("stream", name="stderr", text=str(content.get("text"))[:500]))
        elif msg_type == "execute_result" and not any(
                output.get("output_type") == "execute_result" for output in outs):
            text = str(content.get("data", {}).get("text/plain", ""))[:500]
            outs.append(new_output("execute_result", data={"text/plain": text},
                                   execution_count=content.get("execution_count")))
        return None

    def _defer(self, cell, index: int, reason: str, deferred: dict) -> None:
        if not _is_graded(cell):
            return
        grade_id = cell.metadata.nbgrader["grade_id"]
        deferred[grade_id] = reason
        cell.outputs.append(new_output("stream", name="stderr", text=(
            f"\n[grader: cell {_cell_label(cell, index)} was not graded automatically: {reason}. "
            "An instructor will grade it by hand; this is not your score.]\n")))

    def preprocess(self, nb, resources=None, km=None):
        """Run the notebook in a fresh copy of the submission's regular files (the graded folder
        itself is never the kernel's: nothing the kernel leaves there, a link in place of the
        notebook included, is ever written through or copied); for an assignment judged outside
        the kernel, run its test cells without their hidden tests and put them back after."""
        student, assignment, notebook = _notebook_ids(resources)
        judged = assignment in judged_assignments(self)
        hidden = {}
        if judged:  # the judge starts first and runs beside the kernel
            judge = JudgeOutsideKernel(parent=self)
            resources[JUDGING_KEY] = judge.start(nb, resources)
            if not judge.feedback_kernel:  # the verdicts alone make the feedback
                return nb, resources
            for index, cell in enumerate(nb.cells):
                if _is_graded(cell) and not cell.metadata.nbgrader.get("solution"):
                    hidden[index] = cell.source
                    cell.source = without_hidden_tests(cell.source)
        metadata = resources.setdefault("metadata", {})
        graded_folder = metadata.get("path")
        scratch = tempfile.mkdtemp(prefix="cnnbook-kernel-cwd-")
        if graded_folder and os.path.isdir(graded_folder):
            verdicts.copy_regular_files(Path(graded_folder), Path(scratch))
        metadata["path"] = scratch
        try:
            return self._execute(nb, resources, km, judged)
        finally:
            metadata["path"] = graded_folder
            shutil.rmtree(scratch, ignore_errors=True)
            for index, source in hidden.items():
                nb.cells[index].source = source

    def _execute(self, nb, resources, km, judged: bool):
        self._settings = GradingSandbox(parent=self)
        self._output_bytes, self._output_dropped = 0, False
        deferred = resources.setdefault(DEFERRED_KEY, {})
        self.start_notebook(nb, resources, km)

        stop_reason = None
        missing = [path for path in self._settings.readonly_paths if not os.path.exists(path)]
        if missing:
            stop_reason = (f"the grading machine lacks {', '.join(missing)} "
                           "(c.GradingSandbox.readonly_paths)")
        elif self._settings.enabled:
            sandbox.require_sandbox()  # CheckSubmittedFiles stopped the command already if not
        first_unrun = 0
        if stop_reason is None:
            try:
                with self.setup_kernel():
                    info = self.wait_for_reply(self.kc.kernel_info())
                    self.nb.metadata["language_info"] = info["content"]["language_info"]
                    per_cell, deadline = self.timeout, time.monotonic() + self.notebook_timeout
                    whole = (f"the notebook ran longer than the {self.notebook_timeout} s limit "
                             "for all its cells")
                    for index, cell in enumerate(self.nb.cells):
                        first_unrun = index
                        left = deadline - time.monotonic()
                        if left <= 0:
                            stop_reason = whole
                            break
                        self.timeout = max(1, min(per_cell, int(left)))
                        try:
                            self.preprocess_cell(cell, resources, index)
                        except CellTimeoutError:
                            stop_reason = (f"cell {_cell_label(cell, index)} ran longer than the "
                                           f"{per_cell} s limit per cell"
                                           if self.timeout == per_cell else whole)
                        except DeadKernelError:
                            stop_reason = self._death_reason(cell, index)
                        finally:
                            self.timeout = per_cell
                        if stop_reason:
                            break
                    else:
                        first_unrun = len(self.nb.cells)
            except (DeadKernelError, RuntimeError, TimeoutError) as error:
                if stop_reason is None:
                    stop_reason = f"the grading kernel failed ({type(error).__name__}: {error})"
        if stop_reason and judged:
            # the judge decides every test: the kernel's stop only costs the student's feedback
            code_cells = [cell for cell in self.nb.cells[first_unrun:] if cell.cell_type == "code"]
            if code_cells:
                code_cells[0].outputs.append(new_output("stream", name="stdout", text=(
                    f"\n[grader: your notebook stopped here ({stop_reason}); the cells below were "
                    "not run in it. The tests are judged apart from your notebook.]\n")))
        elif stop_reason:
            for index in range(first_unrun, len(self.nb.cells)):
                self._defer(self.nb.cells[index], index, stop_reason, deferred)
            self.log.error("Deferred to manual grading: %s", stop_reason)
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _death_reason(self, cell, index: int) -> str:
        watchdog = getattr(self.km, "watchdog", None)
        if watchdog is not None and watchdog.reason:
            why = watchdog.reason
        else:
            process = self.km.kernel_process() if self.km is not None else None
            code = process.poll() if process is not None else None
            why = f"exit status {code}" if code is not None else "no reply"
        return f"the kernel stopped while running cell {_cell_label(cell, index)} ({why})"


def _notebook_ids(resources) -> tuple[str, str, str]:
    info = resources["nbgrader"]
    return info["student"], info["assignment"], info["notebook"]


class SaveAutoGradesOrDefer(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades``; then every cell :class:`SandboxedExecute` deferred gets no
    automatic score and ``needs_manual_grade`` (a grader failure is never the student's 0)."""

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        deferred = resources.get(DEFERRED_KEY, {})
        if deferred:
            student, assignment, notebook = _notebook_ids(resources)
            with Gradebook(resources["nbgrader"]["db_url"]) as gradebook:
                for grade_id, reason in deferred.items():
                    grade = gradebook.find_grade(grade_id, notebook, assignment, student)
                    grade.auto_score = None
                    grade.needs_manual_grade = True
                    _DEFERRED.append((student, assignment, notebook, grade_id, reason))
                gradebook.db.commit()
        return nb, resources


def _shadows_a_module(name: str) -> bool:
    """Whether a submitted file or folder called ``name`` could be imported in place of an
    installed module (``numpy.py``, ``cnnbook/``, ``keras.so``)."""
    return answers.is_installed_module(name.split(".")[0])


class CheckSubmittedFiles(NbGraderPreprocessor):
    """First step of autograding (runs after nbgrader copied ``submitted/<student>/<id>/`` to
    ``autograded/<student>/<id>/``): stops the command when the sandbox is required but missing;
    removes from the copy what the kernel must not see (see the module docstring); adds a note
    for the student. Never modifies ``submitted/``."""

    def preprocess(self, nb, resources):
        settings = GradingSandbox(parent=self)
        student, assignment, notebook = _notebook_ids(resources)
        coursedir = CourseDirectory(config=self.config)
        submitted = Path(coursedir.format_path(coursedir.submitted_directory, student, assignment))
        copy = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
        if settings.enabled:
            try:
                sandbox.require_sandbox()
            except sandbox.SandboxUnavailable as error:
                shutil.rmtree(copy, ignore_errors=True)  # so that a re-run grades it
                raise SystemExit(f"nbgrader autograde stopped: {error}") from None
        source_folder = Path(coursedir.format_path(coursedir.source_directory, ".", assignment))
        submitted_notebook = submitted / f"{notebook}.ipynb"
        if submitted_notebook.is_symlink() or not submitted_notebook.is_file():
            reason = ("the submitted notebook is a symbolic link or not a regular file, so it was "
                      "not graded")
            for cell in nb.cells:
                metadata = cell.metadata.get("nbgrader", {})
                if cell.cell_type == "code" and not metadata.get("locked"):
                    cell.source = f"raise AssertionError({reason!r})"
            nb.cells.insert(0, new_markdown_cell(f"**Grader's note.** {reason[0].upper()}"
                                                 f"{reason[1:]}."))
            self.log.warning("%s/%s: %s", student, assignment, reason)
        removed = []
        for path in sorted(copy.rglob("*"), reverse=True) if copy.is_dir() else []:
            relative = path.relative_to(copy)
            if relative.suffix == ".ipynb" and len(relative.parts) == 1:
                continue
            original = submitted / relative
            if not os.path.lexists(original):
                continue  # an instructor file copied from the source folder
            if (source_folder / relative).exists() and relative.as_posix() not in (
                    self._kept_student_files(assignment)):
                continue
            reason = None
            if original.is_symlink():
                reason = "it is a symbolic link"
            elif len(relative.parts) == 1 and _shadows_a_module(relative.name):
                reason = f"its name would hide the installed module `{relative.name.split('.')[0]}`"
            elif original.is_file() and original.stat().st_size > settings.max_file_bytes:
                reason = (f"it is larger than the {settings.max_file_bytes / 2**20:g} MiB limit "
                          "for submitted files")
            elif not original.is_file() and not original.is_dir():
                reason = "it is not a regular file"
            if reason:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.lexists(path):
                    path.unlink()
                removed.append(f"`{relative.as_posix()}`: {reason}")
        if removed:
            note = ("**Grader's note.** These submitted files were not used for grading:\n\n"
                    + "\n".join(f"* {line}" for line in sorted(removed)))
            nb.cells.insert(0, new_markdown_cell(note))
            self.log.warning("%s/%s: left out %s", student, assignment, "; ".join(removed))
        return nb, resources

    def _kept_student_files(self, assignment: str) -> list[str]:
        excluded = self.config.Autograde.get("exclude_overwriting", {})
        return list(excluded.get(assignment, []))


class ForgetUnknownCells(NbGraderPreprocessor):
    """Before nbgrader's ``OverwriteCells``: a cell whose nbgrader metadata names a grade id that
    the gradebook does not know (a renamed test cell, forged metadata) loses that metadata and
    becomes an ordinary student cell. (``OverwriteCells`` with ``add_missing_cells`` then puts the
    real test cell back; without this step it fails on such a cell with a ``KeyError`` and the
    whole submission is lost.)"""

    def preprocess(self, nb, resources):
        student, assignment, notebook = _notebook_ids(resources)
        with Gradebook(resources["nbgrader"]["db_url"]) as gradebook:
            known = {cell.name for cell in gradebook.find_notebook(notebook, assignment
                                                                   ).source_cells}
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if "nbgrader" in cell.metadata and grade_id not in known:
                del cell.metadata["nbgrader"]
                self.log.warning("%s/%s: cell %r is unknown to the gradebook; graded as the "
                                 "student's own cell", student, assignment, grade_id)
        return nb, resources


class CheckAnswerSource(NbGraderPreprocessor):
    """Analyses every cell the student could write (see
    :func:`cnnbook.grading.source_rules.find_violations`)
    outside the kernel, before execution; a cell that breaks a rule is replaced by a cell that
    raises ``AssertionError`` with the rule, so its definitions do not exist for the tests."""

    def preprocess(self, nb, resources):
        if _notebook_ids(resources)[1] in judged_assignments(self):
            return nb, resources  # judged outside the kernel: what it refuses cannot be imported
        violations = answers.find_violations(nb)
        for index, problems in sorted(violations.items()):
            cell = nb.cells[index]
            message = ("This cell was not run: " + "; ".join(problems)
                       + ". Write the answer yourself, without these.")
            original = "\n".join(f"# {line}" for line in cell.source.splitlines())
            cell.source = f"raise AssertionError({message!r})\n# Your code was:\n{original}"
            self.log.warning("%s: cell %d refused: %s", "/".join(_notebook_ids(resources)),
                             index + 1, "; ".join(problems))
        return nb, resources


HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def without_hidden_tests(source: str, begin: str = HIDDEN_BEGIN, end: str = HIDDEN_END) -> str:
    """``source`` without its hidden-test regions, each replaced by a comment that says so."""
    kept, hidden = [], False
    for line in source.splitlines():
        if begin in line:
            hidden = True
            kept.append(line[: len(line) - len(line.lstrip())] + "# (hidden tests: not shown)")
        elif end in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept)


class StripHiddenTests(NbGraderPreprocessor):
    """A step of ``nbgrader generate_feedback``: removes the hidden-test regions from every cell
    and cuts the tracebacks of cells that held hidden tests to their last line (error name and
    message), so no feedback page shows hidden-test code."""

    begin = Unicode(HIDDEN_BEGIN).tag(config=True)
    end = Unicode(HIDDEN_END).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if self.begin not in cell.source and not _is_graded(cell):
            return cell, resources
        cell.source = without_hidden_tests(cell.source, self.begin, self.end)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                last_line = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
                output["traceback"] = [last_line]
        return cell, resources


def judged_assignments(parent) -> list[str]:
    """The assignments whose tests the judge decides (``c.JudgeOutsideKernel.assignments``)."""
    return list(JudgeOutsideKernel(parent=parent).assignments)


def _kernel_output_as_text(output) -> dict:
    """A kernel output of a test cell in a form that no longer decides the grade (nbgrader reads
    errors, stderr and numeric results): errors and stderr become stdout text, results become
    displays."""
    kind = output.get("output_type")
    if kind == "error":
        return new_output("stream", name="stdout", text=(
            f"[in your notebook this cell raised {str(output.get('ename'))[:100]}: "
            f"{str(output.get('evalue'))[:1000]}]\n"))
    if kind == "stream" and output.get("name") == "stderr":
        return new_output("stream", name="stdout", text=str(output.get("text", ""))[:10_000])
    if kind == "execute_result":
        return new_output("display_data", data=output.get("data", {}),
                          metadata=output.get("metadata", {}))
    return output


class JudgeOutsideKernel(NbGraderPreprocessor):
    """After the kernel ran the notebook (for the student's feedback), decide every autograded
    test cell of an assignment in :attr:`assignments` outside the student's kernel
    (:func:`cnnbook.grading.verdicts.judge_notebook`): the judge runs the instructor's test cells,
    hidden tests included, read from the source notebook; the student's functions run in separate
    sandboxed processes and answer with plain data. Each test cell's outputs then say the verdict:
    the kernel's errors, stderr and results become plain text, and a failed verdict adds one
    error with the judge's message, which nbgrader scores 0. A verdict the grader could not reach
    goes to manual grading with its reason (:class:`SaveAutoGradesOrDefer`)."""

    assignments = List(Unicode(), ["sizing", "parameters", "architectures", "resnet"],
                       help="Assignments judged outside the kernel; the others keep the "
                       "kernel's outcome.").tag(config=True)
    call_timeout = Integer(60, help="Seconds one call of a student's function may take.").tag(
        config=True)
    notebook_timeout = Integer(1200, help="Seconds for judging one notebook; past it the "
                               "remaining tests fail if the student's code took more than half "
                               "of the tests' time, and go to manual grading otherwise.").tag(
                                   config=True)
    statement_timeout = Integer(60, help="Seconds one top-level statement of the student's "
                                "cells may run in a student process (then it is skipped)."
                                ).tag(config=True)
    feedback_kernel = Bool(True, help="Also run the student's notebook in a sandboxed kernel, "
                           "for the feedback only: the student sees their own outputs and "
                           "figures beside the verdicts. False: the feedback shows the verdicts "
                           "alone, and grading takes about a third less CPU time (6 sizing "
                           "submissions: 42 s against 65 s). The grades are the same either "
                           "way.").tag(config=True)

    def start(self, nb, resources) -> Future:
        """Start judging ``nb`` in the background (:class:`SandboxedExecute` calls this before
        its kernel runs, so that the judge and the kernel run side by side); the future's result
        is the list of verdicts."""
        student, assignment, notebook = _notebook_ids(resources)
        settings = GradingSandbox(parent=self)
        if not settings.enabled:
            raise SystemExit(
                f"nbgrader autograde stopped: {assignment} is judged outside the kernel "
                "(c.JudgeOutsideKernel.assignments), which needs the grading sandbox; "
                "c.GradingSandbox.enabled is False. Install bubblewrap and enable the sandbox, "
                f"or take {assignment} out of c.JudgeOutsideKernel.assignments to grade it by "
                "its kernel")
        coursedir = CourseDirectory(config=self.config)
        source_path = Path(coursedir.format_path(coursedir.source_directory, ".", assignment)
                           ) / f"{notebook}.ipynb"
        job = verdicts.notebook_job(nb, nbformat.read(str(source_path), as_version=4))
        readonly_paths, data_environment = settings.kernel_data()
        limits = verdicts.Limits(
            memory_bytes=settings.memory_limit_mib * 2**20, max_processes=settings.max_processes,
            max_threads=settings.max_threads, folder_bytes=settings.max_folder_mib * 2**20,
            tmp_bytes=settings.max_tmp_mib * 2**20,
            statement_s=self.statement_timeout,
            call_s=self.call_timeout, notebook_s=self.notebook_timeout,
            readonly_paths=tuple(readonly_paths),
            environment=tuple(sorted(data_environment.items())))
        # the submitted files the source notebook names (the saved networks) reach the judge
        # and the student process that hides no package, as copies of regular files; a process
        # that hides a package gets none (a submitted folder could hold a copy of that package)
        folder = resources.get("metadata", {}).get("path")
        files = Path(folder) if folder and os.path.isdir(folder) else None
        return _JUDGING.submit(verdicts.judge_notebook, job.student_cells, job.setup_cells,
                               job.tests, files, limits, job.setup_count, job.answer_names,
                               job.submitted_files)

    def preprocess(self, nb, resources):
        student, assignment, notebook = _notebook_ids(resources)
        if assignment not in self.assignments:
            return nb, resources
        judging = resources.pop(JUDGING_KEY, None) or self.start(nb, resources)
        results = {verdict.grade_id: verdict for verdict in judging.result()}
        deferred = resources.setdefault(DEFERRED_KEY, {})
        for index, cell in enumerate(nb.cells):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id not in results or not _is_graded(cell):
                continue
            verdict = results[grade_id]
            cell.outputs = [_kernel_output_as_text(output) for output in cell.get("outputs", [])]
            if verdict.passed is False:
                cell.outputs.append(new_output(
                    "error", ename="TestFailed", evalue=verdict.message[:2000],
                    traceback=[f"TestFailed: {verdict.message[:2000]}"]))
            elif verdict.passed is None:
                deferred[grade_id] = f"the grader failed: {verdict.message}"
                cell.outputs.append(new_output("stream", name="stdout", text=(
                    f"\n[grader: cell {_cell_label(cell, index)} was not graded automatically "
                    "because the grader failed. An instructor will grade it by hand; this is "
                    "not your score.]\n")))
                self.log.error("%s/%s/%s %s: the grader failed: %s", student, assignment,
                               notebook, grade_id, verdict.message)
        return nb, resources
