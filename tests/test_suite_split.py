"""How ``make test TEST_WORKERS=2`` shares the suite between two pytest-xdist workers
(tests/conftest.py): every test carries its work unit, and a unit runs whole in one worker, so its
module fixtures are built once.

The end-to-end test runs a small real suite in two workers: when the marks came too late for
xdist (they once did), each test was a unit of its own and both workers built every fixture.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from conftest import work_unit

TESTS = Path(__file__).resolve().parent


def _collect(*arguments: str, marker: str | None = None) -> dict:
    """``{test id: work unit}`` of the real collection of ``arguments`` (no test runs); with
    ``marker``, ``{test id: (work unit, whether the test carries the mark)}``, which is what
    ``pytest -m marker`` selects by."""
    import pytest as runner  # this module's own pytest: collecting in-process, as xdist does

    class Units:
        def __init__(self):
            self.units = {}

        def pytest_collection_finish(self, session):
            self.units = {item.nodeid: work_unit(item) if marker is None else (
                work_unit(item), item.get_closest_marker(marker) is not None)
                for item in session.items}

    plugin = Units()
    status = runner.main(["--collect-only", "-q", "-p", "no:cacheprovider", *arguments],
                         plugins=[plugin])
    assert status == 0, status
    return plugin.units


def test_work_unit_is_the_closest_group_mark_else_the_module(repo_root):
    units = _collect(str(TESTS / "test_sizing.py"), str(TESTS / "test_book.py"),
                     str(TESTS / "test_site_browser.py"), str(TESTS / "test_models.py"),
                     str(TESTS / "test_hostile_corpus.py"), str(TESTS / "test_course.py"))
    by_module = {}
    for nodeid, unit in units.items():
        by_module.setdefault(nodeid.split("::")[0].rsplit("/", 1)[-1], set()).add(unit)
    # a module without a mark is its own unit; the book's two modules share the book build
    assert by_module["test_sizing.py"] == {"test_sizing"}
    assert by_module["test_book.py"] == by_module["test_site_browser.py"] == {"book"}
    assert by_module["test_models.py"] == {"keras_models"}
    # each hostile-corpus batch is a unit (the fixture parameter's mark), and the module's other
    # tests one more
    assert by_module["test_hostile_corpus.py"] == {
        "test_hostile_corpus", "test_hostile_corpus-sizing", "test_hostile_corpus-architectures"}
    corpus_units = {unit for nodeid, unit in units.items()
                    if "test_each_kind_gets_its_expected_score_and_reason[sizing-" in nodeid}
    assert corpus_units == {"test_hostile_corpus-sizing"}
    # test_course's tests that take the ResNet grading are a unit apart from the others
    assert by_module["test_course.py"] == {"test_course", "test_course-resnet_grades"}
    resnet = {nodeid.split("::")[1].split("[")[0] for nodeid, unit in units.items()
              if unit == "test_course-resnet_grades"}
    assert "test_resnet_reference_gets_every_test_and_the_tier_of_its_accuracy" in resnet
    assert "test_reference_answers_get_full_marks" not in resnet


def test_unit_names_are_groups_to_xdist():
    """xdist's own reading of a test id that carries its unit (a unit named
    "module[parameter]" once made it read no group at all, so every test was a unit of its
    own)."""
    from xdist.scheduler import LoadGroupScheduling

    for unit in ("book", "keras_models", "test_hostile_corpus-sizing",
                 "test_course-resnet_grades"):
        nodeid = f"tests/test_x.py::test_y[sizing-os_exit]@{unit}"
        assert LoadGroupScheduling._split_scope(None, nodeid) == unit, unit


def test_the_grading_batches_are_their_own_run_and_nothing_else_is():
    """`make test-grading` (``-m grading_batch``) runs the units that grade a whole class or a
    hostile corpus, each test of them; `make test` runs everything else, the sizing and
    parameters course among it."""
    every = _collect(str(TESTS), marker="grading_batch")  # one collection: seconds each
    batches = {nodeid: unit for nodeid, (unit, marked) in every.items() if marked}
    rest = {nodeid: unit for nodeid, (unit, marked) in every.items() if not marked}
    assert set(batches.values()) == {
        "test_hostile_corpus-sizing", "test_hostile_corpus-architectures",
        "test_course_architectures", "test_course-resnet_grades"}
    # a batch unit runs whole in that run: none of its tests is left to the suite
    assert not set(batches.values()) & {
        unit for unit in rest.values() if unit != "test_course_architectures"}
    in_suite = {nodeid.split("::")[1].split("[")[0] for nodeid, unit in rest.items()
                if unit in ("test_course", "test_course_architectures", "test_hostile_corpus")}
    assert {"test_reference_answers_get_full_marks",  # the sizing and parameters course
            "test_release_holds_no_solution_line_and_no_hidden_test",  # architectures, fast
            "test_corpus_has_at_least_25_hostile_kinds"} <= in_suite
    assert "test_reference_gets_full_automatic_marks_and_the_tier_of_its_accuracy" not in in_suite


def test_long_units_are_handed_out_first(repo_root):
    collected = list(_collect(str(TESTS / "test_sizing.py"), str(TESTS / "test_book.py"),
                              str(TESTS / "test_course.py")).values())
    first_other = collected.index("test_sizing")
    assert {"book", "test_course-resnet_grades"} == set(collected[:first_other])


def test_two_workers_run_each_unit_whole_in_one_worker(repo_root):
    modules = ("tests/test_metrics.py", "tests/test_formulas.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup",
         "--no-loadscope-reorder", "-v", "-p", "no:cacheprovider", "--durations=1", *modules],
        cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    workers_of = defaultdict(set)
    ran = 0
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[\s*\d+%\] PASSED (.+?)\s*$",
                                     result.stdout, re.MULTILINE):
        test_id, _, unit = nodeid.rpartition("@")
        assert unit == Path(test_id.split("::")[0]).stem, nodeid  # xdist saw the mark
        workers_of[unit].add(worker)
        ran += 1
    assert ran > 20 and set(workers_of) == {"test_metrics", "test_formulas"}, result.stdout[-2000:]
    assert all(len(workers) == 1 for workers in workers_of.values()), dict(workers_of)
    # the timeline in the summary names both units, and no unit split over workers
    assert "work units: start, wall time" in result.stdout and "SPLIT" not in result.stdout
