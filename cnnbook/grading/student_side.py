"""The program of a student process: runs the student's cells, then answers calls with plain data.

The grader runs this file's source as ``python -I -c SOURCE`` inside the sandbox, where the
``cnnbook`` package shows only what students may import, so it imports nothing from ``cnnbook``.
It speaks JSON lines: the grader sends ``{"cells": [...]}`` (each cell's Python source, magics
already translated, ``skip``: statements to leave out, ``statement_seconds``), the process
answers ``{"ready": true}`` before any student code runs, ``{"running": [cell, statement]}``
before each top-level statement and ``{"loaded": true, "errors": [...]}`` after the cells; then
each request gets one reply:

* ``{"op": "lookup", "name": N}`` -> ``{"kind": "function"}``, ``{"kind": "value", "value": V}``
  or ``{"kind": "missing"}``;
* ``{"op": "call", "name": N, "args": [V...], "kwargs": {name: V}}`` -> ``{"value": V}`` or
  ``{"raised": {"type": ..., "builtin": ..., "message": ...}}``. A Keras input among the
  arguments becomes an input of the same shape here; when the function returns Keras tensors
  built on such inputs, the value is ``{"__keras_graph__": ...}``, the layers in between.

``V`` is :func:`encode`'s plain data. Everything here runs in a process that student code
controls: nothing it says is trusted. The judge decodes it into exact built-in types
(:mod:`cnnbook.grading.plain_data`), so a forged message can only claim an answer, never change a
comparison.

Cells run one top-level statement at a time, and a statement that fails only loses itself (a cell
that imports a hidden package still defines its functions): one that raises, one that runs past
``statement_seconds``, and one that ends the process (the grader starts the process again
without it). The errors are reported with the cell's index.
"""

import ast
import base64
import builtins
import json
import math
import os
import signal
import sys

MAX_DEPTH = 40
"""Deepest nesting of containers an answer may have."""

_PLAIN_SCALARS = (bool, int, str, type(None))
_PLAIN_COPY = {"bool": bool, "int": int, "float": float, "str": str.__str__, "tuple": tuple,
               "list": list, "dict": dict}
"""How a subclass of a plain type (a namedtuple, an OrderedDict, a class of the student's own)
becomes the plain value it holds: only that copy leaves the process, so no method of the
subclass (an ``__eq__`` that is always true) ever reaches a comparison."""


def _refused(value, why: str) -> dict:
    try:
        name = type(value).__qualname__
    except Exception:  # a hostile metaclass
        name = "?"
    return {"__refused__": f"{name[:80]}: {why}"}


def _plain_base(value) -> str | None:
    for base in (bool, int, float, str, tuple, list, dict):
        if isinstance(value, base):
            return base.__name__
    return None


def _is_keras(value, class_name: str) -> bool:
    """Whether ``value`` is an instance of ``keras.<class_name>`` (False without Keras)."""
    cls = getattr(sys.modules.get("keras"), class_name, None)
    return isinstance(cls, type) and isinstance(value, cls)


def encode(value, depth: int = 0):
    """``value`` as JSON-ready plain data: ``None``, ``bool``, ``int``, ``float`` (non-finite as
    ``{"__float__": "nan"}``), ``str``, lists, ``{"__tuple__": [...]}``, ``{"__dict__": [[k, v],
    ...]}``, NumPy scalars as Python numbers, numeric NumPy arrays as ``{"__ndarray__": ...}``,
    Keras models as ``{"__keras_model__": {"config": JSON, "weights": [arrays]}}`` and a Keras
    input tensor (only the judge sends one) as ``{"__keras_input__": {"shape", "dtype"}}``. A
    subclass of a plain type is written as the plain value it holds (a namedtuple as a tuple).
    Anything else becomes ``{"__refused__": reason}``, which never equals anything."""
    if depth > MAX_DEPTH:
        return {"__refused__": f"nested deeper than {MAX_DEPTH} levels"}
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if kind is tuple:
        return {"__tuple__": [encode(item, depth + 1) for item in value]}
    if kind is list:
        return [encode(item, depth + 1) for item in value]
    if kind is dict:
        return {"__dict__": [[encode(key, depth + 1), encode(item, depth + 1)]
                             for key, item in value.items()]}
    numpy = sys.modules.get("numpy")
    if numpy is not None and kind.__module__ == "numpy":
        if isinstance(value, numpy.generic) and value.dtype.kind in "biuf":
            return encode(value.item(), depth + 1)
        if kind is numpy.ndarray and value.dtype.kind in "biuf":
            array = numpy.ascontiguousarray(value)
            return {"__ndarray__": {"dtype": array.dtype.str, "shape": list(array.shape),
                                    "data": base64.b64encode(array.tobytes()).decode()}}
    if _is_keras(value, "Model"):
        return {"__keras_model__": {"config": value.to_json(), "weights": [
            encode(weight, depth + 1) for weight in value.get_weights()]}}
    if _is_keras(value, "KerasTensor"):
        return {"__keras_input__": {"shape": list(value.shape[1:]), "dtype": str(value.dtype)}}
    base = _plain_base(value)
    if base is not None:  # a namedtuple, an OrderedDict: the plain value it holds
        plain = _PLAIN_COPY[base](value)
        if type(plain).__name__ != base:
            return _refused(value, f"a {base} that does not convert to a plain {base}")
        return encode(plain, depth + 1)
    return _refused(value, "not plain data (a number, string, tuple, list, dict, NumPy array "
                    "or Keras model)")


