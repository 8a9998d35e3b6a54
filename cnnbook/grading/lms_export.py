"""Grades for the course's learning management system: ``nbgrader export`` plugins that write the
CSV file Canvas' gradebook imports (Grades > Import), one row per student and one column per
assignment, students matched by their Canvas user id.

::

    nbgrader export --exporter=cnnbook.grading.lms_export.CanvasExport --to=canvas_grades.csv

The file has the columns Canvas documents for a gradebook import: ``Student`` ("Last, First"),
``ID`` (the Canvas user id, from the gradebook's ``lms_user_id``), ``SIS User ID``, ``SIS Login
ID`` (empty, or the hub user name with ``c.CanvasExport.hub_user_is_sis_login = True`` where
the hub's user names are the institution's logins) and ``Section``, then one column per assignment,
named ``<assignment> (<Canvas assignment id>)`` when ``c.CanvasExport.canvas_assignment_ids``
gives the id (Canvas then fills that assignment) and ``<assignment>`` otherwise (Canvas creates
a new assignment). The second row is ``Points Possible``. A score is nbgrader's: the sum of the
grades less the late penalty, never below zero, as ``nbgrader export`` computes it; a student who
submitted nothing gets 0 (or an empty cell with ``c.CanvasExport.missing_as_zero = False``, which
Canvas leaves ungraded).

Every student must have an ``lms_user_id`` (``nbgrader db student import`` reads it from a CSV
column of that name): the export refuses to write a file that Canvas could not match, and names the
students without one. It must be Canvas' numeric user id (the ``ID`` column of Canvas' own
gradebook export), not the opaque LTI ``user_id`` that an LTI login may have stored there.

A name that a spreadsheet would read as a formula (``=HYPERLINK(...)``, from an LTI profile or a
roster) is written with a leading apostrophe, so an instructor who opens the file runs nothing.
"""

from __future__ import annotations

import csv

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin
from traitlets import Bool, Dict, Unicode

__all__ = ["CanvasExport", "canvas_rows", "IDENTITY_COLUMNS"]

IDENTITY_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
"""The columns before the assignments in a Canvas gradebook file, in Canvas' order."""


def _score(gradebook: Gradebook, assignment: str, student: str) -> float | None:
    try:
        submission = gradebook.find_submission(assignment, student)
    except MissingEntry:
        return None
    return max(0.0, submission.score - (submission.late_submission_penalty or 0.0))


def _number(value: float) -> str:
    """A score as Canvas reads it: plain decimals, never an exponent (``f"{1e6:g}"`` is 1e+06)."""
    text = f"{round(float(value), 6):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _inert(text: str) -> str:
    """``text`` that a spreadsheet opening the file cannot run: a leading ``=``, ``+``, ``-``,
    ``@``, tab or carriage return (a formula, in Excel or LibreOffice) gets a leading apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def canvas_rows(gradebook: Gradebook, assignments: list[str] | None = None,
                students: list[str] | None = None, assignment_ids: dict | None = None,
                section: str = "", missing_as_zero: bool = True,
                hub_user_is_sis_login: bool = False) -> list[list[str]]:
    """The rows of a Canvas gradebook file (header, ``Points Possible``, one per student) for
    ``assignments`` and ``students`` of ``gradebook`` (all of them when None or empty). Raises
    ``ValueError`` naming the students without an ``lms_user_id`` and any unknown assignment."""
    known = [assignment.name for assignment in gradebook.assignments]
    chosen = list(assignments) if assignments else known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"the gradebook has no assignment {unknown}; it has {known}")
    people = [student for student in gradebook.students
              if not students or student.id in students]
    missing_ids = sorted(student.id for student in people
                         if not (student.lms_user_id or "").strip())
    if missing_ids:
        raise ValueError(
            f"students without a Canvas user id (lms_user_id): {missing_ids}. Canvas matches rows "
            "by it: add it with `nbgrader db student add ID --lms-user-id=...` or `nbgrader db "
            "student import roster.csv` (a column lms_user_id), then export again")
    ids = {str(name): str(value) for name, value in (assignment_ids or {}).items()}
    header = list(IDENTITY_COLUMNS) + [
        f"{name} ({ids[name]})" if name in ids else name for name in chosen]
    points = ["Points Possible", "", "", "", ""] + [
        _number(gradebook.find_assignment(name).max_score) for name in chosen]
    rows = [header, points]
    for student in sorted(people, key=lambda person: ((person.last_name or "").lower(),
                                                      (person.first_name or "").lower(),
                                                      person.id)):
        name = ", ".join(part for part in (student.last_name, student.first_name) if part)
        row = [_inert(name or student.id), student.lms_user_id.strip(), "",
               student.id if hub_user_is_sis_login else "", section]
        for assignment in chosen:
            score = _score(gradebook, assignment, student.id)
            row.append(_number(score) if score is not None
                       else ("0" if missing_as_zero else ""))
        rows.append(row)
    return rows


class CanvasExport(ExportPlugin):
    """``nbgrader export`` to the CSV file that Canvas' gradebook imports (see the module)."""

    canvas_assignment_ids = Dict(
        {}, help="Canvas' id of each assignment, {nbgrader name: Canvas id}: its column is then "
        "'name (id)' and Canvas fills that assignment instead of creating a new one"
    ).tag(config=True)
    section = Unicode("", help="the Section column (Canvas ignores it on import)").tag(config=True)
    missing_as_zero = Bool(
        True, help="a missing submission scores 0 (False: an empty cell, left ungraded)"
    ).tag(config=True)
    hub_user_is_sis_login = Bool(
        False, help="write the hub user name (nbgrader's student id) as the SIS Login ID; only "
        "where hub user names are the institution's logins, or Canvas may match another student"
    ).tag(config=True)

    def export(self, gradebook: Gradebook) -> None:
        destination = self.to or "canvas_grades.csv"
        rows = canvas_rows(gradebook, [str(name) for name in self.assignment],
                           [str(name) for name in self.student], self.canvas_assignment_ids,
                           self.section, self.missing_as_zero, self.hub_user_is_sis_login)
        with open(destination, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
        self.log.info("Wrote %d students and %d assignments for Canvas to %s", len(rows) - 2,
                      len(rows[0]) - len(IDENTITY_COLUMNS), destination)
