"""The site as a reader sees it: every page of the built book opened in a real browser (Debian's
Chromium driven by Playwright, no browser download) from a local HTTP server on 127.0.0.1, offline.

Every page loads with no console error and no failed request, its mathematics is typeset by the
MathJax served with the site, its images load, its internal links resolve, and no code cell needs a
horizontal scroll bar at a 1280-pixel window. Search finds the sizing chapter for "padding". With
the shipped placeholder repository no page links to it or to a local hub; in the site a course
publishes (``configured_book``: its repository and hub set) the launch links of each assignment are
well-formed nbgitpuller, Colab and Binder URLs built from those settings. Nothing of
``solutions/`` (solution code, hidden tests) is on the site.
A screenshot of every page, whole (JPEG, in parts of 16,000 pixels for long pages), is kept in
``test-artifacts/site/`` (or ``$CNNBOOK_TEST_ARTIFACTS/site``), named in the run's summary.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urldefrag, urlsplit

import pytest
import yaml
from book_build import COURSE_LAUNCH_SETTINGS, toc_files

# the cold book build (built_book) is shared with test_book.py: one work unit
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WINDOW = {"width": 1280, "height": 900}
#: Screenshots of a long page are cut into parts of this height (a JPEG is at most 65,535 pixels).
SCREENSHOT_PART_HEIGHT = 16_000


def _assignment_chapters(repo_root: Path) -> dict[str, str]:
    """Each released assignment (``exercises/<id>/<id>.ipynb``) and its chapter, ``book/<id>``."""
    return {folder.name: f"book/{folder.name}"
            for folder in sorted((repo_root / "exercises").iterdir())
            if (folder / f"{folder.name}.ipynb").is_file()}


@dataclass
class PageVisit:
    """What the browser saw on one page."""

    path: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    math_elements: int = 0
    math_untypeset: list[str] = field(default_factory=list)
    math_errors: list[str] = field(default_factory=list)
    raw_tex_in_text: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    overflowing_code: list[dict] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)
    page_height: int = 0
    screenshots: list[Path] = field(default_factory=list)
    figure_screenshots: list[Path] = field(default_factory=list)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def site_url(built_book):
    """The built site served by Python's HTTP server on 127.0.0.1 (a free port)."""
    handler = functools.partial(_Quiet, directory=str(built_book.html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make system`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshot_dir(repo_root) -> Path:
    base = Path(os.environ.get("CNNBOOK_TEST_ARTIFACTS", repo_root / "test-artifacts"))
    folder = base / "site"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _site_pages(repo_root: Path) -> list[str]:
    """Every page a reader reaches: the chapters of _toc.yml, search and the indexes (index.html
    only redirects to the first of them)."""
    return ([f"{doc}.html" for doc in toc_files(repo_root)]
            + ["genindex.html", "py-modindex.html", "search.html"])


# Runs in the page once it has loaded: waits for MathJax's first typesetting, makes lazy images
# load, and reports what the tests check.
_INSPECT_PAGE = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  const loaded = Promise.all(images.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done);
  })));
  // An image that never settles is reported as not loaded, after 60 s.
  await Promise.race([loaded, new Promise(done => setTimeout(done, 60000))]);
  const maths = Array.from(document.querySelectorAll("span.math, div.math"));
  // Text a reader sees outside code: raw TeX delimiters there mean MathJax did not typeset it.
  const article = document.querySelector("article") || document.body;
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
    acceptNode: node => node.parentElement.closest("pre, code, script, style, mjx-container")
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const rawTex = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const match = node.textContent.match(/\\\\[\\[\\(]|\\$\\$|\\\\frac|\\\\begin\\{/);
    if (match) rawTex.push(node.textContent.trim().slice(0, 120));
  }
  return {
    mathElements: maths.length,
    mathUntypeset: maths.filter(el => !el.querySelector("mjx-container"))
                        .map(el => el.textContent.trim().slice(0, 120)),
    mathErrors: Array.from(document.querySelectorAll("mjx-merror"))
                     .map(el => el.getAttribute("data-mjx-error") || el.textContent),
    rawTex: rawTex,
    images: images.map(img => ({src: img.currentSrc || img.src, complete: img.complete,
                                naturalWidth: img.naturalWidth,
                                shownWidth: img.getBoundingClientRect().width,
                                inOutput: !!img.closest("div.cell_output")})),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    tables: Array.from(document.querySelectorAll("div.cell_output table")).map(table => ({
      helper: table.classList.contains("cnnbook-table"),
      cells: Array.from(table.querySelectorAll("td")).map(td => {
        const style = getComputedStyle(td);
        return {text: td.textContent.trim().slice(0, 60), align: style.textAlign,
                column: td.cellIndex,
                padLeft: parseFloat(style.paddingLeft), padRight: parseFloat(style.paddingRight)};
      }),
    })),
  };
}
"""

# Runs after the screenshot: opens every folded cell, then finds what in a code cell (its code or
# its output) either scrolls sideways or sticks out of the cell's column.
_OVERFLOWING_CODE = """
() => {
  document.querySelectorAll("details").forEach(details => { details.open = true; });
  const found = [];
  for (const cell of document.querySelectorAll("div.cell")) {
    const right = cell.getBoundingClientRect().right;
    for (const element of cell.querySelectorAll("*")) {
      if (element.offsetParent === null) continue;
      const style = getComputedStyle(element);
      const scrolls = ["auto", "scroll"].includes(style.overflowX)
        && element.scrollWidth > element.clientWidth + 1;
      const sticksOut = element.getBoundingClientRect().right > right + 1;
      if (scrolls || sticksOut) {
        found.push({element: element.tagName.toLowerCase() + "." + element.className,
                    text: element.textContent.trim().slice(0, 80),
                    scrollWidth: element.scrollWidth, clientWidth: element.clientWidth,
                    right: Math.round(element.getBoundingClientRect().right),
                    cellRight: Math.round(right)});
        break;
      }
    }
  }
  return found;
}
"""


@pytest.fixture(scope="module")
def visits(browser, site_url, repo_root, screenshot_dir, report_timing) -> dict[str, PageVisit]:
    """Every page opened once in a 1280-pixel window, with what the browser saw."""
    start = time.perf_counter()
    context = browser.new_context(viewport=WINDOW, service_workers="block")
    # The site must work offline: a request that leaves the local server (a CDN, a web font) is
    # aborted at once, and recorded as a failed request of its page.
    context.route(lambda url: not url.startswith(site_url), lambda route: route.abort())
    results = {}
    for path in _site_pages(repo_root):
        visit = PageVisit(path)
        page = context.new_page()
        page.on("console", lambda message, visit=visit: visit.console_errors.append(
            message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error, visit=visit: visit.console_errors.append(str(error)))
        page.on("requestfailed", lambda request, visit=visit: visit.failed_requests.append(
            f"{request.url} ({request.failure})"))
        page.on("response", lambda response, visit=visit: visit.failed_requests.append(
            f"{response.url} (HTTP {response.status})") if response.status >= 400 else None)
        response = page.goto(site_url + path, wait_until="load")
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        seen = page.evaluate(_INSPECT_PAGE)
        page.wait_for_load_state("networkidle")
        visit.math_elements = seen["mathElements"]
        visit.math_untypeset = seen["mathUntypeset"]
        visit.math_errors = seen["mathErrors"]
        visit.raw_tex_in_text = seen["rawTex"]
        visit.images = seen["images"]
        visit.links = seen["links"]
        visit.tables = seen["tables"]
        # The whole page as JPEG, in parts: a long chapter is tens of thousands of pixels tall.
        visit.page_height = page.evaluate("document.documentElement.scrollHeight")
        stem = path.replace("/", "__").removesuffix(".html")
        for part, top in enumerate(range(0, visit.page_height, SCREENSHOT_PART_HEIGHT), start=1):
            height = min(SCREENSHOT_PART_HEIGHT, visit.page_height - top)
            screenshot = screenshot_dir / f"{stem}-{part}.jpg"
            page.screenshot(path=str(screenshot), full_page=True, type="jpeg", quality=80,
                            clip={"x": 0, "y": top, "width": WINDOW["width"], "height": height},
                            timeout=180_000)
            visit.screenshots.append(screenshot)
        visit.overflowing_code = page.evaluate(_OVERFLOWING_CODE)
        figure_dir = screenshot_dir / "figures"
        figure_dir.mkdir(exist_ok=True)
        for number, figure in enumerate(page.locator("div.cell_output img").all(), start=1):
            shot = figure_dir / f"{stem}-figure-{number:02d}.png"
            figure.screenshot(path=str(shot), timeout=60_000)
            visit.figure_screenshots.append(shot)
        page.close()
        results[path] = visit
    context.close()
    report_timing(f"site in Chromium: {len(results)} pages opened, screenshots in {screenshot_dir}",
                  time.perf_counter() - start)
    return results


def test_every_page_loads_without_console_error_or_failed_request(visits):
    problems = {path: {"console errors": visit.console_errors,
                       "failed requests": visit.failed_requests}
                for path, visit in visits.items()
                if visit.console_errors or visit.failed_requests}
    assert not problems, json.dumps(problems, indent=1)


def test_mathematics_is_typeset_by_mathjax_on_every_page(visits, built_book, repo_root):
    for path, visit in visits.items():
        assert not visit.math_untypeset, f"{path}: not typeset: {visit.math_untypeset[:5]}"
        assert not visit.math_errors, f"{path}: MathJax errors: {visit.math_errors[:5]}"
        assert not visit.raw_tex_in_text, f"{path}: raw TeX: {visit.raw_tex_in_text[:5]}"
    # The chapters write mathematics ($...$ or $$...$$ in their MyST source): their pages show it.
    for doc in toc_files(repo_root):
        source = (repo_root / f"{doc}.md").read_text()
        if re.search(r"\$[^$\s][^$]*\$", source):
            assert visits[f"{doc}.html"].math_elements > 0, f"{doc}: no typeset mathematics"


def test_mathjax_is_served_with_the_site(built_book):
    html_dir = built_book.html_dir
    sizing = (html_dir / "book" / "sizing.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"?]*mathjax[^"?]*)(?:\?v=\w+)?"', sizing,
                         flags=re.IGNORECASE)
    assert scripts == ["../_static/mathjax/tex-mml-chtml.js"], scripts
    assert (html_dir / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    # The CommonHTML fonts that the bundle loads on demand are served too.
    assert list((html_dir / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))


def test_every_image_loads(visits):
    total = 0
    for path, visit in visits.items():
        for image in visit.images:
            total += 1
            assert image["complete"] and image["naturalWidth"] > 0, f"{path}: {image}"
    # The chapters draw their figures with matplotlib: the site has many images.
    assert total >= 10, f"only {total} images on the whole site"


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


def test_internal_links_resolve(visits, site_url):
    anchors_of: dict[str, set[str]] = {}
    checked = 0
    for path, visit in visits.items():
        for link in visit.links:
            if not link.startswith(site_url):
                continue
            target, fragment = urldefrag(link)
            if target not in anchors_of:
                try:
                    with urllib.request.urlopen(target) as response:
                        body = response.read().decode("utf-8", errors="replace")
                except urllib.error.HTTPError as error:
                    pytest.fail(f"{path} links to {link}: HTTP {error.code}")
                parser = _Anchors()
                if target.endswith((".html", "/")):
                    parser.feed(body)
                anchors_of[target] = parser.ids
            if fragment:
                assert fragment in anchors_of[target], f"{path} links to a missing anchor: {link}"
            checked += 1
    assert checked > 100, f"only {checked} internal links on the whole site"


def test_the_landing_page_opens_the_introduction(browser, site_url, repo_root):
    page = browser.new_page(viewport=WINDOW)
    page.goto(site_url, wait_until="load")
    page.wait_for_url(f"{site_url}{toc_files(repo_root)[0]}.html", timeout=30_000)
    page.close()


def test_search_finds_the_sizing_chapter_for_padding(browser, site_url):
    page = browser.new_page(viewport=WINDOW)
    page.goto(site_url + "search.html?q=padding", wait_until="load")
    page.wait_for_function(
        "() => document.querySelectorAll('#search-results ul.search li a').length > 0",
        timeout=30_000)
    results = page.eval_on_selector_all("#search-results ul.search li a",
                                        "links => links.map(a => a.href)")
    page.close()
    assert any(urlsplit(url).path.endswith("/book/sizing.html") for url in results), results


def _launch_settings(repo_root: Path) -> dict:
    """The launch settings of the ``configured_book`` build: a course's own repository and hub
    (``book_build.COURSE_LAUNCH_SETTINGS``), the rest from ``_config.yml``."""
    config = yaml.safe_load((repo_root / "_config.yml").read_text())
    return {"repository": COURSE_LAUNCH_SETTINGS["repository_url"],
            "branch": COURSE_LAUNCH_SETTINGS["branch"],
            "hub": COURSE_LAUNCH_SETTINGS["jupyterhub_url"],
            "binder": config["launch_buttons"]["binderhub_url"].rstrip("/")}


def _assignment_links(page_html: str) -> dict[str, dict[str, str]]:
    """``{assignment: {"hub": url, "colab": url, "binder": url}}`` of the launch boxes on a page."""
    boxes = {}
    for match in re.finditer(r'<div class="cnnbook-launch[^"]*" id="launch-([\w-]+)"(.*?)</div>',
                             page_html, flags=re.DOTALL):
        links = re.findall(r'class="[^"]*cnnbook-launch-(hub|colab|binder)[^"]*" href="([^"]+)"'
                           r'|href="([^"]+)" class="[^"]*cnnbook-launch-(hub|colab|binder)',
                           match.group(2))
        found = {}
        for kind, url, url_after, kind_after in links:
            found[kind or kind_after] = html.unescape(url or url_after)
        boxes[match.group(1)] = found
    return boxes


def test_each_assignment_has_well_formed_launch_links_on_its_chapter(configured_book, repo_root):
    """In the site a course publishes (its repository and hub set), each assignment's box links
    its notebook on the hub, Colab and Binder in the forms those services document."""
    settings = _launch_settings(repo_root)
    repository_path = urlsplit(settings["repository"]).path.strip("/")
    repository_name = repository_path.split("/")[-1]
    chapters = _assignment_chapters(repo_root)
    assert chapters, "exercises/ holds no released assignment"
    boxes_by_page = {doc: _assignment_links((configured_book.html_dir / f"{doc}.html").read_text())
                     for doc in toc_files(repo_root)}
    for assignment, chapter in chapters.items():
        pages = [doc for doc, boxes in boxes_by_page.items() if assignment in boxes]
        assert pages == [chapter], (
            f"exercises/{assignment} must have one launch box, on {chapter} (```{{launch-"
            f"assignment}} {assignment}``` after the chapter's opening), found on {pages}")
        links = boxes_by_page[chapter][assignment]
        notebook = f"exercises/{assignment}/{assignment}.ipynb"

        # nbgitpuller on the course hub (nbgitpuller's link format: /hub/user-redirect/git-pull
        # with repo, branch and urlpath; it clones into a folder named after the repository).
        hub = urlsplit(links["hub"])
        assert f"{hub.scheme}://{hub.netloc}" == settings["hub"]
        assert hub.path == "/hub/user-redirect/git-pull"
        query = parse_qs(hub.query, strict_parsing=True)
        assert sorted(query) == ["branch", "repo", "urlpath"]
        assert query["repo"] == [settings["repository"]]
        assert query["branch"] == [settings["branch"]]
        assert query["urlpath"] == [f"lab/tree/{repository_name}/{notebook}"]
        assert (repo_root / notebook).is_file()

        assert links["colab"] == (f"https://colab.research.google.com/github/{repository_path}"
                                  f"/blob/{settings['branch']}/{notebook}")
        binder = urlsplit(links["binder"])
        assert f"{binder.scheme}://{binder.netloc}" == settings["binder"]
        assert binder.path == f"/v2/gh/{repository_path}/{settings['branch']}"
        assert parse_qs(binder.query) == {"urlpath": [f"lab/tree/{notebook}"]}


def test_chapter_pages_open_as_notebooks_on_the_hub(configured_book, repo_root):
    """In the site a course publishes, the theme's launch menu of a chapter opens its MyST source
    on the hub (jupytext there opens it as a notebook)."""
    settings = _launch_settings(repo_root)
    repository_name = urlsplit(settings["repository"]).path.strip("/").split("/")[-1]
    for chapter in _assignment_chapters(repo_root).values():
        page_html = (configured_book.html_dir / f"{chapter}.html").read_text()
        hub_links = [html.unescape(url) for url in re.findall(
            r'href="([^"]*/hub/user-redirect/git-pull\?[^"]*)"', page_html)]
        menu_links = [url for url in hub_links
                      if parse_qs(urlsplit(url).query)["urlpath"][0].endswith(".md")]
        assert len(menu_links) == 1, (chapter, hub_links)
        query = parse_qs(urlsplit(menu_links[0]).query)
        assert query["urlpath"] == [f"lab/tree/{repository_name}/{chapter}.md"]
        assert query["repo"] == [settings["repository"]]
        assert (repo_root / f"{chapter}.md").is_file()


NUMBER = re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?%?")
"""A cell that holds one number as the tables print it ("138,357,544", "-5.7", "0.000416")."""
MIN_CELL_PADDING_PX = 4


def test_tables_are_padded_and_right_align_their_numbers(visits):
    """Every table a page's cell shows comes from cnnbook.book.pages.table: its cells padded
    (columns never run together, as "224x224x3138.358" did) and its numbers right-aligned."""
    tables = [(path, table) for path, visit in visits.items() for table in visit.tables]
    assert len(tables) >= 15, f"only {len(tables)} tables found on the site"
    not_from_helper = [path for path, table in tables if not table["helper"]]
    assert not not_from_helper, f"tables not made by cnnbook.book.pages.table on {not_from_helper}"
    numbers = 0
    for path, table in tables:
        columns = {}
        for cell in table["cells"]:
            assert min(cell["padLeft"], cell["padRight"]) >= MIN_CELL_PADDING_PX, (path, cell)
            columns.setdefault(cell["column"], []).append(cell)
        # a column of numbers (every non-empty cell one number) is right-aligned; a column of
        # text that holds a number here and there ("3072" among "32x32x64" shapes) is not
        for cells in columns.values():
            filled = [cell for cell in cells if cell["text"]]
            if filled and all(NUMBER.fullmatch(cell["text"]) for cell in filled):
                numbers += len(filled)
                misaligned = [cell for cell in filled if cell["align"] != "right"]
                assert not misaligned, (path, misaligned[:3])
    assert numbers >= 100, numbers


MIN_FIGURE_TEXT_PX = 9
"""The smallest text a figure may show at a 1280-pixel window, in CSS pixels."""


def test_figures_are_readable_at_the_size_they_are_shown(visits, built_book, screenshot_dir):
    """Every figure a page's cell draws carries its own measurements (cnnbook.book.figures): its
    smallest text, scaled by the width the browser shows it at against the PNG's own width, is at
    least MIN_FIGURE_TEXT_PX; no labels overlap; no text sticks out of its box. Each figure has a
    screenshot in the test's artifacts (figures/), and figures/readability.json lists every
    figure's measurements, the worst first."""
    from PIL import Image

    from cnnbook.book.figures import PNG_KEY

    report = []
    for path, visit in visits.items():
        figures = [image for image in visit.images if image["inOutput"]]
        assert len(visit.figure_screenshots) == len(figures), path
        for image, screenshot in zip(figures, visit.figure_screenshots, strict=True):
            file = built_book.html_dir / urlsplit(image["src"]).path.lstrip("/")
            with Image.open(file) as png:
                text = getattr(png, "text", {})
                assert PNG_KEY in text, (
                    f"{path}: {file.name} has no measurements: is the page's first cell calling "
                    "cnnbook.book.figures.show_figures_with_measurements()?")
                measured = json.loads(text[PNG_KEY])
                assert png.width == image["naturalWidth"], (path, file.name)
            assert measured["min_font_px"] and measured["min_font_px"] > 0, (path, measured)
            assert screenshot.is_file() and screenshot.stat().st_size > 0, screenshot
            shown_px = measured["min_font_px"] * image["shownWidth"] / image["naturalWidth"]
            report.append({"page": path, "image": file.name, "screenshot": screenshot.name,
                           "smallest_text_shown_px": round(shown_px, 1),
                           "readable": shown_px >= MIN_FIGURE_TEXT_PX and not measured["overlaps"]
                           and not measured["overflows"], **measured})
    assert len(report) >= 25, len(report)
    report.sort(key=lambda row: (row["readable"], row["smallest_text_shown_px"]))
    (screenshot_dir / "figures" / "readability.json").write_text(json.dumps(report, indent=1))
    unreadable = [row for row in report if not row["readable"]]
    assert not unreadable, json.dumps(unreadable, indent=1)


PLACEHOLDER_MARKS = ("YOUR-ORGANISATION", "127.0.0.1", "localhost")
"""What a link of the shipped configuration would lead to: the placeholder repository, or the local
demonstration hub, which no reader of a published site can reach."""


def test_default_build_links_nowhere_it_cannot_reach(visits, built_book, site_url, repo_root):
    """With the shipped placeholder repository, no page links to it or to a local hub (in the
    browser, every link of every page; in the HTML, any mention at all), and each assignment box
    says what a course sets instead of offering links."""
    dead = {path: [url for url in visit.links if not url.startswith(site_url)
                   and any(mark in url for mark in PLACEHOLDER_MARKS)]
            for path, visit in visits.items()}
    assert not any(dead.values()), json.dumps(dead, indent=1)
    for page in sorted(built_book.html_dir.rglob("*.html")):
        text = page.read_text()
        assert "YOUR-ORGANISATION" not in text, f"{page} names the placeholder repository"
    for assignment, chapter in _assignment_chapters(repo_root).items():
        page_html = (built_book.html_dir / f"{chapter}.html").read_text()
        boxes = _assignment_links(page_html)
        assert boxes == {assignment: {}}, (chapter, boxes)
        box = re.search(rf'id="launch-{assignment}"(.*?)</div>', page_html, flags=re.DOTALL)
        text = html.unescape(re.sub(r"<[^>]+>", "", box.group(1)))
        assert "names no course repository" in text and "repository: url" in text, text
        assert "git-pull" not in page_html and "mybinder.org/v2" not in page_html, chapter


def test_no_code_cell_needs_horizontal_scrolling_at_1280_pixels(visits):
    overflowing = {path: visit.overflowing_code for path, visit in visits.items()
                   if visit.overflowing_code}
    assert not overflowing, json.dumps(overflowing, indent=1)


def test_every_page_has_a_screenshot_of_its_whole_height(visits):
    from PIL import Image

    for path, visit in visits.items():
        assert visit.screenshots, path
        heights = []
        for screenshot in visit.screenshots:
            with Image.open(screenshot) as image:
                assert image.format == "JPEG" and image.width == WINDOW["width"], screenshot
                heights.append(image.height)
        assert sum(heights) == visit.page_height, (path, heights, visit.page_height)


def _solution_blocks(repo_root: Path) -> list[tuple[str, str]]:
    """``(where, code)`` of every solution and hidden-test block of solutions/*/*.ipynb."""
    blocks = []
    pattern = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.DOTALL)
    for notebook in sorted((repo_root / "solutions").glob("*/*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for kind, code in pattern.findall(source):
                blocks.append((f"{notebook.name} {kind.lower()}", code))
    return blocks


def _normalised(text: str) -> str:
    return " ".join(text.split())


def test_site_holds_no_solution_or_hidden_test(built_book, repo_root):
    blocks = [(where, _normalised(code)) for where, code in _solution_blocks(repo_root)]
    # A block of a line or two (``return total``) may coincide with a chapter's code by chance.
    distinctive = [(where, code) for where, code in blocks if len(code) >= 60]
    assert len(distinctive) >= 10, f"only {len(distinctive)} solution blocks found in solutions/"
    texts = {}
    for path in sorted(built_book.html_dir.rglob("*.*")):
        if path.suffix not in (".html", ".ipynb", ".md", ".txt", ".js", ".py") or path.is_dir():
            continue
        if "_static" in path.relative_to(built_book.html_dir).parts[:1]:
            continue  # the theme's and MathJax's own files
        raw = path.read_text(errors="replace")
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in raw, f"{path} holds {marker!r}"
        if path.suffix == ".html":
            raw = html.unescape(re.sub(r"<[^>]+>", "", raw))
        elif path.suffix == ".ipynb":
            raw = "\n".join("".join(cell["source"]) for cell in json.loads(raw)["cells"])
        texts[path] = _normalised(raw)
    for where, code in distinctive:
        for path, text in texts.items():
            assert code not in text, f"{path} holds the {where} block starting {code[:80]!r}"


# Sets the explorer's controls as a reader's typing would (value, then the input/change events the
# controls listen to) and returns what the box then shows.
_SET_CONVOLUTION = """
([size, kernel, stride, dilation, padding, pad]) => {
  const box = document.querySelector("[data-conv-explorer]");
  const set = (name, value, event) => {
    const control = box.querySelector(`[name=${name}]`);
    control.value = String(value);
    control.dispatchEvent(new Event(event, {bubbles: true}));
  };
  set("padding", padding, "change");
  set("pad", pad, "input");
  set("size", size, "input");
  set("kernel", kernel, "input");
  set("stride", stride, "input");
  set("dilation", dilation, "input");
  const text = role => box.querySelector(`[data-role=${role}]`).textContent.trim();
  const count = selector => box.querySelectorAll(selector).length;
  return {output: text("output-size"), span: text("span"), before: text("pad-before"),
          after: text("pad-after"), error: text("error"), rule: text("rule"),
          outputCells: count("[data-role=output-cell]"), padCells: count("[data-role=pad-cell]"),
          inputCells: count("[data-role=input-cell]"), taps: count("[data-tap=yes]")};
}
"""


def test_interactive_convolution_shows_what_the_sizing_rules_compute(browser, site_url):
    """The sizing chapter's interactive convolution, driven over a sweep of input sizes, kernels,
    strides, dilations and paddings: every output size, padding split and kernel span it shows is
    what cnnbook.counting.sizing computes (an error where the kernel does not fit), its drawing has
    one cell per output position, and the window slides on its own until paused."""
    import itertools

    from cnnbook.counting import sizing

    page = browser.new_page(viewport=WINDOW)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(site_url + "book/sizing.html", wait_until="load")
    box = page.locator("[data-conv-explorer]")
    assert box.count() == 1
    # as a reader does it: type, pick from the list
    box.locator("input[name=size]").fill("32")
    box.locator("input[name=kernel]").fill("5")
    box.locator("input[name=stride]").fill("2")
    box.locator("select[name=padding]").select_option("same")
    assert box.locator("[data-role=output-size]").inner_text() == str(
        sizing.conv_output_size(32, 5, 2, "same"))
    assert (int(box.locator("[data-role=pad-before]").inner_text()),
            int(box.locator("[data-role=pad-after]").inner_text())) == sizing.same_padding(32, 5, 2)
    assert box.locator("input[name=pad]").is_disabled()

    checked = failures = 0
    for size, kernel, stride, dilation, padding in itertools.product(
            (1, 2, 5, 7, 8, 32), (1, 2, 3, 5), (1, 2, 3), (1, 2), ("valid", "same", 0, 1, 3)):
        mode, pad = (padding, 0) if isinstance(padding, str) else ("explicit", padding)
        shown = page.evaluate(_SET_CONVOLUTION, [size, kernel, stride, dilation, mode, pad])
        where = (size, kernel, stride, dilation, padding, shown)
        assert int(shown["span"]) == sizing.effective_kernel_size(kernel, dilation), where
        try:
            expected = sizing.conv_output_size(size, kernel, stride, padding, dilation)
        except ValueError:
            failures += 1
            assert shown["output"] == "none" and "does not fit" in shown["error"], where
            assert shown["outputCells"] == 0, where
            continue
        before, after = (sizing.same_padding(size, kernel, stride, dilation) if padding == "same"
                         else (0, 0) if padding == "valid" else (padding, padding))
        assert (int(shown["output"]), int(shown["before"]), int(shown["after"])) == (
            expected, before, after), where
        assert shown["error"] == "" and str(expected) in shown["rule"], where
        assert (shown["outputCells"], shown["inputCells"], shown["padCells"]) == (
            expected, size, before + after), where
        assert shown["taps"] == kernel, where  # the window at the first position, every tap
        checked += 1
    assert checked >= 500 and failures >= 20, (checked, failures)

    # the window slides by itself, one output position per step, and stops when paused
    page.evaluate(_SET_CONVOLUTION, [9, 3, 2, 1, "valid", 0])
    window = box.locator("[data-role=window]")
    positions = set()
    for _ in range(4):
        positions.add(window.get_attribute("data-position"))
        page.wait_for_timeout(1000)
    assert len(positions) >= 3, positions
    box.locator("[data-role=play]").click()
    paused = window.get_attribute("data-position")
    page.wait_for_timeout(2000)
    assert window.get_attribute("data-position") == paused
    assert not errors, errors
    page.close()
