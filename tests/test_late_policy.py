"""cnnbook.grading.late_policy (issue 26.2): the late penalty, written out by hand for each case,
nbgrader's plugin configured from a course file, and extensions kept in nbgrader's gradebook.
The through-the-commands test (an on-time, a late and an extended submission autograded by
``nbgrader autograde``) is ``test_course.py::test_late_work_loses_the_policys_share``."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from traitlets.config import Config

from cnnbook.grading.late_policy import (
    SharePerDayLate,
    days_late,
    grant_extension,
    late_penalty,
    seconds_late,
)

HOUR, DAY = 3600, 86_400
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("seconds_late, grace_minutes, expected_days", [
    (0, 15, 0),
    (14 * 60, 15, 0),            # inside the grace period
    (15 * 60 + 1, 15, 1),        # a second past it: the first day has started
    (DAY + 15 * 60, 15, 1),      # exactly a day past the grace period
    (DAY + 15 * 60 + 1, 15, 2),
    (2 * DAY + 3 * HOUR, 15, 3),
    (2 * DAY + 3 * HOUR, 0, 3),
    (1, 0, 1),
])
def test_days_late_counts_started_days_after_the_grace_period(
        seconds_late, grace_minutes, expected_days):
    assert days_late(seconds_late, grace_minutes) == expected_days


@pytest.mark.parametrize("score, seconds_late, expected", [
    (10, 0, 0.0),
    (10, 10 * 60, 0.0),                  # within 15 minutes of grace
    (10, 2 * DAY + 3 * HOUR, 3.0),       # three started days: 30% of 10
    (10, 4 * DAY + HOUR, 5.0),           # five days: 50%, the cap
    (10, 30 * DAY, 5.0),                 # a month: still the cap
    (7.5, 20 * HOUR, 0.75),              # one day: 10% of 7.5
    (0, 3 * DAY, 0.0),                   # nothing scored, nothing to take
])
def test_the_penalty_is_a_share_of_the_score_per_day_capped(score, seconds_late, expected):
    assert late_penalty(score, seconds_late, 0.1, 0.5, 15) == pytest.approx(expected)


def test_lateness_counts_from_the_observed_arrival_and_never_from_a_claim_beside_it():
    due = datetime.datetime(2027, 1, 15, 23, 59)
    utc = datetime.timezone.utc
    observed = datetime.datetime(2027, 1, 16, 4, 59, tzinfo=utc)
    early_claim = datetime.datetime(2027, 1, 14, 12, 0)
    assert seconds_late(due, observed, early_claim) == 5 * HOUR  # the claim changes nothing
    in_berlin = observed.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert seconds_late(due, in_berlin, None) == 5 * HOUR  # the same instant in another zone
    assert seconds_late(due, None, datetime.datetime(2027, 1, 16, 0, 59)) == HOUR  # no record
    assert seconds_late(due, datetime.datetime(2027, 1, 15, 12, 0, tzinfo=utc), None) == 0
    assert seconds_late(None, observed, early_claim) == 0  # no due date: never late
    assert seconds_late(due, None, None) == 0


def test_impossible_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="share_per_day and cap"):
        late_penalty(10, DAY, 10, 0.5)        # 10 is a percentage, not a share
    with pytest.raises(ValueError, match="seconds_late and grace_minutes"):
        days_late(-5)


def test_the_course_file_configures_nbgraders_plugin():
    config = Config()
    config.SharePerDayLate.share_per_day = 0.25
    config.SharePerDayLate.cap = 1.0
    config.SharePerDayLate.grace_minutes = 0
    plugin = SharePerDayLate(config=config)
    assert plugin.late_submission_penalty("student1", 8.0, 2 * DAY + 1) == 6.0  # 3 days x 25%
    assert plugin.late_submission_penalty("student1", 8.0, 10 * DAY) == 8.0     # capped at all
    # the course's own settings, read from nbgrader_config.py as nbgrader reads it
    from cnnbook.grading.tiers import load_course_config

    course = SharePerDayLate(config=load_course_config(ROOT))
    assert (course.share_per_day, course.cap, course.grace_minutes) == (0.1, 0.5, 15)
    assert course.late_submission_penalty("student1", 12.0, 2 * DAY + 3 * HOUR) == 3.6


@pytest.fixture()
def gradebook_url(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gradebook:
        gradebook.add_assignment("sizing", duedate=datetime.datetime(2027, 1, 15, 23, 59))
        gradebook.add_student("student1")
    return url


def test_an_extension_moves_the_students_due_date_before_they_submit(gradebook_url):
    extension = grant_extension(gradebook_url, "sizing", "student1", days=2, hours=6)
    assert extension == datetime.timedelta(days=2, hours=6)
    with Gradebook(gradebook_url) as gradebook:
        submission = gradebook.find_submission("sizing", "student1")
        assert submission.duedate == datetime.datetime(2027, 1, 18, 5, 59)
        submission.timestamp = datetime.datetime(2027, 1, 18, 5, 0)
        gradebook.db.commit()
        assert submission.total_seconds_late == 0
    assert grant_extension(gradebook_url, "sizing", "student1") is None  # removed
    with Gradebook(gradebook_url) as gradebook:
        late = gradebook.find_submission("sizing", "student1").total_seconds_late
        assert late == 2 * DAY + 5 * HOUR + 60  # 15 January 23:59 to 18 January 05:00


def test_an_extension_for_someone_unknown_names_the_command_that_adds_them(gradebook_url):
    with pytest.raises(ValueError, match="nbgrader db student add studnet1"):
        grant_extension(gradebook_url, "sizing", "studnet1", days=1)
    with pytest.raises(ValueError, match="nbgrader db assignment add sizng"):
        grant_extension(gradebook_url, "sizng", "student1", days=1)
    with pytest.raises(ValueError, match="days and hours >= 0"):
        grant_extension(gradebook_url, "sizing", "student1", days=-1)


def test_the_extend_command_writes_the_gradebook_of_the_course_it_is_run_in(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'cnnbook'\n")
    env = dict(os.environ)
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gradebook:
        gradebook.add_assignment("sizing")
        gradebook.add_student("student1")
    done = subprocess.run([sys.executable, "-m", "cnnbook.grading", "extend", "sizing", "student1",
                           "--days", "1.5"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "student1: sizing is due 1 day, 12:00:00 after the assignment's due date" in done.stdout
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission("sizing", "student1").extension == datetime.timedelta(
            days=1, hours=12)
    wrong = subprocess.run([sys.executable, "-m", "cnnbook.grading", "extend", "sizing", "nobody",
                            "--days", "1"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert wrong.returncode == 2 and "nbgrader db student add nobody" in wrong.stderr
