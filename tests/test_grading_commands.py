"""What the grader tells an instructor about cells it could not grade: the summary printed when
``nbgrader autograde`` ends (without cutting the process's own exit short) and
``python -m cnnbook.grading deferred``, which lists those cells from the gradebook and exits 2 while
any waits. tests/test_hostile_corpus.py checks both on real autograde runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from cnnbook.grading.nbgrader_steps import deferred_in_gradebook

VENV_BIN = str(Path(sys.executable).parent)
# nbgrader's own gradebook API warns about its session while adding submissions
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")


@pytest.fixture
def nbgrader_on_path(monkeypatch):
    """nbgrader's gradebook runs ``alembic`` from PATH, as it does in the course's venv."""
    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))


def _gradebook(folder: Path) -> str:
    """A gradebook of one notebook with a test cell, a code answer graded by hand and a written
    answer; two students: ``deferred`` (the test waits for manual grading without an automatic
    score, as SaveAutoGradesOrDefer leaves it) and ``graded`` (the test scored 0 automatically)."""
    db_url = f"sqlite:///{folder / 'gradebook.db'}"
    with Gradebook(db_url) as gradebook:
        gradebook.add_assignment("sizing")
        gradebook.add_notebook("sizing", "sizing")
        gradebook.add_grade_cell("test_output_size", "sizing", "sizing", max_score=2,
                                 cell_type="code")
        for name, cell_type in (("code_answer", "code"), ("written_answer", "markdown")):
            gradebook.add_solution_cell(name, "sizing", "sizing")
            gradebook.add_grade_cell(name, "sizing", "sizing", max_score=1, cell_type=cell_type)
        for student in ("deferred", "graded"):
            gradebook.add_student(student)
            gradebook.add_submission("sizing", student)
        graded = gradebook.find_grade("test_output_size", "sizing", "sizing", "graded")
        graded.auto_score, graded.needs_manual_grade = 0.0, False
        gradebook.db.commit()
    return db_url


def test_deferred_lists_test_cells_without_a_score_and_never_answers(tmp_path, nbgrader_on_path):
    db_url = _gradebook(tmp_path)
    assert deferred_in_gradebook(db_url, "sizing") == [("deferred", "sizing", "test_output_size")]
    # an instructor grades it by hand: it no longer waits
    with Gradebook(db_url) as gradebook:
        grade = gradebook.find_grade("test_output_size", "sizing", "sizing", "deferred")
        grade.manual_score, grade.needs_manual_grade = 1.0, False
        gradebook.db.commit()
    assert deferred_in_gradebook(db_url, "sizing") == []
    with Gradebook(db_url) as gradebook:
        assert gradebook.find_assignment("sizing").num_submissions == 2


def test_deferred_names_an_assignment_the_gradebook_lacks(tmp_path, nbgrader_on_path):
    with pytest.raises(ValueError, match="no assignment 'resnet'"):
        deferred_in_gradebook(_gradebook(tmp_path), "resnet")


def test_deferred_command_exits_2_while_a_cell_waits(tmp_path, nbgrader_on_path):
    _gradebook(tmp_path)
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\nc.CourseDirectory.root = "
        f"{str(tmp_path)!r}\n")
    command = [sys.executable, "-m", "cnnbook.grading", "deferred", "sizing"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    listed = [line for line in result.stdout.splitlines() if line.count("/") == 2]
    assert listed == ["deferred/sizing/sizing test_output_size"], result.stdout
    missing = subprocess.run([*command[:-1], "resnet"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 3 and "no assignment 'resnet'" in missing.stderr


def test_summary_at_exit_keeps_the_exit_status_and_the_other_exit_handlers(tmp_path):
    """The summary of deferred cells is printed at exit; the process still exits with its own
    status and runs every other exit handler (the judges' and temporary folders' clean-up, which
    an ``os._exit`` there used to skip)."""
    program = textwrap.dedent("""
        import atexit, sys
        atexit.register(lambda: print("earlier handler ran", file=sys.stderr, flush=True))
        from cnnbook.grading import nbgrader_steps
        nbgrader_steps._DEFERRED.append(("ana", "sizing", "sizing", "test_x", "the judge died"))
        sys.exit(0)
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 graded cell(s) were NOT graded automatically" in result.stderr
    assert "ana/sizing/sizing test_x: the judge died" in result.stderr
    assert result.stderr.index("NOT graded automatically") < result.stderr.index(
        "earlier handler ran")
