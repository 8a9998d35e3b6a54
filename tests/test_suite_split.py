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
from types import SimpleNamespace

from conftest import (
    LONGEST_UNITS_FIRST,
    SHARED_FIXTURE_GROUPS,
    SPLIT_BY_FIXTURE,
    SPLIT_BY_FIXTURE_PARAMETER,
    work_unit,
)


def _item(path: str, fixturenames=(), **params):
    return SimpleNamespace(fspath=path, callspec=SimpleNamespace(params=params),
                           fixturenames=list(fixturenames))


def test_work_unit_is_the_module_its_shared_fixture_group_or_its_fixture_parameter():
    assert work_unit(_item("/repo/tests/test_sizing.py")) == "test_sizing"
    assert work_unit(_item("/repo/tests/test_sizing.py", case=3)) == "test_sizing"
    assert work_unit(_item("/repo/tests/test_site_browser.py")) == "book"
    assert work_unit(_item("/repo/tests/test_book.py")) == "book"
    assert work_unit(_item("/repo/tests/test_models.py")) == "keras_models"
    assert work_unit(_item("/repo/tests/test_hostile_corpus.py", graded="sizing",
                           kind="os_exit")) == "test_hostile_corpus-sizing"
    # its tests that do not take the batch fixture are one more unit
    assert work_unit(_item("/repo/tests/test_hostile_corpus.py")) == "test_hostile_corpus"
    # test_course's tests that take the ResNet grading are a unit apart from the others
    assert work_unit(_item("/repo/tests/test_course.py", ["course", "resnet_grades"])) == (
        "test_course-resnet_grades")
    assert work_unit(_item("/repo/tests/test_course.py", ["course", "quick_grades"])) == (
        "test_course")


def test_every_grouped_module_exists_and_unit_names_are_groups_to_xdist(repo_root):
    for stem in SHARED_FIXTURE_GROUPS:
        assert (repo_root / "tests" / f"{stem}.py").is_file(), stem
    # xdist's own reading of a test id that carries its unit (a unit named "module[parameter]"
    # once made it read no group at all, so every test was a unit of its own)
    from xdist.scheduler import LoadGroupScheduling

    for unit in (*SHARED_FIXTURE_GROUPS.values(), *LONGEST_UNITS_FIRST):
        nodeid = f"tests/test_x.py::test_y[sizing-os_exit]@{unit}"
        assert LoadGroupScheduling._split_scope(None, nodeid) == unit, unit
    for stem in (*SPLIT_BY_FIXTURE_PARAMETER, *SPLIT_BY_FIXTURE):
        assert (repo_root / "tests" / f"{stem}.py").is_file(), stem


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
