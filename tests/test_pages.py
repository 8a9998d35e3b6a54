"""cnnbook.book.pages: the values glued into the prose are plain Python values, never NumPy reprs,
and
tables show no index column, no second header row and no truncated cells."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from cnnbook.book import pages


def test_glue_value_publishes_plain_numbers_not_numpy_reprs(monkeypatch):
    # Capture the bundle that myst_nb stores in the page: its text/plain is what {glue:text}
    # shows. The oracle is Python's own repr of the same plain number.
    import myst_nb.ext.glue

    published = {}
    monkeypatch.setattr(myst_nb.ext.glue, "ipy_display", lambda bundle, raw, metadata: published
                        .update({metadata["scrapbook"]["name"]: bundle}))
    pages.glue_value("a_float", np.float64(0.1) + np.float64(0.2))
    pages.glue_value("an_int", np.int64(138_357_544))
    pages.glue_value("a_flag", np.bool_(True))
    text = {name: next(v for k, v in bundle.items() if k.endswith("text/plain"))
            for name, bundle in published.items()}
    assert text == {"a_float": repr(0.1 + 0.2), "an_int": "138357544", "a_flag": "True"}
    assert type(pages.plain_value(np.float32(0.5))) is float
    assert type(pages.plain_value(np.int16(7))) is int
    assert pages.plain_value("ResNet-50") == "ResNet-50"


@pytest.mark.parametrize("bad", [np.arange(3), [1, 2], {"a": 1}, None])
def test_glue_value_rejects_collections_with_a_clear_error(bad):
    with pytest.raises(ValueError, match="number or a text"):
        pages.glue_value("bad", bad)


def test_table_hides_index_and_column_name_and_keeps_long_cells():
    long_text = "VGG-like: two 3x3 convs, then 2x2 stride-2 pooling layers"  # > max_colwidth 50
    frame = pd.DataFrame({"stack": [long_text, "no ratio"], "params": [138357544, 0],
                          "ratio": [0.123456, float("nan")]})
    frame.columns.name = "batch_size"
    html = pages.table(frame, formats={"ratio": "{:.3f}"}).to_html()
    assert long_text in html
    assert "138,357,544" in html and "0.123" in html and "0.1235" not in html
    assert "batch_size" not in html  # no second header row naming the column axis
    assert html.count("<tr>") == 3  # one header row, two body rows
    assert "nan" not in html.lower()  # a missing value is an empty cell
    with pytest.raises(ValueError, match="does not have"):
        pages.table(frame, formats={"missing": "{:.1f}"})


@pytest.mark.parametrize("digits", [2, 3, 4])
def test_significant_rounds_as_pythons_g_format_without_exponents(digits):
    # the oracle: Python's own "g" format rounds to the same number of significant figures
    values = np.random.default_rng(digits).uniform(-1, 1, 400) * 10.0 ** np.random.default_rng(
        digits + 10).integers(-5, digits, 400)
    for value in [*values, 0.0004165, 37.75, 9.996, 99.95, -5.673, 0.002]:
        shown = pages.significant(value, digits)
        assert "e" not in shown, shown
        assert float(shown.replace(",", "")) == float(f"{value:.{digits}g}"), (value, shown)
        if shown != "0":
            mantissa = shown.replace(",", "").lstrip("-").replace(".", "").lstrip("0")
            # trailing zeros kept ("0.00200"); only a whole part longer than `digits` shows more
            assert len(mantissa) == digits or abs(float(shown.replace(",", ""))) >= 10 ** digits, (
                value, shown)
    assert pages.significant(1234.5, 3) == "1,234"  # the integer part is never cut
    assert pages.significant(0) == "0"
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            pages.significant(bad)
    with pytest.raises(ValueError, match="digits"):
        pages.significant(1.0, 0)


def test_power_of_ten_writes_exponents_as_prose_does():
    # the oracle: the mantissa and exponent read back give the value to the digits shown
    for value, digits in ((2**54, 2), (6.02214076e23, 3), (0.000123, 2), (-4.5e-7, 2)):
        shown = pages.power_of_ten(value, digits)
        mantissa, power = shown.split(" \u00d7 10")
        plain = str.maketrans("\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",
                              "-0123456789")
        exponent = int(power.translate(plain))
        assert float(mantissa) * 10.0**exponent == pytest.approx(value,
                                                                  rel=0.5 * 10 ** (1 - digits))
        assert len(mantissa.lstrip("-").replace(".", "")) == digits and "e" not in shown
    assert pages.power_of_ten(2**54) == "1.8 \u00d7 10\u00b9\u2076"
    with pytest.raises(ValueError, match="non-zero"):
        pages.power_of_ten(0)


def test_author_year_cites_as_the_pages_do(tmp_path):
    bibliography = tmp_path / "references.bib"
    bibliography.write_text("""
