"""An optional, pseudonymous leaderboard of an accuracy task, generated from the gradebook, for an
instructor who wants a friendly competition.

::

    python -m cnnbook.grading leaderboard resnet --opt-in leaderboard_opt_in.csv

* **Opt-in.** Only the students listed in the opt-in file appear (a CSV with a ``student`` column
  and an optional ``nickname`` column): nobody is ranked without having agreed to it.
* **Pseudonymous.** A student is shown by the nickname they chose or, without one, by a pseudonym
  derived from their id and a secret kept in the course root (``leaderboard/secret``, created on
  first use; HMAC-SHA256), which stays the same from one board to the next and which classmates
  cannot turn back into the id. Nicknames are checked (letters, digits, spaces, ``-_.``; at most
  24 characters, no two alike) and the page escapes whatever it shows.
* **From the gradebook.** Each accuracy is the one ``python -m cnnbook.grading accuracy`` wrote
  into the task cell's comment (:func:`cnnbook.grading.accuracy.accuracy_in_comment` reads it back):
  a grade an instructor still has to review (``needs_manual_grade``) and a network that earned no
  accuracy are left off until they are settled. Equal accuracies share a rank.

The board is written to ``leaderboard/<entry>.html`` and printed; nothing in the gradebook
changes.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import html
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Standing", "read_opt_in", "pseudonym", "rank", "render_html", "graded_accuracies",
           "leaderboard", "NICKNAME"]

NICKNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,23}$")
"""What a chosen nickname may be."""

ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fleet", "gentle", "hardy", "keen",
              "lucid", "mellow", "nimble", "quiet", "rapid", "steady", "vivid")
ANIMALS = ("badger", "crane", "dolphin", "falcon", "gecko", "heron", "ibex", "jackal", "lynx",
           "marten", "ocelot", "otter", "puffin", "raven", "stoat", "wombat")


@dataclass(frozen=True)
class Standing:
    """One line of the board."""

    rank: int
    name: str
    accuracy: float
    points: float


def read_opt_in(path: Path) -> dict[str, str | None]:
    """Student id to their chosen nickname (``None``: a pseudonym) from the opt-in CSV
    (``student`` column, optional ``nickname``). ``ValueError`` names a bad line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no opt-in file {path}: a CSV with a 'student' column (and optionally "
                         "'nickname') listing the students who agreed to be on the board")
    chosen: dict[str, str | None] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if "student" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: the first line must name the columns, with 'student' "
                             f"among them; found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            student = (row.get("student") or "").strip()
            nickname = (row.get("nickname") or "").strip() or None
            if not student:
                raise ValueError(f"{path}, line {line}: no student id")
            if nickname is not None and not NICKNAME.match(nickname):
                raise ValueError(f"{path}, line {line}: nickname {nickname!r} must be 1 to 24 "
                                 "letters, digits, spaces, '.', '-' or '_', starting with a "
                                 "letter or digit")
            chosen[student] = nickname
    nicknames = [name.casefold() for name in chosen.values() if name]
    if len(nicknames) != len(set(nicknames)):
        raise ValueError(f"{path}: two students chose the same nickname")
    return chosen


def course_secret(course_root: Path) -> bytes:
    """The course's pseudonym key, ``leaderboard/secret`` in the course root (created with 32
    random bytes, readable by its owner only, on first use)."""
    path = Path(course_root) / "leaderboard" / "secret"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def pseudonym(student: str, secret: bytes) -> str:
    """``<adjective> <animal> <four hex digits>`` from HMAC-SHA256(secret, student id): 16.7
    million names, so two students of a class of 1,000 share one with a chance of about 3%
    (the board refuses to show two alike)."""
    digest = hmac.new(secret, student.encode("utf-8"), hashlib.sha256).digest()
    return f"{ADJECTIVES[digest[0] % 16]} {ANIMALS[digest[1] % 16]} {digest[2]:02x}{digest[3]:02x}"


