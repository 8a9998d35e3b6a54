"""Grading the course: the check the assignments' tests share, and the accuracy grader.

* :func:`check_written_here` -- used by the tests of ``solutions/*/*.ipynb``: an answer must be a
  function written in the student's notebook that uses no reference code of ``cnnbook``.
* ``python -m cnnbook.grade accuracy ASSIGNMENT`` -- grades the trained model of every submission
  of ``ASSIGNMENT`` (``submitted/<student>/<ASSIGNMENT>/<model_file>``) into nbgrader's gradebook:
  each model is loaded with ``safe_mode=True`` in its own process, checked for the architecture the
  assignment asks for, evaluated on the 10,000 CIFAR-10 test images, and its accuracy earns the
  points of the highest tier it reaches. A missing, unloadable or wrong model earns zero; the
  reason goes into the cell's comment, which ``nbgrader generate_feedback`` shows to the student.
  Settings (model file, grade cell, architecture, tiers per training set) come from
  ``c.AccuracyGrader`` in ``nbgrader_config.py``; ``solutions/README.md`` gives the commands.
* ``python -m cnnbook.grade evaluate MODEL.keras`` -- what the accuracy grader runs in each child
  process: loads, checks and evaluates one model and prints a JSON line.

Importing this module is cheap (it does not import TensorFlow or nbgrader): the assignments'
tests import :func:`check_written_here` from it.
"""

from __future__ import annotations

import types
from collections.abc import Iterable

__all__ = ["check_written_here"]

# Packages whose code an answer must not call: the reference implementations of the course.
_REFERENCE_PACKAGES = ("cnnbook",)


def _code_objects(code: types.CodeType):
    """``code`` and every code object nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _package_of(value) -> str:
    """Top-level package an object comes from (``""`` when it does not say)."""
    if isinstance(value, types.ModuleType):
        module = value.__name__
    else:
        try:
            module = getattr(value, "__module__", None) or ""
        except Exception:  # an object whose attribute lookup itself fails says nothing
            module = ""
    return module.split(".")[0] if isinstance(module, str) else ""


def _is_notebook_function(value) -> bool:
    return isinstance(value, types.FunctionType) and value.__module__ == "__main__"


def check_written_here(
    function, *, may_use: Iterable[str] = (), forbid: Iterable[str] = ()
) -> None:
    """Assert that ``function`` is the student's own: defined in the notebook (module
    ``__main__``), and neither it nor any notebook function it calls refers to an object of
    ``cnnbook`` (or of the packages in ``forbid``, e.g. ``("keras",)`` for a rule that must be
    computed, not read off a layer), except the global names listed in ``may_use`` (what the
    assignment hands out, e.g. ``image_input``).

    The check reads the names the compiled code looks up (``co_names`` of the function and of the
    code nested in it) and resolves them in the function's globals, so it catches
    ``cnnbook.sizing.conv_output_size(...)``, ``from cnnbook.sizing import conv_output_size as f``
    then ``f(...)``, and a wrapper calling either. It is a guard against handing in the reference
    code, not a sandbox.

    Raises ``AssertionError`` with a message for the student; ``ValueError`` when ``function`` is
    not callable.
    """
    if not callable(function):
        raise ValueError(f"function must be a function defined in the notebook, got {function!r}")
    name = getattr(function, "__name__", repr(function))
    if not _is_notebook_function(function):
        raise AssertionError(
            f"{name} must be a function defined in this notebook with `def`, but it comes from "
            f"{getattr(function, '__module__', None) or type(function).__name__!r}: write your own"
        )
    allowed = set(may_use)
    forbidden = set(_REFERENCE_PACKAGES) | set(forbid)
    to_visit, seen, uses = [function], set(), []
    while to_visit:
        current = to_visit.pop()
        if current in seen:
            continue
        seen.add(current)
        for code in _code_objects(current.__code__):
            for global_name in code.co_names:
                if global_name not in current.__globals__ or global_name in allowed:
                    continue
                value = current.__globals__[global_name]
                if _is_notebook_function(value):
                    to_visit.append(value)
                elif _package_of(value) in forbidden:
                    uses.append(f"{current.__name__} uses {global_name} ({_package_of(value)})")
    if uses:
        raise AssertionError(
            f"{name} must be your own code, without {' or '.join(sorted(forbidden))}: "
            + "; ".join(sorted(set(uses)))
        )
