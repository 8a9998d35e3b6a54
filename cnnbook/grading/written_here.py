"""The check the assignments' test cells share: an answer must be a function written in the
student's notebook that uses no reference code of ``cnnbook`` (and, where a test says so, no Keras
or TensorFlow).

In the student's own kernel it gives feedback while they work. While grading, the judge
(:mod:`cnnbook.grading.judge_side`) puts its own check in its place: there the student's function
runs in a process where ``cnnbook``'s reference code and the forbidden packages cannot be imported
at all. Importing this module is cheap (no TensorFlow, no nbgrader).
"""

from __future__ import annotations

import functools
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


def _unwrapped(value):
    """``value`` without ``functools.partial`` layers (a partial of the reference is the
    reference)."""
    while isinstance(value, functools.partial):
        value = value.func
    return value


def _referenced_values(function: types.FunctionType):
    """(name, value) of everything ``function`` can reach without a global lookup: its default
    arguments, keyword-only defaults and closure cells (a reference function hidden in
    ``def f(x, rule=cnnbook...)`` or in an enclosing function's variable)."""
    for index, value in enumerate(function.__defaults__ or ()):
        yield f"default argument {index + 1}", value
    for key, value in (function.__kwdefaults__ or {}).items():
        yield f"default of {key}", value
    closure = function.__closure__ or ()
    for variable, cell in zip(function.__code__.co_freevars, closure, strict=True):
        try:
            yield f"closure variable {variable}", cell.cell_contents
        except ValueError:  # an empty cell
            continue


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
    ``cnnbook.counting.sizing.conv_output_size(...)``, ``from cnnbook.counting.sizing import
    conv_output_size as f``
    then ``f(...)``, and a wrapper calling either; it also follows default arguments, closure
    variables and ``functools.partial`` objects. It runs inside the student's kernel, so it is a
    second line: autograding analyses the answer cells' source outside the kernel first
    (:mod:`cnnbook.grading.source_rules`), where ``eval``, ``__import__`` or replacing this
    function are caught.

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
        reachable = [(global_name, current.__globals__[global_name])
                     for code in _code_objects(current.__code__) for global_name in code.co_names
                     if global_name in current.__globals__ and global_name not in allowed]
        reachable += list(_referenced_values(current))
        for label, value in reachable:
            value = _unwrapped(value)
            if _is_notebook_function(value):
                to_visit.append(value)
            elif _package_of(value) in forbidden:
                uses.append(f"{current.__name__} uses {label} ({_package_of(value)})")
    if uses:
        raise AssertionError(
            f"{name} must be your own code, without {' or '.join(sorted(forbidden))}: "
            + "; ".join(sorted(set(uses)))
        )