def rank(results: dict[str, tuple[float, float]], names: dict[str, str]) -> list[Standing]:
    """Standings of the students in ``names`` (student id to shown name) from ``results``
    (student id to accuracy and points), best accuracy first; equal accuracies (to the
    hundredth of a percent, as shown) share the rank of the first of them."""
    entries = sorted(((round(results[student][0], 4), names[student], results[student][1])
                      for student in names if student in results),
                     key=lambda entry: (-entry[0], entry[1]))
    standings, previous, previous_rank = [], None, 0
    for position, (accuracy, name, points) in enumerate(entries, start=1):
        shown_rank = previous_rank if accuracy == previous else position
        standings.append(Standing(shown_rank, name, accuracy, points))
        previous, previous_rank = accuracy, shown_rank
    return standings


def render_html(title: str, standings: list[Standing], note: str) -> str:
    """A small self-contained page (every shown text escaped)."""
    rows = "\n".join(
        f"<tr><td>{standing.rank}</td><td>{html.escape(standing.name)}</td>"
        f"<td>{standing.accuracy:.2%}</td><td>{standing.points:g}</td></tr>"
        for standing in standings)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "table{border-collapse:collapse}td,th{padding:4px 12px;border-bottom:1px solid #ccc}"
            "td:nth-child(3),td:nth-child(4),td:first-child{text-align:right}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>"
            "<table><thead><tr><th>rank</th><th>name</th><th>test accuracy</th><th>points</th>"
            f"</tr></thead><tbody>\n{rows}\n</tbody></table></body></html>\n")


def graded_accuracies(db_url: str, course_id: str, assignment: str, notebook: str,
                      grade_id: str) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """From the gradebook: student id to (accuracy, points) of every settled accuracy grade of
    the task cell, and the students left off (a grade waiting for review, or no accuracy)."""
    from nbgrader.api import Gradebook, MissingEntry  # only for the command that reads it

    from cnnbook.grading.accuracy import accuracy_in_comment  # see above

    results, left_off = {}, []
    with Gradebook(db_url, course_id) as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            student = submission.student.id
            try:
                grade = gradebook.find_grade(grade_id, notebook, assignment, student)
                comment = gradebook.find_comment(grade_id, notebook, assignment, student)
            except MissingEntry:
                left_off.append(student)
                continue
            accuracy = accuracy_in_comment(comment.manual_comment)
            if grade.needs_manual_grade or accuracy is None or grade.score is None:
                left_off.append(student)
                continue
            results[student] = (accuracy, float(grade.score))
    return results, sorted(left_off)


def leaderboard(course_root: Path, entry: str, opt_in: Path, training_set: str | None = None
                ) -> dict:
    """The board of accuracy entry ``entry`` (``resnet``, ``architectures-plain``...): its
    ``standings``, the ``page`` written (``leaderboard/<entry>.html``), how many graded students
    did not opt in (``not_opted_in``) and which opted-in students are not on it yet
    (``waiting``: not graded, under review, or no accuracy)."""
    from nbgrader.coursedir import CourseDirectory  # as in graded_accuracies

    from cnnbook.grading.tiers import accuracy_rule, load_course_config  # see above

    course_root = Path(course_root).resolve()
    config = load_course_config(course_root)
    rule = accuracy_rule(config, entry, training_set, course_root, accept_unmeasured=True)
    coursedir = CourseDirectory(config=config, root=str(course_root))
    chosen = read_opt_in(opt_in)
    results, _ = graded_accuracies(coursedir.db_url, coursedir.course_id, rule.assignment,
                                   rule.notebook, rule.grade_id)
    secret = course_secret(course_root)
    names = {student: nickname or pseudonym(student, secret)
             for student, nickname in chosen.items()}
    shown = [name.casefold() for name in names.values()]
    clashes = sorted({name for name, folded in zip(names.values(), shown, strict=True)
                      if shown.count(folded) > 1})
    if clashes:  # a nickname chosen to look like someone's pseudonym, or two pseudonyms alike
        raise ValueError(f"two students would be shown as {', '.join(map(repr, clashes))}: "
                         f"give one of them another nickname in {opt_in}")
    standings = rank(results, names)
    page = course_root / "leaderboard" / f"{entry}.html"
    note = (f"Test accuracy of the {rule.architecture} networks of {rule.assignment} "
            f"({rule.training_set}), as graded. Only students who opted in are shown, by the "
            "name they chose or a pseudonym.")
    page.write_text(render_html(f"Leaderboard: {entry}", standings, note), encoding="utf-8")
    return {"standings": standings, "page": page,
            "not_opted_in": len(set(results) - set(chosen)),
            "waiting": sorted(set(chosen) - set(results))}
