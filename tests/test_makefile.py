"""``make book`` empties jupyter-cache and Sphinx's saved environment (without it, emptying the
cache alone re-runs nothing: Sphinx re-reads only the sources that changed) when ``results/`` or
``cnnbook/`` changed since the last good build: the cache runs a page again only when the page's
code changes, but the pages also read committed results and call the package, so a new result
would otherwise never reach the site. The real Makefile runs here, with a stand-in
``jupyter-book`` that reports the cache."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

STAND_IN = """#!/bin/sh
if [ -d _build/.jupyter_cache ] && [ -d _build/.doctrees ]; then echo cache-kept
elif [ -d _build/.jupyter_cache ] || [ -d _build/.doctrees ]; then echo half-emptied
else echo cache-emptied; fi
mkdir -p _build
"""


@pytest.fixture
def tree(tmp_path, repo_root):
    """A checkout's shape: the Makefile, a result, a module, a built site with its cache."""
    shutil.copy(repo_root / "Makefile", tmp_path / "Makefile")
    for folder in ("results", "cnnbook/__pycache__", "_build/.jupyter_cache", "_build/.doctrees",
                   "bin"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "results" / "lesion.json").write_text("{}")
    (tmp_path / "cnnbook" / "lesion.py").write_text("")
    (tmp_path / "_build" / ".executed").write_text("")
    stand_in = tmp_path / "bin" / "jupyter-book"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    for path in ("results/lesion.json", "cnnbook/lesion.py"):  # older than the last build
        os.utime(tmp_path / path, (1_000_000_000, 1_000_000_000))
    return tmp_path


def make_book(tree) -> str:
    done = subprocess.run(["make", "-s", "-o", "setup", "-o", "node_modules/.installed", "book",
                           f"BIN={tree / 'bin'}"], cwd=tree, capture_output=True, text=True,
                          check=True)
    return done.stdout


def test_the_cache_stays_while_nothing_the_pages_read_changed(tree):
    (tree / "cnnbook" / "__pycache__" / "lesion.cpython-311.pyc").write_text("")  # bytecode
    assert make_book(tree).strip().splitlines()[-1] == "cache-kept"


@pytest.mark.parametrize("changed", ["results/lesion.json", "cnnbook/lesion.py"])
def test_a_new_result_or_module_empties_the_cache_once(tree, changed):
    stamp = (tree / "_build" / ".executed").stat().st_mtime
    os.utime(tree / changed, (stamp + 10, stamp + 10))
    output = make_book(tree)
    assert "every page runs again" in output and output.strip().endswith("cache-emptied")
    assert (tree / "_build" / ".executed").stat().st_mtime > stamp  # this build's stamp
    (tree / "_build" / ".jupyter_cache").mkdir()  # what the build wrote
    (tree / "_build" / ".doctrees").mkdir()
    os.utime(tree / "_build" / ".executed", (stamp + 20, stamp + 20))
    assert make_book(tree).strip() == "cache-kept"


def test_a_cache_without_the_stamp_of_a_good_build_is_emptied(tree):
    """A cache built before the stamp existed (or whose stamp was deleted): nothing says what
    it was built from."""
    (tree / "_build" / ".executed").unlink()
    assert make_book(tree).strip().endswith("cache-emptied")
    assert (tree / "_build" / ".executed").is_file()
    (tree / "_build" / ".executed").unlink()  # a cache emptied, then a build that failed
    (tree / "_build" / ".doctrees").mkdir()
    assert make_book(tree).strip().endswith("cache-emptied")


def test_a_first_build_says_nothing_about_a_cache(tree):
    shutil.rmtree(tree / "_build")
    assert make_book(tree).strip() == "cache-emptied"  # nothing there, nothing announced
