"""The course's late policy: a share of the score per started day late, capped, after a grace
period, as an nbgrader late-submission plugin (``c.AssignLatePenalties.plugin_class``).

How late a submission is: the time it arrived less the assignment's due date (``nbgrader db
assignment add NAME --duedate=...``) plus the student's extension, if any (:func:`grant_extension`;
``python -m cnnbook.grading extend``). The time it arrived is the one the exchange's file system
saw when it was collected (:mod:`cnnbook.grading.collect`), which
:class:`AssignLatePenaltiesByArrival` counts from during ``nbgrader autograde``, not the
``timestamp.txt`` the student's ``nbgrader submit`` wrote (which anyone can edit); a submission
that was not collected that way (placed in ``submitted/`` by hand) is late by its
``timestamp.txt``. The penalty::

    days late = ceil((seconds late - grace) / 86,400)          (0 when within the grace period)
    penalty   = score * min(cap, share_per_day * days late)

With the course's settings (``share_per_day = 0.1``, ``cap = 0.5``, ``grace_minutes = 15``) a
notebook that scored 10 of 12 and arrived 2 days and 3 hours late loses 30% of its 10 points: it
keeps 7. A week late keeps half. nbgrader stores the penalty beside the score
(``late_submission_penalty``), shows both in formgrader and takes it off in ``nbgrader export``
and in the Canvas file (:mod:`cnnbook.grading.lms_export`). The student's feedback keeps every
verdict and cell score, lists "Late submission penalty (Score: -3)" and shows the total less the
penalty. The penalty is computed when the notebook is autograded, on its score at
that moment (as nbgrader does): points given later, in formgrader or by the accuracy grader, are
not reduced, and an extension granted after autograding counts from the next ``nbgrader autograde
--force`` of that student.
"""

from __future__ import annotations

import datetime
import math

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import AssignLatePenalties
from traitlets import Float

from cnnbook.grading.collect import read_observed_times

__all__ = ["SharePerDayLate", "AssignLatePenaltiesByArrival", "days_late", "late_penalty",
           "seconds_late", "grant_extension"]

SECONDS_PER_DAY = 86_400


def days_late(seconds_late: float, grace_minutes: float = 0.0) -> int:
    """Started days late after ``grace_minutes``: 0 within the grace period, 1 up to a day past
    it, and so on (``ceil((seconds_late - 60 * grace_minutes) / 86,400)``)."""
    if seconds_late < 0 or grace_minutes < 0:
        raise ValueError(f"seconds_late and grace_minutes must be >= 0, got {seconds_late!r} "
                         f"and {grace_minutes!r}")
    beyond_grace = seconds_late - 60 * grace_minutes
    return math.ceil(beyond_grace / SECONDS_PER_DAY) if beyond_grace > 0 else 0


def late_penalty(score: float, seconds_late: float, share_per_day: float, cap: float,
                 grace_minutes: float = 0.0) -> float:
    """Points taken off ``score``: ``score * min(cap, share_per_day * days_late(...))``."""
    if not 0 <= share_per_day <= 1 or not 0 <= cap <= 1:
        raise ValueError(f"share_per_day and cap are shares of the score, between 0 and 1; got "
                         f"{share_per_day!r} and {cap!r}")
    share = min(cap, share_per_day * days_late(seconds_late, grace_minutes))
    return round(max(score, 0.0) * share, 6)


class SharePerDayLate(LateSubmissionPlugin):
    """nbgrader's late-submission plugin for the course's policy (module docstring)."""

    share_per_day = Float(0.1, help="Share of the score taken off per started day late.").tag(
        config=True)
    cap = Float(0.5, help="The largest share of the score taken off, however late.").tag(
        config=True)
    grace_minutes = Float(15.0, help="Minutes after the due date that still count as on time "
                          "(a clock or an upload a little behind).").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float,
                                total_seconds_late: float) -> float:
        days = days_late(total_seconds_late, self.grace_minutes)
        penalty = late_penalty(score, total_seconds_late, self.share_per_day, self.cap,
                               self.grace_minutes)
        self.log.info("%s: %s started day(s) late after %g minutes of grace: %g of %g points "
                      "off (%g per day, at most %g)", student_id, days, self.grace_minutes,
                      penalty, score, self.share_per_day, self.cap)
        return penalty


