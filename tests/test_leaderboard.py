"""cnnbook.grading.leaderboard (issue 26.7): opt-in, pseudonymous, ranked from the accuracy the
grader wrote into the gradebook, with ties, reviews and bad nicknames handled."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from cnnbook.grading import accuracy
from cnnbook.grading.leaderboard import Standing, pseudonym, rank, read_opt_in, render_html
from cnnbook.grading.tiers import accuracy_rule, load_course_config

ROOT = Path(__file__).resolve().parents[1]


def _rule():
    return accuracy_rule(load_course_config(ROOT), "resnet", "cifar10-subset", ROOT,
                         accept_unmeasured=True)


def _comment(value: float, points: float) -> str:
    outcome = {"ok": True, "accuracy": value, "test_images": 10_000}
    return accuracy._comment(_rule(), outcome, points)


def test_the_accuracy_is_read_back_from_the_graders_own_comment():
    assert accuracy.accuracy_in_comment(_comment(0.63661, 4)) == pytest.approx(0.6366)
    assert accuracy.accuracy_in_comment(_comment(0.05, 0)) == pytest.approx(0.05)
    failed = accuracy._comment(_rule(), {"ok": False, "reason": "no resnet20.keras"}, 0)
    assert accuracy.accuracy_in_comment(failed) is None
    assert accuracy.accuracy_in_comment("Great work! 99.00% of the way there") is None
    assert accuracy.accuracy_in_comment(None) is None


def test_equal_accuracies_share_a_rank_and_the_next_rank_skips():
    results = {"a": (0.71, 4), "b": (0.68, 4), "c": (0.71, 4), "d": (0.5, 2), "x": (0.99, 4)}
    names = {"a": "ann", "b": "bo", "c": "cy", "d": "di"}  # x did not opt in
    assert rank(results, names) == [
        Standing(1, "ann", 0.71, 4), Standing(1, "cy", 0.71, 4), Standing(3, "bo", 0.68, 4),
        Standing(4, "di", 0.5, 2)]


def test_pseudonyms_are_stable_per_course_and_unlinkable_without_its_secret():
    first, second = b"k" * 32, b"j" * 32
    assert pseudonym("student1", first) == pseudonym("student1", first)
    names = {pseudonym(f"student{i}", first) for i in range(1000)}
    assert len(names) >= 990  # 16 x 16 x 65,536 names: a clash in 1,000 is rare
    assert all(re.fullmatch(r"[a-z]+ [a-z]+ [0-9a-f]{4}", name) for name in names)
    assert sum(pseudonym(f"student{i}", first) != pseudonym(f"student{i}", second)
               for i in range(40)) >= 39


def test_a_nickname_that_copies_someones_pseudonym_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    from cnnbook.grading.leaderboard import course_secret, leaderboard

    secret = course_secret(tmp_path)
    (tmp_path / "opt_in.csv").write_text(
        f"student,nickname\nalice,{pseudonym('bob', secret)}\nbob,\n")
    with pytest.raises(ValueError, match="two students would be shown as"):
        leaderboard(tmp_path, "resnet", tmp_path / "opt_in.csv", "cifar10-subset")


@pytest.mark.parametrize("text, problem", [
    ("student,nickname\nalice,<script>x</script>\n", "nickname '<script>x</script>'"),
    ("student,nickname\nalice,Ace\nbob,ace\n", "the same nickname"),
    ("name\nalice\n", "with 'student' among them"),
    ("student\n\n,\n", "no student id"),
])
def test_a_bad_opt_in_file_is_refused_by_line(tmp_path, text, problem):
    path = tmp_path / "opt_in.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_opt_in(path)


def test_the_page_escapes_what_it_shows():
    page = render_html("Leaderboard: <resnet>", [Standing(1, "<b>x</b>", 0.7, 4)], "a & b")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "a &amp; b" in page


def test_the_command_ranks_those_who_opted_in_from_the_gradebook(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    rule = _rule()
    graded = {  # student: (accuracy, points, waiting for review)
        "alice": (0.7123, 4, False), "bob": (0.6811, 4, False), "carol": (0.7123, 4, False),
        "dave": (0.8001, 4, False), "erin": (0.9950, 4, True)}
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}", "cnnbook") as gradebook:
        gradebook.add_assignment("resnet")
        gradebook.add_notebook("resnet", "resnet")
        gradebook.add_task_cell(rule.grade_id, "resnet", "resnet", max_score=rule.max_points,
                                cell_type="markdown")
        for student, (value, points, review) in graded.items():
            gradebook.add_student(student)
            gradebook.add_submission("resnet", student)
            grade = gradebook.find_grade(rule.grade_id, "resnet", "resnet", student)
            grade.manual_score, grade.needs_manual_grade = points, review
            comment = gradebook.find_comment(rule.grade_id, "resnet", "resnet", student)
            comment.manual_comment = _comment(value, points)
            gradebook.db.commit()
    (tmp_path / "opt_in.csv").write_text(
        "student,nickname\nalice,Alice the Great\nbob,\ncarol,cee\nerin,\nfrank,\n")
    done = subprocess.run(
        [sys.executable, "-m", "cnnbook.grading", "leaderboard", "resnet", "--opt-in",
         "opt_in.csv", "--training-set", "cifar10-subset"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    secret = (tmp_path / "leaderboard" / "secret").read_bytes()
    assert oct((tmp_path / "leaderboard" / "secret").stat().st_mode & 0o777) == "0o600"
    assert lines[0].split() == ["1", "Alice", "the", "Great", "71.23%", "4", "points"]
    assert lines[1].split() == ["1", "cee", "71.23%", "4", "points"]
    assert lines[2].split() == ["3", *pseudonym("bob", secret).split(), "68.11%", "4", "points"]
    assert "dave" not in done.stdout and "80.01%" not in done.stdout  # did not opt in
    assert "99.50%" not in done.stdout  # erin's grade waits for review
    assert "1 graded student(s) did not opt in" in done.stdout
    assert "not on the board yet (not graded, under review or no accuracy): erin, frank" in (
        done.stdout)
    page = (tmp_path / "leaderboard" / "resnet.html").read_text()
    assert page.index("Alice the Great") < page.index(pseudonym("bob", secret))
    assert "bob" not in page.replace(pseudonym("bob", secret), "")
