"""Helpers that every page of the book uses to put computed values into the prose and the tables.

* :func:`glue_value` passes a number or a text to ``{glue:text}`` in the prose. NumPy 2 writes a
  NumPy scalar's repr with its type around the value (``np.float64``, then ``0.25`` in
  parentheses), which a page would print and which ``{glue:text}``'s format specifications
  (``:.1f``, ``:,``) cannot format, so NumPy scalars become plain Python numbers first.
* :func:`show_source` shows the source of a ``cnnbook`` function on a page, so a chapter prints
  the very code that builds its blocks instead of a copy that could drift from it (without its
  docstring, which the API page shows).
* :func:`table` shows a ``pandas.DataFrame`` as a page's table: no 0..n index column, no second
  header row from a named column axis, one format rule per column (integers with thousands
  separators, other numbers to three significant figures, :func:`significant`), numbers
  right-aligned, padded cells, bib keys shown as citations (:func:`author_year`), and cells never
  truncated (pandas' plain HTML cuts text longer than ``display.max_colwidth`` with "...").
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import numbers
import textwrap
from pathlib import Path

import numpy as np

__all__ = ["plain_value", "glue_value", "show_source", "significant", "power_of_ten",
           "author_year", "table"]

BIBLIOGRAPHY = Path(__file__).resolve().parents[2] / "book" / "references.bib"
"""The book's bibliography, whose keys tables cite (:func:`author_year`)."""


