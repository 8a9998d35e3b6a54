"""Helpers of the book's tests (tests/test_book.py, tests/test_site_browser.py): the pages of
``_toc.yml`` and one ``jupyter-book build`` run. The build itself is the session fixture
``built_book`` of tests/conftest.py, so the suite builds the book once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

COURSE_LAUNCH_SETTINGS = {"repository_url": "https://github.com/example-course/cnnbook",
                          "branch": "fall-2026", "jupyterhub_url": "https://hub.example.edu"}
"""What a course sets in ``_config.yml`` before publishing (README, "Quick start"): the
``configured_book`` fixture (tests/conftest.py) builds with them in place of the placeholder."""


def toc_files(repo_root: Path) -> list[str]:
    """The documents of ``_toc.yml`` (``book/intro``, ``book/sizing``, ...), root first."""
    toc = yaml.safe_load((repo_root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


def build(repo_root: Path, output: Path, *extra: str) -> tuple[float, str]:
    """Run ``jupyter-book build <repo_root> -W -n --keep-going --path-output <output> *extra``;
    return its wall time in seconds and its log. Fails the calling test with the log's end when
    the build fails (a warning is an error)."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(repo_root), "-W", "-n", "--keep-going",
               "--path-output", str(output), *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"jupyter-book build failed:\n{log[-6000:]}"
    return seconds, log
