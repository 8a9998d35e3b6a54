"""The whole book builds with warnings as errors, every page executes, and nothing on a page is an
error, a traceback or a TensorFlow log line. Prints the cold and the cached build times."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _toc_files(repo_root: Path) -> list[str]:
    toc = yaml.safe_load((repo_root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


def _build(repo_root: Path, output: Path, *extra: str) -> tuple[float, str]:
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(repo_root), "-W", "-n", "--keep-going",
               "--path-output", str(output), *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"jupyter-book build failed:\n{log[-6000:]}"
    return seconds, log


@pytest.fixture(scope="module")
def built_book(repo_root, tmp_path_factory, report_timing):
    output = tmp_path_factory.mktemp("book")
    cold_seconds, cold_log = _build(repo_root, output)
    report_timing("book build, cold (every page executed)", cold_seconds)
    cached_seconds, cached_log = _build(repo_root, output)
    report_timing("book rebuild, nothing changed", cached_seconds)
    reread_seconds, reread_log = _build(repo_root, output, "--all")
    report_timing("book rebuild --all (pages re-read, notebooks from jupyter-cache)", reread_seconds)
    return output / "_build" / "html", cold_log, reread_log


def test_every_toc_page_is_rendered(built_book, repo_root):
    html_dir, _, _ = built_book
    for page in _toc_files(repo_root):
        assert (html_dir / f"{page}.html").is_file(), f"{page} was not rendered"


def test_pages_show_no_error_traceback_or_log(built_book, repo_root):
    html_dir, _, _ = built_book
    forbidden = [
        "Traceback (most recent call last)",
        "output traceback",
        "output stderr",
        re.compile(r"[EWI]0000 00:00:"),  # TensorFlow's C++ log prefix
        "cuda_platform",
        "oneDNN custom operations",
    ]
    for page in _toc_files(repo_root):
        html = (html_dir / f"{page}.html").read_text()
        for pattern in forbidden:
            found = pattern.search(html) if isinstance(pattern, re.Pattern) else pattern in html
            assert not found, f"{page}.html shows {pattern!r}"


def test_pages_are_executed_with_outputs(built_book, repo_root):
    html_dir, _, _ = built_book
    for page in _toc_files(repo_root):
        if page.endswith("bibliography"):
            continue
        html = (html_dir / f"{page}.html").read_text()
        assert "cell_output" in html, f"{page}.html has no executed output"


def test_rebuild_takes_notebooks_from_the_cache(built_book):
    _, cold_log, reread_log = built_book
    assert "Executing" in cold_log or "executing" in cold_log
    assert not re.search(r"Executing notebook", reread_log), (
        "an unchanged page was executed again: jupyter-cache did not serve it\n" + reread_log[-3000:]
    )
