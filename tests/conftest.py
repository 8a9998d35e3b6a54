"""Shared fixtures: the repository root, the offline CIFAR-10 subset, and timing reports; and how
the suite is shared between pytest-xdist workers.

Timings (book builds, grading runs) are printed at the end of the run so CI's log shows them;
no test asserts on a time.

`make test TEST_WORKERS=2` runs the suite in two worker processes (``pytest -n 2 --dist loadgroup
--no-loadscope-reorder``): most of its time is spent in child processes that keep one core busy
(nbgrader, grading kernels, the book's page execution), so two workers use both cores. A test's
fixtures are set up once per worker, so every test module is one work unit (its module fixtures
are built once), and modules that share an expensive session fixture (the book, the
keras.applications models, ResNet-1202) are one unit too (:data:`SHARED_FIXTURE_GROUPS`). Units
start longest first (:data:`LONGEST_UNITS_FIRST`) so that neither worker is left with a long one
at the end. Without xdist (a single file, an IDE) nothing changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parents[1]
_TIMINGS: list[tuple[str, float]] = []

SHARED_FIXTURE_GROUPS = {
    # built_book: one cold build of the whole book
    "test_book": "book", "test_site_browser": "book",
    # keras_application and resnet1202: models built once per worker that holds them
    "test_accounting": "keras_models", "test_blocks": "keras_models",
    "test_keras_internals": "keras_models", "test_models": "keras_models",
    "test_resnet_chapter": "keras_models",
}
"""Test modules (by file stem) that must run in one worker because they share a session fixture
that takes a minute or more to build; any other module is a work unit of its own."""

SPLIT_BY_FIXTURE_PARAMETER = {"test_hostile_corpus": "graded"}
"""Modules whose tests fall into one work unit per parameter of a module fixture (each unit builds
only its own parameter's fixture): the hostile corpus grades one batch per assignment."""

LONGEST_UNITS_FIRST = ("test_course", "test_course_architectures",
                       "test_hostile_corpus[architectures]", "test_hostile_corpus[sizing]",
                       "book", "keras_models", "test_hub", "test_train", "test_experiments")
"""Work units in the order they are handed out, longest first (wall times of a quiet 2-core run,
`pytest --durations`): a scheduling hint only; the rest follow in collection order."""


def work_unit(item: pytest.Item) -> str:
    """The xdist group of a test: its module's shared-fixture group, else its module (with the
    fixture parameter for the modules of :data:`SPLIT_BY_FIXTURE_PARAMETER`)."""
    stem = Path(str(item.fspath)).stem
    fixture = SPLIT_BY_FIXTURE_PARAMETER.get(stem)
    parameters = getattr(getattr(item, "callspec", None), "params", {})
    if fixture in parameters:
        return f"{stem}[{parameters[fixture]}]"
    return SHARED_FIXTURE_GROUPS.get(stem, stem)


def pytest_collection_modifyitems(config, items):
    """Mark every test with its work unit (``--dist loadgroup`` keeps a unit in one worker) and
    put the longest units first. Every worker sorts the same collection the same way, as xdist
    requires."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(work_unit(item)))
    rank = {unit: position for position, unit in enumerate(LONGEST_UNITS_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item), len(rank)))  # stable: keeps the rest


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


def pytest_sessionfinish(session):
    """In an xdist worker: hand this worker's timings to the controller, which prints them."""
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:
        worker_output["cnnbook_timings"] = json.dumps(_TIMINGS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """In the xdist controller: collect a finished worker's timings."""
    _TIMINGS.extend(tuple(pair) for pair in json.loads(
        getattr(node, "workeroutput", {}).get("cnnbook_timings", "[]")))


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("timings (figures, not assertions)")
        for label, seconds in _TIMINGS:
            terminalreporter.write_line(f"{label}: {seconds:.1f} s")