def _exception_reply(error: BaseException) -> dict:
    builtin = next((cls.__name__ for cls in type(error).__mro__
                    if getattr(builtins, cls.__name__, None) is cls), "Exception")
    try:
        message = str(error)[:200]
    except Exception:
        message = "(its message could not be read)"
    try:
        name = type(error).__qualname__[:80]
    except Exception:
        name = builtin
    return {"raised": {"type": name, "builtin": builtin, "message": message}}


class _NoIPython:
    """What ``get_ipython()`` returns here: magics (``%matplotlib inline``, ``%%time``) do
    nothing but run a cell magic's body, and shell escapes do nothing."""

    def __init__(self, namespace):
        self.user_ns = namespace

    def run_line_magic(self, *args, **kwargs):
        return None

    def run_cell_magic(self, magic, line, cell):
        if magic in ("time", "capture", "prun"):
            exec(compile(cell, "<cell magic>", "exec"), self.user_ns)
        return None

    def system(self, *args, **kwargs):
        return None

    getoutput = system


class StatementTimeout(BaseException):  # noqa: N818 (not an Exception: `except Exception`
    """A top-level statement of the student's ran past its time."""  # must not swallow it)


def _on_alarm(signum, frame):
    raise StatementTimeout()


def _statements(source: str) -> list:
    """The top-level statements of a cell, ``import a, b as c`` split into one import per name
    (so that a hidden ``a`` does not leave ``c`` unbound)."""
    statements = []
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Import) and len(statement.names) > 1:
            statements += [ast.copy_location(ast.Import(names=[alias]), statement)
                           for alias in statement.names]
        else:
            statements.append(statement)
    return statements


def _run_cells(cells, namespace, skip, statement_seconds, report, setup_cells=0,
               setup_seconds=180, setup_done=None) -> list[dict]:
    """Run every top-level statement of ``cells`` but those in ``skip`` (``(cell, statement)``
    pairs that ended the process before), each with at most ``statement_seconds`` (an alarm
    stops a statement that waits or loops in Python; the first ``setup_cells`` cells, the
    instructor's imports, get ``setup_seconds``); ``report(cell, statement)`` announces each
    statement first, so that the grader knows which one a dying process was running;
    ``setup_done(errors)`` reports the set-up's errors before the first student statement runs
    (later, student code could forge them)."""
    errors = []
    signal.signal(signal.SIGALRM, _on_alarm)
    for index, source in enumerate(cells):
        if index == setup_cells and setup_done is not None:
            setup_done(list(errors))
        try:
            statements = _statements(source)
        except SyntaxError as error:
            errors.append({"cell": index, "type": "SyntaxError", "message": str(error)[:300],
                           "module": None})
            continue
        for number, statement in enumerate(statements):
            if [index, number] in skip:
                errors.append({"cell": index, "type": "ProcessEnded", "module": None,
                               "message": "this statement ended the process; it was skipped"})
                continue
            report(index, number)
            try:
                code = compile(ast.Module([statement], type_ignores=[]), f"<cell {index + 1}>",
                               "exec")
                seconds = setup_seconds if index < setup_cells else statement_seconds
                signal.setitimer(signal.ITIMER_REAL, seconds)
                try:
                    exec(code, namespace)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except StatementTimeout:
                errors.append({"cell": index, "type": "TimeoutError", "module": None,
                               "message": f"it ran longer than {seconds:g} s"})
            except BaseException as error:  # noqa: B036 (the student's error, reported)
                if isinstance(error, KeyboardInterrupt):
                    raise
                errors.append({"cell": index, "type": type(error).__name__,
                               "message": str(error)[:300],
                               "module": getattr(error, "name", None)
                               if isinstance(error, ImportError) else None})
    if setup_cells >= len(cells) and setup_done is not None:
        setup_done(list(errors))
    return errors