@article{one, author = {Lecun, Yann}, title = {T}, journal = {J}, year = {1998}}
@inproceedings{two, author = {Ioffe, Sergey and Szegedy, Christian}, title = {T}, year = {2015}}
@inproceedings{many, author = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing}, title = {T},
  year = {2016}}
@misc{team, author = {{Keras team}}, title = {Keras Applications}, year = {2024}}
""")
    cited = {key: pages.author_year(key, bibliography) for key in ("one", "two", "many", "team")}
    assert cited == {"one": "Lecun 1998", "two": "Ioffe and Szegedy 2015",
                     "many": "He et al. 2016", "team": "Keras team 2024"}
    with pytest.raises(ValueError, match="'missing' is not a key"):
        pages.author_year("missing", bibliography)
    # the book's own bibliography holds every key the published tables cite
    from cnnbook.nets import published

    keys = set(published.load("imagenet_models")["macs_source"].dropna())
    assert {pages.author_year(key) for key in keys}


def test_table_formats_each_column_by_one_rule_aligns_numbers_and_cites():
    frame = pd.DataFrame({"network": ["VGG-16", "LeNet-5"], "year": [2014, 1998],
                          "params": [138_357_544, 61_706], "GMACs": [15.47, 0.0004165],
                          "difference (%)": [0.002, -5.673], "source": ["he2016deep", None]})
    styler = pages.table(frame, formats={"difference (%)": "{:+.1f}"}, citations="source")
    html = styler.to_html()
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in
             re.findall(r"<td[^>]*>.*?</td>", html, flags=re.DOTALL)]
    assert cells == ["VGG-16", "2014", "138,357,544", "15.5", "+0.0", "He et al. 2016",
                     "LeNet-5", "1998", "61,706", "0.000416", "-5.7", ""]
    assert 'class="cnnbook-table"' in html
    # each column's alignment, read from the CSS the styler writes for its cells
    aligned = {}
    for selector_block, rules in re.findall(r"([^{}]+)\{([^}]*)\}", html):
        match = re.search(r"text-align:\s*(left|right)", rules)
        if match:
            for selector in selector_block.split(","):
                column = re.search(r"col(\d+)", selector)
                if column and "row" in selector:
                    aligned.setdefault(int(column.group(1)), set()).add(match.group(1))
    assert aligned == {0: {"left"}, 1: {"right"}, 2: {"right"}, 3: {"right"}, 4: {"right"},
                       5: {"left"}}
    with pytest.raises(ValueError, match="does not have"):
        pages.table(frame, citations="sources")


def test_show_source_shows_the_code_python_runs_without_its_docstring():
    from cnnbook.counting import sizing

    shown = pages.show_source(sizing.conv_output_size).data
    assert shown.startswith("```python\ndef conv_output_size(") and shown.endswith("```")
    body = shown.removeprefix("```python\n").removesuffix("```")
    # The oracle: the function's own file holds every shown line, in the same order, and the
    # shown lines are the file's without the docstring's (which Python's ast locates).
    module_text = open(sizing.__file__).read()
    full = pages.show_source(sizing.conv_output_size, docstring=True).data
    full = full.removeprefix("```python\n").removesuffix("```")
    assert full in module_text
    lines = full.splitlines(keepends=True)  # the docstring's lines, found by its quotes
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(('"""', 'r"""')))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith('"""')
               and (i > start or lines[i].count('"""') == 2))
    assert end > start and body == "".join(lines[:start] + lines[end + 1:])
    # a function that is nothing but its docstring keeps it (an empty body would not be Python)
    assert pages.without_docstring('def f():\n    """Only this."""\n') == (
        'def f():\n    """Only this."""\n')
    with pytest.raises(ValueError, match="function"):
        pages.show_source(42)


