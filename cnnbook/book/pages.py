"""Helpers that every page of the book uses to put computed values into the prose and the tables.

* :func:`glue_value` passes a number or a text to ``{glue:text}`` in the prose. NumPy 2 writes a
  NumPy scalar's repr with its type around the value (``np.float64``, then ``0.25`` in
  parentheses), which a page would print and which ``{glue:text}``'s format specifications
  (``:.1f``, ``:,``) cannot format, so NumPy scalars become plain Python numbers first.
* :func:`show_source` shows the source of a ``cnnbook`` function on a page, so a chapter prints
  the very code that builds its blocks instead of a copy that could drift from it (without its
  docstring, which the API page shows).
* :func:`table` shows a ``pandas.DataFrame`` as a page's table: no 0..n index column, no second
  header row from a named column axis, thousands separators, and cells never truncated (pandas'
  plain HTML cuts text longer than ``display.max_colwidth`` with "...").
"""

from __future__ import annotations

import ast
import inspect
import numbers
import textwrap

import numpy as np

__all__ = ["plain_value", "glue_value", "show_source", "table"]


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


def table(frame, formats=None, precision: int = 2, thousands: str = ",", na_rep: str = ""):
    """A styled table of ``frame`` for a page: its index hidden, its column axis unnamed, numbers
    with ``thousands`` separators and ``precision`` decimals unless ``formats`` (a dict from
    column to format string or function, as in ``Styler.format``) says otherwise, and missing
    values (NaN) shown as ``na_rep``, an empty cell by default.

    Keep a meaningful index by ``frame.reset_index()`` first: the index column is always hidden.
    """
    import pandas as pd  # heavy (about a second): only the pages that show a table pay for it

    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    shown = frame.copy()
    shown.columns = [str(column) for column in shown.columns]
    shown.columns.name = None
    styler = shown.style.hide(axis="index").format(precision=precision, thousands=thousands,
                                                   na_rep=na_rep)
    if formats:
        unknown = sorted(set(formats) - set(shown.columns))
        if unknown:
            raise ValueError(f"formats names columns {unknown} that the frame does not have; "
                             f"its columns are {list(shown.columns)}")
        styler = styler.format(formats, subset=list(formats), thousands=thousands, na_rep=na_rep)
    return styler