def _answer(request, namespace) -> dict:
    name = request.get("name")
    if not isinstance(name, str) or name not in namespace:
        return {"kind": "missing"}
    value = namespace[name]
    if request.get("op") == "lookup":
        if callable(value) and not _is_keras(value, "Model"):
            return {"kind": "function"}
        try:
            return {"kind": "value", "value": encode(value)}
        except BaseException as error:  # noqa: B036 (student code ran in the encoding)
            return _exception_reply(error)
    if request.get("op") == "call":
        inputs: list = []
        try:
            args = [_decoded(item, inputs) for item in request.get("args", [])]
            kwargs = {key: _decoded(item, inputs)
                      for key, item in request.get("kwargs", {}).items()}
        except BaseException as error:  # noqa: B036 (e.g. Keras hidden here)
            return _exception_reply(error)
        try:
            result = value(*args, **kwargs)
            if inputs:
                return {"value": _graph(result, inputs)}
            return {"value": encode(result)}
        except BaseException as error:  # noqa: B036 (the student's exception is the answer)
            return _exception_reply(error)
    return {"error": f"unknown request {request.get('op')!r}"}


def _graph(result, inputs) -> dict:
    """What a block function returned when the judge called it on Keras input tensors: the
    layers between those inputs and ``result`` (a Keras tensor, or a list or tuple of them), as
    ``{"__keras_graph__": ...}`` without weights (new layers hold only their initial values);
    the judge joins them to its own input tensors. Anything else is encoded as it is."""
    keras = sys.modules.get("keras")
    tensors = list(result) if isinstance(result, (list, tuple)) else [result]
    if not tensors or not all(_is_keras(tensor, "KerasTensor") for tensor in tensors):
        return encode(result)
    model = keras.Model(inputs if len(inputs) > 1 else inputs[0],
                        tensors if isinstance(result, (list, tuple)) else result)
    return {"__keras_graph__": {"config": model.to_json(),
                                "outputs": "list" if isinstance(result, (list, tuple))
                                else "single"}}


def _decoded(data, inputs: list | None = None):
    """The grader's arguments (built by the judge, so well formed) as Python values; the Keras
    input tensors made for ``__keras_input__`` are appended to ``inputs``."""
    if isinstance(data, list):
        return [_decoded(item, inputs) for item in data]
    if isinstance(data, dict):
        if "__tuple__" in data:
            return tuple(_decoded(item, inputs) for item in data["__tuple__"])
        if "__dict__" in data:
            return {_decoded(key, inputs): _decoded(item, inputs)
                    for key, item in data["__dict__"]}
        if "__keras_input__" in data:
            # this process imports nothing but the standard library before the student's code:
            # it runs where the packages a test forbids are hidden, and Keras or NumPy loaded by
            # us would already be in sys.modules; only a value the judge sends brings them in
            import keras

            spec = data["__keras_input__"]
            tensor = keras.Input(shape=tuple(spec["shape"]), dtype=spec["dtype"])
            if inputs is not None:
                inputs.append(tensor)
            return tensor
        if "__keras_model__" in data:
            import keras  # only when the judge sends a model (see __keras_input__ above)

            spec = data["__keras_model__"]
            model = keras.models.model_from_json(spec["config"])
            model.set_weights([_decoded(weight) for weight in spec["weights"]])
            return model
        if "__float__" in data:
            return float(data["__float__"])
        if "__ndarray__" in data:
            import numpy  # only when the judge sends an array (see __keras_input__ above)

            spec = data["__ndarray__"]
            return numpy.frombuffer(base64.b64decode(spec["data"]), dtype=spec["dtype"]
                                    ).reshape(spec["shape"]).copy()
    return data


def main() -> None:
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):  # student output goes nowhere: feedback comes from the kernel
        os.dup2(devnull, descriptor)
    sys.stdin = open(os.devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")

    def send(message) -> None:
        try:
            line = json.dumps(message)
        except (ValueError, TypeError, RecursionError) as error:  # e.g. an int of 10**5 digits
            line = json.dumps({"value": {"__refused__": f"it cannot be written out ({error})"}})
        channel_out.write(line.encode() + b"\n")
        channel_out.flush()

    first = json.loads(channel_in.readline())
    send({"ready": True})
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    namespace["get_ipython"] = lambda: _NoIPython(namespace)
    namespace["display"] = lambda *objects, **options: None  # IPython's, in a kernel
    errors = _run_cells(first["cells"], namespace, first.get("skip", []),
                        first.get("statement_seconds", 60),
                        lambda cell, statement: send({"running": [cell, statement]}),
                        first.get("setup_cells", 0), first.get("setup_seconds", 180),
                        lambda setup_errors: send({"setup_done": setup_errors[:50]}))
    send({"loaded": True, "errors": errors[:50]})
    for line in channel_in:
        send(_answer(json.loads(line), namespace))


if __name__ == "__main__":
    main()
