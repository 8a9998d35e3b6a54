"""cnnbook.grading.lms_export: the Canvas gradebook file, written by the real ``nbgrader export``
command, against nbgrader's own CSV export of the same gradebook (its ``score`` column) and the
columns Canvas documents for a gradebook import."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from cnnbook.grading.lms_export import IDENTITY_COLUMNS

STUDENTS = {  # id: (first, last, Canvas user id)
    "alice": ("Alice", "Zeller", "1001"), "bob": ("Bob", "Adams", "1002"),
    "carol": ("Carol", "Adams", "1003")}


def _gradebook(root: Path, lms_ids: dict[str, str]) -> None:
    """Two assignments (sizing: 12 points, parameters: 13): alice late on sizing (a 2-point
    penalty), bob partly right, carol never submitted parameters."""
    scores = {("sizing", "alice"): (12, 2.0), ("sizing", "bob"): (7, 0.0),
              ("sizing", "carol"): (12, 0.0), ("parameters", "alice"): (13, 0.0),
              ("parameters", "bob"): (5.5, 0.0)}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        for assignment, points in (("sizing", 12), ("parameters", 13)):
            gradebook.add_assignment(assignment)
            gradebook.add_notebook(assignment, assignment)
            gradebook.add_grade_cell("answers", assignment, assignment, max_score=points,
                                     cell_type="code")
        for student, (first, last, _) in STUDENTS.items():
            gradebook.add_student(student, first_name=first, last_name=last,
                                  lms_user_id=lms_ids.get(student))
        for (assignment, student), (score, penalty) in scores.items():
            gradebook.add_submission(assignment, student)
            grade = gradebook.find_grade("answers", assignment, assignment, student)
            grade.manual_score = score
            notebook = gradebook.find_submission_notebook(assignment, assignment, student)
            notebook.late_submission_penalty = penalty
            gradebook.db.commit()


def _export(root: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbgrader", "export", *arguments], cwd=root,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def course(tmp_path, monkeypatch):
    # nbgrader creates a gradebook by running `alembic`, which it finds on PATH
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'cnnbook'\n"
        "c.CanvasExport.canvas_assignment_ids = {'sizing': 53001}\n")
    return tmp_path


def test_canvas_file_has_canvas_columns_and_nbgraders_scores(course):
    _gradebook(course, {student: ids[2] for student, ids in STUDENTS.items()})
    ours = _export(course, "--exporter=cnnbook.grading.lms_export.CanvasExport",
                   "--to=canvas.csv")
    assert ours.returncode == 0, ours.stderr
    theirs = _export(course, "--to=nbgrader.csv")  # nbgrader's own exporter: the oracle
    assert theirs.returncode == 0, theirs.stderr
    with open(course / "nbgrader.csv", newline="") as handle:
        expected = {(row["student_id"], row["assignment"]): float(row["score"])
                    for row in csv.DictReader(handle)}
        handle.seek(0)
        max_scores = {row["assignment"]: float(row["max_score"]) for row in csv.DictReader(handle)}
    with open(course / "canvas.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    header, points, students = rows[0], rows[1], rows[2:]
    # the assignments in the gradebook's order, as nbgrader's own export lists them
    assert header == [*IDENTITY_COLUMNS, "parameters", "sizing (53001)"]
    assert points[0] == "Points Possible" and [float(value) for value in points[5:]] == [
        max_scores["parameters"], max_scores["sizing"]]
    # sorted by last name, then first name, as Canvas lists a course
    assert [row[0] for row in students] == ["Adams, Bob", "Adams, Carol", "Zeller, Alice"]
    by_canvas_id = {ids[2]: student for student, ids in STUDENTS.items()}
    for row in students:
        student = by_canvas_id[row[1]]  # Canvas matches the row by this id
        assert row[3] == ""  # SIS Login ID: only when the hub's user names are the logins
        assert float(row[5]) == expected[(student, "parameters")]
        assert float(row[6]) == expected[(student, "sizing")]
    alice = next(row for row in students if row[1] == STUDENTS["alice"][2])
    assert float(alice[6]) == 10  # 12 points less the late penalty of 2


def test_scores_never_use_exponents_and_hub_names_go_in_only_when_asked(course):
    from cnnbook.grading.lms_export import _number

    assert [_number(value) for value in (1e6, 5e-5, 10.0, 2.5, 0.0, 1 / 3)] == [
        "1000000", "0.00005", "10", "2.5", "0", "0.333333"]
    from cnnbook.grading.lms_export import _inert

    # what a spreadsheet would run as a formula is written inert; ordinary names are kept
    assert [_inert(name) for name in ('=HYPERLINK("http://x")', "+1", "@SUM(A1)", "Adams, Bob",
                                      "O'Neil")] == [
        '\'=HYPERLINK("http://x")', "'+1", "'@SUM(A1)", "Adams, Bob", "O'Neil"]
    with open(course / "nbgrader_config.py", "a") as config:
        config.write("c.CanvasExport.hub_user_is_sis_login = True\n")
    _gradebook(course, {student: ids[2] for student, ids in STUDENTS.items()})
    result = _export(course, "--exporter=cnnbook.grading.lms_export.CanvasExport",
                     "--to=canvas.csv")
    assert result.returncode == 0, result.stderr
    with open(course / "canvas.csv", newline="") as handle:
        rows = list(csv.reader(handle))[2:]
    assert {row[1]: row[3] for row in rows} == {ids[2]: student
                                                for student, ids in STUDENTS.items()}


def test_export_refuses_students_canvas_could_not_match(course):
    _gradebook(course, {"alice": "1001"})
    result = _export(course, "--exporter=cnnbook.grading.lms_export.CanvasExport",
                     "--to=canvas.csv")
    assert result.returncode != 0
    assert "without a Canvas user id" in result.stderr and "'bob', 'carol'" in result.stderr
    assert not (course / "canvas.csv").exists()