class AssignLatePenaltiesByArrival(AssignLatePenalties):
    """nbgrader's ``AssignLatePenalties`` (the same plugin, the same checks), with the lateness
    counted from when the exchange received the submission
    (:func:`cnnbook.grading.collect.read_observed_times`) instead of the ``timestamp.txt`` the
    student wrote. The gradebook's submission time stays the ``timestamp.txt`` one: formgrader
    decides whether a submission is autograded by comparing the two, and nbgrader keys the
    returned feedback by it. A submission that was not collected by
    :class:`cnnbook.grading.collect.CollectWithObservedTime` is late by its ``timestamp.txt``."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self.notebook_id, self.assignment_id = info["notebook"], info["assignment"]
        self.student_id, self.db_url = info["student"], info["db_url"]
        self.init_plugin()
        coursedir = CourseDirectory(config=self.config)
        observed = read_observed_times(coursedir.root, self.assignment_id).get(self.student_id)
        self.gradebook = Gradebook(self.db_url)
        with self.gradebook:
            submission = self.gradebook.find_submission(self.assignment_id, self.student_id)
            notebook = self.gradebook.find_submission_notebook(
                self.notebook_id, self.assignment_id, self.student_id)
            notebook.late_submission_penalty = None
            seconds = seconds_late(submission.duedate, observed, submission.timestamp)
            self.log.info("%s/%s: arrived %s, %g s after the due date%s",
                          self.student_id, self.assignment_id,
                          "at an unknown time" if observed is None and submission.timestamp is None
                          else f"at {submission_time(observed or submission.timestamp)} UTC",
                          seconds, "" if observed is not None else
                          " (not collected by cnnbook's collect: by its timestamp.txt)")
            if seconds > 0:
                penalty = self.plugin_inst.late_submission_penalty(
                    self.student_id, notebook.score, seconds)
                if penalty is not None:
                    notebook.late_submission_penalty = self._check_late_penalty(notebook, penalty)
            self.gradebook.db.commit()
        return nb, resources


def seconds_late(due: datetime.datetime | None, observed: datetime.datetime | None,
                 claimed: datetime.datetime | None) -> float:
    """Seconds after ``due`` (naive UTC, as nbgrader stores it, extension included) that the
    submission arrived: at ``observed`` (aware) when known, else at ``claimed`` (naive UTC, its
    ``timestamp.txt``); 0 without a due date or a time, or when on time."""
    arrived = (observed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
               if observed is not None else claimed)
    if due is None or arrived is None:
        return 0.0
    return max(0.0, (arrived - due).total_seconds())


def submission_time(moment: datetime.datetime) -> str:
    """``moment`` in UTC as text (a naive time is UTC already: nbgrader stores them so)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def grant_extension(db_url: str, assignment: str, student: str, *, days: float = 0,
                    hours: float = 0) -> datetime.timedelta | None:
    """Give ``student`` ``days`` and ``hours`` more for ``assignment`` in nbgrader's gradebook
    (replacing any earlier extension; zero removes it), before or after they submit: nbgrader's
    ``SubmittedAssignment.extension``, which its lateness (and so this policy) counts from. The
    assignment and the student must be in the gradebook already (``nbgrader db assignment add``,
    ``nbgrader db student add`` or a roster import); a submission record is created if the
    student has not submitted yet, as ``nbgrader autograde`` would. Returns the extension."""
    if days < 0 or hours < 0:
        raise ValueError(f"an extension is days and hours >= 0, got days={days!r}, "
                         f"hours={hours!r}")
    with Gradebook(db_url) as gradebook:
        try:
            gradebook.find_assignment(assignment)
        except MissingEntry:
            raise ValueError(f"assignment {assignment!r} is not in the gradebook {db_url}: "
                             f"release it, or run `nbgrader db assignment add {assignment} "
                             "--duedate=...` first") from None
        try:
            gradebook.find_student(student)
        except MissingEntry:
            raise ValueError(f"student {student!r} is not in the gradebook {db_url}: import the "
                             f"roster, or run `nbgrader db student add {student}` first, and "
                             "check the spelling of the hub user name") from None
        gradebook.update_or_create_submission(assignment, student)
        gradebook.grant_extension(assignment, student, days=days, hours=hours)
        return gradebook.find_submission(assignment, student).extension
