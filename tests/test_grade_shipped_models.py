"""The accuracy grader says so when a ``c.AccuracyGrader.shipped_models`` pattern matches no file:
then its copy check compares submissions with nothing, and the instructor must know."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cnnbook.grading import tiers
from cnnbook.grading.__main__ import main as grader_command

COURSE_CONFIG = """\
c = get_config()
c.CourseDirectory.course_id = "shipped-models-check"
c.GradingSandbox.enabled = False
c.AccuracyGrader.assignments = {
    "resnet": {
        "model_file": "resnet20.keras",
        "grade_id": "resnet20_test_accuracy",
        "architecture": "resnet20",
        "tiers": {"cifar10-subset": {"tiers": [[0.5, 4]], "source": "a test course"}},
    },
}
c.AccuracyGrader.shipped_models = ["results/*/*.keras", "models/removed/*.keras"]
"""


def _course(root: Path) -> Path:
    (root / "nbgrader_config.py").write_text(COURSE_CONFIG)
    shipped = root / "results" / "resnet" / "resnet20_reference.keras"
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"a shipped model")  # only its existence matters to the rule
    return shipped


def test_rule_lists_the_files_found_and_the_patterns_that_found_none(tmp_path):
    shipped = _course(tmp_path)
    rule = tiers.accuracy_rule(tiers.load_course_config(tmp_path), "resnet", "cifar10-subset",
                               tmp_path)
    assert rule.shipped_models == (str(shipped.resolve()),)
    assert rule.unmatched_shipped_patterns == ("models/removed/*.keras",)
    shipped.unlink()
    rule = tiers.accuracy_rule(tiers.load_course_config(tmp_path), "resnet", "cifar10-subset",
                               tmp_path)
    assert rule.shipped_models == ()
    assert rule.unmatched_shipped_patterns == ("results/*/*.keras", "models/removed/*.keras")


def test_grader_output_names_the_pattern_that_matched_nothing(tmp_path, capsys, monkeypatch):
    _course(tmp_path)
    # nbgrader's gradebook runs the `alembic` of this environment, as in an activated venv
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    # nobody submitted and the gradebook has no task cell: the command stops with its own error,
    # after the warning, which comes first so that no grading run can miss it
    status = grader_command(["accuracy", "resnet", "--training-set", "cifar10-subset",
                         "--root", str(tmp_path)])
    output = capsys.readouterr().err
    warnings = [line for line in output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, output
    assert "'models/removed/*.keras'" in warnings[0] and "not checked for copies" in warnings[0]
    assert "results/*/*.keras" not in warnings[0]
    assert status == 2 and "no task cell 'resnet20_test_accuracy'" in output, output
