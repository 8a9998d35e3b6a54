"""Shared fixtures: the repository root, the offline CIFAR-10 subset, and timing reports.

Timings (book builds, grading runs) are printed at the end of the run so CI's log shows them;
no test asserts on a time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parents[1]
_TIMINGS: list[tuple[str, float]] = []


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def cifar_subset_dir() -> Path:
    """The folder of the shared CIFAR-10 subset (``CNNBOOK_DATA``); tests that need it fail
    with instructions when it is missing: they never download."""
    folder = os.environ.get("CNNBOOK_DATA")
    if not folder or not any(Path(folder).glob("*.npz")):
        pytest.fail(
            "CNNBOOK_DATA must name the folder of the offline CIFAR-10 subset (an .npz with "
            "x_train, y_train, x_test, y_test), e.g. CNNBOOK_DATA=../shared/data/cifar10; "
            "`make test` and .ci/run set it when ../shared/data/cifar10 exists"
        )
    return Path(folder)


@pytest.fixture(scope="session")
def report_timing():
    """Call ``report_timing(label, seconds)`` to have a figure printed in the run's summary."""

    def record(label: str, seconds: float) -> None:
        _TIMINGS.append((label, seconds))

    return record


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("timings (figures, not assertions)")
        for label, seconds in _TIMINGS:
            terminalreporter.write_line(f"{label}: {seconds:.1f} s")