def test_visible_code_cells_show_the_lesson_not_the_glue(repo_root):
    """Every glue_value call sits in a cell whose input the reader does not see (remove-cell,
    remove-input or hide-input): the visible code is the lesson, not the page's plumbing."""
    shown_glue = []
    for page in sorted((repo_root / "book").glob("*.md")):
        text = page.read_text()
        for match in re.finditer(r"```\{code-cell\}[^\n]*\n(.*?)```", text, re.S):
            cell = match.group(1)
            options = "".join(line for line in cell.splitlines(True) if line.startswith(":"))
            hidden = any(tag in options for tag in ("remove-cell", "remove-input", "hide-input"))
            if "glue_value(" in cell and not hidden:
                shown_glue.append(f"{page.name}:{text[:match.start()].count(chr(10)) + 1}")
    assert not shown_glue, f"visible cells that call glue_value: {shown_glue}"


def _glossary_terms(repo_root) -> list[str]:
    """The terms of book/glossary.md's ``{glossary}`` block (unindented lines)."""
    text = (repo_root / "book" / "glossary.md").read_text()
    block = text.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and line[0] != " "]


_TERM_ROLE = re.compile(r"\{term\}`([^`<]*?)(?:\s*<([^`>]*)>)?`")


def _prose(markdown: str) -> str:
    """A chapter's prose: front matter, fenced blocks (code cells, figures' code), maths and
    inline code left out; each ``{term}`` role replaced by a marker that names its term."""
    markdown = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.DOTALL)
    markdown = re.sub(r"^(`{3,})\{code-cell\}.*?^\1\s*$", "", markdown,
                      flags=re.DOTALL | re.MULTILINE)
    markdown = re.sub(r"^```(?!\{glossary\}).*?^```\s*$", "", markdown,
                      flags=re.DOTALL | re.MULTILINE)
    markdown = _TERM_ROLE.sub(lambda match: f"[[term:{match.group(2) or match.group(1)}]]",
                              markdown)
    markdown = re.sub(r"\$\$.*?\$\$", " ", markdown, flags=re.DOTALL)
    markdown = re.sub(r"\$[^$\n]+\$", " ", markdown)
    return re.sub(r"`[^`\n]*`", " ", markdown)


def _term_pattern(term: str) -> re.Pattern:
    flags = 0 if any(char.isupper() for char in term) else re.IGNORECASE
    return re.compile(r"(?<![\w-])" + re.escape(term).replace(r"\ ", r"\s+") + r"s?(?![\w-])",
                      flags)


def test_each_chapter_links_a_glossary_term_where_it_first_uses_it(repo_root):
    """Every term of the glossary that a chapter's prose uses is a ``{term}`` link the first
    time (later uses may be plain), so no chapter uses a term it never defines or links."""
    terms = _glossary_terms(repo_root)
    assert {"GELU", "swish", "hard-swish", "ReLU6", "LayerNorm", "label smoothing", "AdamW",
            "masked autoencoder", "architecture search"} <= set(terms)
    unlinked, used = [], set()
    for chapter in sorted((repo_root / "book").glob("*.md")):
        if chapter.stem == "glossary":
            continue
        prose = _prose(chapter.read_text())
        for term in terms:
            first_plain = _term_pattern(term).search(prose)
            first_link = re.search(r"\[\[term:" + re.escape(term) + r"\]\]", prose,
                                   flags=re.IGNORECASE)
            if first_link:
                used.add(term)
            if first_plain and (not first_link or first_link.start() > first_plain.start()):
                line = prose.count("\n", 0, first_plain.start())
                unlinked.append(f"{chapter.name}: {term!r} ({prose[first_plain.start():][:50]!r},"
                                f" prose line {line})")
    assert not unlinked, "\n".join(unlinked)
    # every term is linked from somewhere (the glossary's own cross-references aside)
    text = (repo_root / "book" / "glossary.md").read_text()
    linked_inside = {match.group(2) or match.group(1) for match in _TERM_ROLE.finditer(text)}
    orphans = [term for term in terms if term not in used | linked_inside
               and not any(term in other and term != other for other in used)]
    assert len(orphans) <= len(terms) // 3, orphans


def test_no_caption_splits_a_hyphenated_word_across_its_lines(repo_root):
    """A caption in a cell's metadata is folded YAML: a line that ends in "multiply-" and goes on
    with "accumulates" renders as "multiply- accumulates"."""
    split = []
    for chapter in sorted((repo_root / "book").glob("*.md")):
        for match in re.finditer(r"\w-\n:\s+\w+", chapter.read_text()):
            split.append(f"{chapter.name}: {match.group(0)!r}")
    assert not split, split