def plain_value(value):
    """``value`` as a plain Python ``bool``, ``int``, ``float`` or ``str``.

    NumPy scalars (``np.int64``, ``np.float64``, ``np.bool_``) and other numbers become the
    Python number of the same value; strings pass through. Anything else (an array, a list, a
    dict) raises ``ValueError``: the prose takes one value, so glue one element or format the
    collection into a text first.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(
        f"value must be a number or a text, got {type(value).__name__} {value!r}; glue one "
        "element, or format the collection into a string first"
    )


def glue_value(name: str, value) -> None:
    """Glue ``value`` under ``name`` for ``{glue:text}`name:format``` in the prose, without
    showing it in the cell's output. The value is first made plain by :func:`plain_value`, so the
    page shows ``0.25``, never the NumPy repr with its type name."""
    # MyST-NB and IPython belong to the book's environment, not to cnnbook's dependencies (and are
    # slow to import): only the page that glues or shows source loads them
    from myst_nb import glue

    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    glue(name, plain_value(value), display=False)


def without_docstring(source: str) -> str:
    """``source`` (one function or class) without its docstring: the lines of the first
    statement of its body when that is a string, left out whole. The code a page shows is the
    lesson; the docstring is on the API page."""
    definition = ast.parse(textwrap.dedent(source)).body[0]
    first = definition.body[0] if getattr(definition, "body", None) else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)) or len(definition.body) == 1:
        return source
    lines = source.splitlines(keepends=True)
    return "".join(lines[: first.lineno - 1] + lines[first.end_lineno:])


def show_source(function, docstring: bool = False):
    """The source code of ``function`` (as Python runs it, from ``inspect.getsource``) as a
    Markdown code block that a page's cell displays with syntax highlighting; without its
    docstring unless ``docstring`` (:func:`without_docstring`)."""
    from IPython.display import Markdown  # book environment only, as in glue_value

    if not callable(function):
        raise ValueError(f"function must be a function or a class, got {type(function).__name__}")
    source = inspect.getsource(function)
    return Markdown(f"```python\n{source if docstring else without_docstring(source)}```")


def significant(value, digits: int = 3, thousands: str = ",") -> str:
    """``value`` with ``digits`` significant figures, never in scientific notation, digits of the
    integer part kept: ``0.0004165 -> "0.000417"``, ``37.75 -> "37.8"``, ``1234.5 -> "1,234"``.

    The decimals shown are ``max(0, digits - 1 - floor(log10(|value|)))``; zero is ``"0"``.
    """
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"value must be a finite number, got {value!r}")
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    rounded = round(value, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > math.floor(math.log10(abs(value))):
        decimals = max(0, decimals - 1)  # rounding carried a digit: 9.996 is "10.0", not "10.00"
    text = f"{value:,.{decimals}f}"
    return text.replace(",", thousands) if thousands != "," else text


_SUPERSCRIPT = str.maketrans("-0123456789",
                             "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def power_of_ten(value, digits: int = 2) -> str:
    """``value`` as prose writes a very large or small number: ``digits`` significant figures
    times a power of ten with a superscript exponent, ``2**54 -> "1.8 × 10¹⁶"`` (never
    ``1.80e+16``). Raises ``ValueError`` for zero or a value that is not finite."""
    value = float(value)
    if not math.isfinite(value) or value == 0:
        raise ValueError(f"value must be a finite non-zero number, got {value!r}")
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa} \u00d7 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def author_year(key: str, bibliography: Path | None = None) -> str:
    """The author-year citation of ``key`` in the book's bibliography (``book/references.bib``
    unless ``bibliography``), as the pages cite: "He et al. 2016", "Ioffe and Szegedy 2015",
    "Keras 2024" for an entry whose author is an organisation. Raises ``ValueError`` naming the
    key when the file has no such entry."""
    from pybtex.database import parse_file  # sphinxcontrib-bibtex's parser: book environment

    path = Path(bibliography) if bibliography is not None else BIBLIOGRAPHY
    entries = _bibliography(str(path), path.stat().st_mtime, parse_file)
    if key not in entries:
        raise ValueError(f"{key!r} is not a key of {path}: add the entry, or fix the key")
    entry = entries[key]
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = ["".join(person.last_names) or " ".join(person.first_names) for person in people]
    names = [name.replace("{", "").replace("}", "") for name in names]
    if not names:
        names = [entry.fields.get("organization", entry.fields.get("title", key)).strip("{}")]
    who = (names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2
           else f"{names[0]} et al.")
    year = entry.fields.get("year", "n.d.")
    return f"{who} {year}"


def _whole(value, separator: str) -> str:
    return f"{int(round(value)):,}".replace(",", separator)


@functools.lru_cache(maxsize=4)
def _bibliography(path: str, mtime: float, parse_file) -> dict:
    return dict(parse_file(path, bib_format="bibtex").entries)


def table(frame, formats=None, digits: int = 3, thousands: str = ",", na_rep: str = "",
          citations=()):
    """A styled table of ``frame`` for a page, with one format rule per column:

    * integer columns with ``thousands`` separators (``138,357,544``) when they hold a number of
      five digits or more (a column of years shows ``2012``);
    * other number columns with ``digits`` significant figures (:func:`significant`), unless
      ``formats`` (a dict from column to format string or function, as in ``Styler.format``)
      gives the column its own rule, e.g. ``"{:.1f}"`` for percentages;
    * the columns named in ``citations`` hold bib keys of ``book/references.bib``, shown as the
      pages cite them (:func:`author_year`: "He et al. 2016");
    * missing values (NaN) as ``na_rep``, an empty cell by default.

    Number columns are right-aligned and text columns left-aligned; every cell has padding (the
    table carries the class ``cnnbook-table``, which ``book/_static/cnnbook.css`` styles). The index
    is hidden and the column axis unnamed: keep a meaningful index by ``frame.reset_index()``.
    """
    import pandas as pd  # heavy (about a second): only the pages that show a table pay for it

    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    shown = frame.copy()
    shown.columns = [str(column) for column in shown.columns]
    shown.columns.name = None
    formats = dict(formats or {})
    citations = [citations] if isinstance(citations, str) else list(citations)
    unknown = sorted((set(formats) | set(citations)) - set(shown.columns))
    if unknown:
        raise ValueError(f"formats or citations name columns {unknown} that the frame does not "
                         f"have; its columns are {list(shown.columns)}")
    for column in shown.columns:  # numbers held in an object column (a CSV column with blanks)
        values = shown[column].dropna()
        if shown[column].dtype == object and len(values) and all(
                isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                for value in values):
            shown[column] = pd.to_numeric(shown[column])
    for column in citations:
        shown[column] = [na_rep if pd.isna(key) else "; ".join(
            author_year(part.strip()) for part in str(key).split(";")) for key in shown[column]]
    numeric = [column for column in shown.columns if column not in citations
               and pd.api.types.is_numeric_dtype(shown[column])
               and not pd.api.types.is_bool_dtype(shown[column])]
    rules = {}
    for column in numeric:
        if column in formats:
            continue
        values = shown[column].dropna()
        whole = pd.api.types.is_integer_dtype(shown[column]) or bool(
            len(values) and (values == values.round()).all() and values.abs().max() >= 1000)
        if whole:  # separators only where a number has five digits or more: years stay 2012
            separator = thousands if len(values) and values.abs().max() >= 10_000 else ""
            rules[column] = functools.partial(_whole, separator=separator)
        else:
            rules[column] = functools.partial(significant, digits=digits, thousands=thousands)
    rules.update(formats)
    styler = shown.style.hide(axis="index").format(na_rep=na_rep)
    styler = styler.format(rules, subset=list(rules), na_rep=na_rep, thousands=thousands)
    styler = styler.set_table_attributes('class="cnnbook-table"')
    text_columns = [column for column in shown.columns if column not in numeric]
    if numeric:
        styler = styler.set_properties(subset=numeric, **{"text-align": "right"})
    if text_columns:
        styler = styler.set_properties(subset=text_columns, **{"text-align": "left"})
    header_styles = [{"selector": f"th.col{index}",
                      "props": [("text-align", "right" if column in numeric else "left")]}
                     for index, column in enumerate(shown.columns)]
    return styler.set_table_styles(header_styles, overwrite=False)
