"""Shared fixtures: the repository root, the offline CIFAR-10 subset, and timing reports; and how
the suite is shared between pytest-xdist workers.

Timings (book builds, grading runs) are printed at the end of the run so CI's log shows them;
no test asserts on a time.

`make test` runs the suite in two worker processes (``pytest -n 2 --dist loadgroup
--no-loadscope-reorder``; ``TEST_WORKERS=0`` for one process): most of its time is spent in child
processes that keep one core busy (nbgrader, grading kernels, the book's page execution), so two
workers use both cores. A test's fixtures are set up once per worker, so xdist must run the tests
that share an expensive fixture in one worker. The rule, in xdist's own terms: a test's work unit
is its closest ``xdist_group`` mark, and a test without one belongs to its module's unit. So a
module is one unit unless it says otherwise, where it declares its fixtures:

* modules that share a session fixture name one group (``pytestmark =
  pytest.mark.xdist_group("book")`` in test_book.py and test_site_browser.py);
* a module fixture's parameters can carry their own group (``pytest.param("sizing",
  marks=pytest.mark.xdist_group(...))``: each hostile-corpus batch is a unit of its own);
* tests that share an expensive module fixture can be marked as one group apart from the module's
  other tests (test_course.py's ResNet grading).

A unit with a test marked ``long_unit`` (minutes of training or grading) is handed out before
the others, so that neither worker is left with a long one at the end; the run's summary shows
where and when each unit ran (a unit that ran in two workers is marked SPLIT: its fixtures were
built twice). Without xdist (a single file, an IDE) nothing changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parents[1]
_TIMINGS: list[tuple[str, float]] = []


def work_unit(item: pytest.Item) -> str:
    """The xdist group of a test: the name of its closest ``xdist_group`` mark, else its module's
    file stem."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    return Path(str(item.fspath)).stem


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Give every test without an ``xdist_group`` mark its module's; record each test's unit in
    its reports (``user_properties``) for the run's timeline.

    First of all hooks: xdist's worker reads the ``xdist_group`` marks in its own
    ``pytest_collection_modifyitems`` (it appends ``@unit`` to each test id, which is what
    ``--dist loadgroup`` groups by); marks added after it are ignored, and then every test is a
    unit of its own, so both workers build every expensive module fixture."""
    for item in items:
        unit = work_unit(item)
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(unit))
        item.user_properties.append(("work_unit", unit))


class _LongUnitsFirst:
    """Puts the units that hold a ``long_unit`` test first, after every other hook (pytest's own
    reordering by fixture parameters included). Every worker sorts the same collection the same
    way, as xdist requires."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        long_units = {work_unit(item) for item in items if item.get_closest_marker("long_unit")}
        items.sort(key=lambda item: work_unit(item) not in long_units)  # stable


def pytest_configure(config):
    config.addinivalue_line("markers", "long_unit: the test's work unit takes minutes (training, "
                            "grading batches); such units are handed to the workers first")
    config.pluginmanager.register(_LongUnitsFirst(), "cnnbook-long-units-first")


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
    from cnnbook.nets import models

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


@pytest.fixture(scope="session")
def configured_book(built_book, repo_root, tmp_path_factory, report_timing) -> BuiltBook:
    """The book as a course publishes it: a copy of :func:`built_book`'s output rebuilt with
    ``--all`` (every page re-read, notebooks from the copied jupyter-cache) and a ``_config.yml``
    that names :data:`COURSE_LAUNCH_SETTINGS` instead of the placeholder."""
    import shutil

    import yaml
    from book_build import COURSE_LAUNCH_SETTINGS, build

    output = tmp_path_factory.mktemp("configured-book")
    shutil.copytree(built_book.output, output, dirs_exist_ok=True, symlinks=True)
    config = yaml.safe_load((repo_root / "_config.yml").read_text())
    config["repository"].update(url=COURSE_LAUNCH_SETTINGS["repository_url"],
                                branch=COURSE_LAUNCH_SETTINGS["branch"])
    config["launch_buttons"]["jupyterhub_url"] = COURSE_LAUNCH_SETTINGS["jupyterhub_url"]
    # paths in the file are relative to the file's folder: name them from the repository
    extensions = config["sphinx"]["local_extensions"]
    config["sphinx"]["local_extensions"] = {name: str(repo_root / path)
                                            for name, path in extensions.items()}
    config_file = output / "_config.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    seconds, log = build(repo_root, output, "--all", "--config", str(config_file))
    report_timing("book rebuild --all with a course's launch settings (pages re-read, notebooks "
                  "from the copied jupyter-cache)", seconds)
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


@dataclass
class _UnitSpan:
    worker: str
    first_start: float
    last_stop: float
    workers: set[str] = field(default_factory=set)


_UNIT_SPANS: dict[str, _UnitSpan] = {}


def pytest_runtest_logreport(report):
    """Where and when each work unit ran (in the xdist controller, or the only process): the
    first start and last stop of its test phases, and every worker that ran one."""
    unit = dict(report.user_properties).get("work_unit")
    if unit is None or not getattr(report, "start", 0):
        return
    node = getattr(report, "node", None)
    worker = getattr(getattr(node, "gateway", None), "id", "main")
    span = _UNIT_SPANS.setdefault(unit, _UnitSpan(worker, report.start, report.stop))
    span.first_start = min(span.first_start, report.start)
    span.last_stop = max(span.last_stop, report.stop)
    span.workers.add(worker)


def _timeline_lines() -> list[str]:
    """The work units in order of start, per worker, with each worker's idle time before the last
    one finished (what a better split of the units could still save)."""
    if not _UNIT_SPANS:
        return []
    begin = min(span.first_start for span in _UNIT_SPANS.values())
    end = max(span.last_stop for span in _UNIT_SPANS.values())
    lines = []
    for worker in sorted({span.worker for span in _UNIT_SPANS.values()}):
        spans = sorted(((unit, span) for unit, span in _UNIT_SPANS.items()
                        if span.worker == worker), key=lambda pair: pair[1].first_start)
        covered = sum(span.last_stop - span.first_start for _, span in spans)
        idle_at_end = end - spans[-1][1].last_stop
        lines.append(f"{worker}: {len(spans)} units, {covered:.0f} s of the run's "
                     f"{end - begin:.0f} s; finished {idle_at_end:.0f} s before the end")
        for unit, span in spans:
            wall = span.last_stop - span.first_start
            if wall >= 5 or len(span.workers) > 1:
                split = (f"  (SPLIT over {', '.join(sorted(span.workers))}: its fixtures were "
                         "built in each)") if len(span.workers) > 1 else ""
                lines.append(f"  {span.first_start - begin:6.0f} s  {wall:6.1f} s  {unit}{split}")
    return lines


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("timings (figures, not assertions)")
        for label, seconds in _TIMINGS:
            terminalreporter.write_line(f"{label}: {seconds:.1f} s")
    timeline = _timeline_lines()
    if len(timeline) > 1 and terminalreporter.config.getvalue("durations") is not None:
        terminalreporter.section("work units: start, wall time (units of 5 s or more)")
        for line in timeline:
            terminalreporter.write_line(line)
