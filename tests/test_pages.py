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
