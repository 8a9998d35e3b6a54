"""The whole book builds with warnings as errors, every page executes, and nothing on a page is an
error, a traceback or a TensorFlow log line. Prints the cold and the cached build times."""

from __future__ import annotations

import html.parser
import re

import pytest
from book_build import build, toc_files

# the cold book build (built_book) is shared with test_site_browser.py: one work unit
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book"), pytest.mark.long_unit]


@pytest.fixture(scope="module")
def rebuilt_book(built_book, configured_book, repo_root, report_timing):
    """The session's book (tests/conftest.py, built cold once) rebuilt into the same folder with
    nothing changed; and the log of its copy rebuilt with ``--all`` and a course's settings
    (``configured_book``: every page re-read, notebooks from jupyter-cache)."""
    cached_seconds, _ = build(repo_root, built_book.output)
    report_timing("book rebuild, nothing changed", cached_seconds)
    return configured_book.log


def test_every_toc_page_is_rendered(built_book, repo_root):
    html_dir = built_book.html_dir
    for page in toc_files(repo_root):
        assert (html_dir / f"{page}.html").is_file(), f"{page} was not rendered"


def test_pages_show_no_error_traceback_or_log(built_book, repo_root):
    html_dir = built_book.html_dir
    forbidden = [
        "Traceback (most recent call last)",
        "output traceback",
        "output stderr",
        re.compile(r"[EWI]0000 00:00:"),  # TensorFlow's C++ log prefix
        "cuda_platform",
        "oneDNN custom operations",
    ]
    for page in toc_files(repo_root):
        html = (html_dir / f"{page}.html").read_text()
        for pattern in forbidden:
            found = pattern.search(html) if isinstance(pattern, re.Pattern) else pattern in html
            assert not found, f"{page}.html shows {pattern!r}"


def test_pages_are_executed_with_outputs(built_book, repo_root):
    html_dir = built_book.html_dir
    for page in toc_files(repo_root):
        if page.endswith("bibliography"):
            continue
        html = (html_dir / f"{page}.html").read_text()
        assert "cell_output" in html, f"{page}.html has no executed output"


# A NumPy 2 scalar shown by its repr ("np.float64(0.25)", "np.int64(3)") instead of its value.
NUMPY_SCALAR_REPR = re.compile(r"\bnp\.(?:float|int|uint|bool|complex|str|bytes)\w*\(")


class _OutputText(html.parser.HTMLParser):
    """The text a reader sees as results: cell outputs and glued values ("pasted" text), not the
    code of the cells nor the API page's docstrings, which may name such reprs on purpose."""

    def __init__(self):
        super().__init__()
        self.depth, self.inside, self.chunks = 0, [], []

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag in ("br", "img", "hr", "meta", "link", "input", "col", "source", "wbr"):
            return
        self.depth += 1
        if "cell_output" in classes or any(name.startswith("pasted") for name in classes):
            self.inside.append(self.depth)

    def handle_endtag(self, tag):
        if tag in ("br", "img", "hr", "meta", "link", "input", "col", "source", "wbr"):
            return
        if self.inside and self.inside[-1] == self.depth:
            self.inside.pop()
        self.depth -= 1

    def handle_data(self, data):
        if self.inside:
            self.chunks.append(data)


def shown_results(page_html: str) -> str:
    parser = _OutputText()
    parser.feed(page_html)
    return "".join(parser.chunks)


def test_shown_results_finds_reprs_in_outputs_only():
    page = ('<div class="cell_input"><pre>np.float64(1.0)</pre></div>'
            '<div class="cell_output docutils container"><pre>{"a": np.float64(0.5)}</pre></div>'
            '<p>ratio <span class="pasted-text">np.int64(3)</span></p>')
    found = NUMPY_SCALAR_REPR.findall(shown_results(page))
    assert found == ["np.float64(", "np.int64("]


def test_pages_show_no_numpy_scalar_reprs(built_book, repo_root):
    for page in toc_files(repo_root):
        results = shown_results((built_book.html_dir / f"{page}.html").read_text())
        found = NUMPY_SCALAR_REPR.search(results)
        assert not found, (
            f"{page}.html shows a NumPy scalar's repr: "
            f"...{results[max(0, found.start() - 60):found.end() + 20]}...; glue plain values "
            "(cnnbook.book.pages.glue_value) and format tables (cnnbook.book.pages.table)")


def test_rebuild_takes_notebooks_from_the_cache(built_book, rebuilt_book):
    cold_log, reread_log = built_book.log, rebuilt_book
    assert "Executing" in cold_log or "executing" in cold_log
    assert not re.search(r"Executing notebook", reread_log), (
        "an unchanged page was executed again: jupyter-cache did not serve it\n"
        + reread_log[-3000:]
    )
