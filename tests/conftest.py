"""Shared fixtures: the repository root, the offline CIFAR-10 subset, and timing reports.

Timings (book builds, grading runs) are printed at the end of the run so CI's log shows them;
no test asserts on a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
def keras_application():
    """``keras_application(name, input_shape=None)``: the ``keras.applications`` model ``name``
    (``weights=None``), built once per test run and shared by every test file that asks for it.
    Tests must not change the model (no training, no weight assignment)."""
    import keras

    built = {}

    def get(name: str, input_shape=None):
        key = (name, None if input_shape is None else tuple(input_shape))
        if key not in built:
            arguments = {} if input_shape is None else {"input_shape": tuple(input_shape)}
            built[key] = getattr(keras.applications, name)(weights=None, **arguments)
        return built[key]

    return get


@pytest.fixture(scope="session")
def resnet1202():
    """He et al.'s ResNet-1202 (option A), built once per test run (600 blocks: seconds to a
    minute): tests only read it."""
    from cnnbook import models

    return models.resnet_cifar(1202, shortcut="A")


@pytest.fixture(scope="session")
def report_timing():
    """Call ``report_timing(label, seconds)`` to have a figure printed in the run's summary."""

    def record(label: str, seconds: float) -> None:
        _TIMINGS.append((label, seconds))

    return record


@dataclass(frozen=True)
class BuiltBook:
    """A cold build of the book: its ``--path-output`` folder, its HTML site, its build log."""

    output: Path
    html_dir: Path
    log: str


@pytest.fixture(scope="session")
def built_book(repo_root, tmp_path_factory, report_timing) -> BuiltBook:
    """The book built once per test run (every page executed, warnings as errors) into a temporary
    folder; tests/test_book.py and tests/test_site_browser.py read the same site."""
    from book_build import build

    output = tmp_path_factory.mktemp("book")
    seconds, log = build(repo_root, output)
    report_timing("book build, cold (every page executed)", seconds)
    return BuiltBook(output=output, html_dir=output / "_build" / "html", log=log)


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("timings (figures, not assertions)")
        for label, seconds in _TIMINGS:
            terminalreporter.write_line(f"{label}: {seconds:.1f} s")
