"""cnnbook.grading.collect through the real ``nbgrader collect`` (issue 26.2): a submission's
time is what the exchange saw, never the student's ``timestamp.txt``; links are copied as links,
never as the files they name; a pipe or an oversized submission costs only its student."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

CLAIMED = "2000-01-01 00:00:00.000000 UTC"  # a forged, early timestamp.txt
SECRET = "the instructor's solution"


@pytest.fixture()
def exchange_course(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    course.mkdir()
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'cnnbook'\n"
        "c.CourseDirectory.max_dir_size = 4  # kB: carol's 5 kB submission is over it\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
        "c.ExchangeFactory.collect = 'cnnbook.grading.collect.CollectWithObservedTime'\n")
    (course / "secret.txt").write_text(SECRET)
    inbound = exchange / "cnnbook" / "inbound"
    inbound.mkdir(parents=True)
    return course, inbound


def _submission(inbound: Path, student: str) -> Path:
    folder = inbound / f"{student}+sizing+2026-12-05 10:00:00.000000 UTC+abc123"
    folder.mkdir()
    (folder / "timestamp.txt").write_text(CLAIMED)
    return folder


def test_collect_records_the_time_it_saw_and_follows_nothing(exchange_course):
    course, inbound = exchange_course
    before = datetime.now(timezone.utc).replace(microsecond=0)
    alice = _submission(inbound, "alice")
    (alice / "sizing.ipynb").write_text('{"cells": []}')
    (alice / "notes.txt").symlink_to(course / "secret.txt")
    os.mkfifo(alice / "pipe")
    for path in (alice, alice / "sizing.ipynb", alice / "timestamp.txt"):
        os.utime(path, (946684800, 946684800))  # modification times set back to 2000: no alibi
    bob = _submission(inbound, "bob")  # his notebook names the instructor's file
    (bob / "sizing.ipynb").symlink_to(course / "secret.txt")
    for name, content in (("erin", "yesterday, honestly"), ("frank", None)):
        folder = _submission(inbound, name)
        (folder / "sizing.ipynb").write_text('{"cells": []}')
        if content:  # erin's timestamp.txt is not a time, which stopped nbgrader's --update
            (folder / "timestamp.txt").write_text(content)
    (inbound / "frank+sizing+2026-12-05 10:00:00.000000 UTC+abc123").rename(
        inbound / "a,frank+sizing+2026-12-05 10:00:00.000000 UTC+abc123")  # a list, not an id
    (inbound / "gina+sizing+not a time+abc").mkdir()  # a name nbgrader cannot parse
    carol = _submission(inbound, "carol")
    (carol / "sizing.ipynb").write_text("x" * 5000)
    solutions = course / "solutions" / "sizing"  # where the guide says the solutions are
    solutions.mkdir(parents=True)
    (solutions / "sizing.ipynb").write_text(SECRET)
    dave = inbound / "dave+sizing+2026-12-05 10:00:00.000000 UTC+def456"
    dave.symlink_to(solutions)  # his whole submission is a link to the solutions
    time.sleep(1.1)  # so that a time taken at collection would differ from the submissions'
    done = subprocess.run([sys.executable, "-m", "nbgrader", "collect", "sizing"], cwd=course,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = datetime.now(timezone.utc)
    submitted = course / "submitted"

    # alice: her notebook, neither her link nor her pipe; her timestamp.txt as she wrote it
    # (nbgrader keys her feedback by it), and her time as the exchange saw it
    assert (submitted / "alice/sizing/sizing.ipynb").read_text() == '{"cells": []}'
    assert not os.path.lexists(submitted / "alice/sizing/notes.txt")
    assert not os.path.lexists(submitted / "alice/sizing/pipe")
    assert (submitted / "alice/sizing/timestamp.txt").read_text() == CLAIMED
    times = json.loads((course / "observed_times/sizing.json").read_text())
    observed = datetime.fromisoformat(times["alice"])
    assert before <= observed <= after
    assert (after - observed).total_seconds() >= 1  # the submission's time, not collection's

    # bob: his notebook was a link: left out, never the instructor's file under his name
    assert not os.path.lexists(submitted / "bob/sizing/sizing.ipynb")
    assert SECRET not in "".join(path.read_text() for path in submitted.rglob("*")
                                 if path.is_file() and not path.is_symlink())

    # carol: too large, left in the exchange with an error that names her; the others collected
    assert not (submitted / "carol/sizing").exists() and (carol / "sizing.ipynb").is_file()
    assert "NOT COLLECTED" in done.stderr and "carol+sizing" in done.stderr
    assert sorted(times) == ["alice", "bob"]
    # dave: his submission folder is a link, so nothing of it is collected
    assert not (submitted / "dave/sizing").exists()
    assert "NOT COLLECTED" in done.stderr and "dave+sizing" in done.stderr
    assert "left out pipe" in done.stderr and "left out notes.txt" in done.stderr
    # erin's unreadable time, the id "a,frank" and gina's unparsable folder name: each refused
    # by name, and nobody else's collection stopped
    for name, reason in (("erin+sizing", "not a time"), ("a,frank+sizing", "valid user name"),
                         ("gina+sizing", "cannot read")):
        assert any(name in line and reason in line for line in done.stderr.splitlines()), name
    assert not (submitted / "erin/sizing").exists() and not (submitted / "a,frank/sizing").exists()


def test_nbgraders_own_collect_is_what_this_guards_against(exchange_course):
    """The oracle for the test above: nbgrader's stock collect copies the linked file's content
    under the student's name, and trusts the forged time."""
    course, inbound = exchange_course
    bob = _submission(inbound, "bob")
    (bob / "sizing.ipynb").symlink_to(course / "secret.txt")
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "collect", "sizing",
         "--ExchangeFactory.collect=nbgrader.exchange.default.ExchangeCollect"],
        cwd=course, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    copied = course / "submitted/bob/sizing/sizing.ipynb"
    assert not copied.is_symlink() and copied.read_text() == SECRET
    assert not (course / "observed_times").exists()
