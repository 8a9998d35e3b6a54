"""The plain data that crosses between a student process and the judge.

:func:`cnnbook.grading.student_side.encode` writes a value as JSON-ready data; :func:`decode`
turns such data back into exact built-in types only (``int``, ``float``, ``str``, ``tuple``,
``list``, ``dict``, ``bool``, ``None``), NumPy arrays and, for ``{"__keras_model__": config}``, a
Keras model rebuilt from its config with ``safe_mode`` and Keras' own layer classes only. Nothing a
student process sends can become an object with behaviour of its own, so a value that lies
(``__eq__`` always true) cannot reach a comparison: a subclass of a plain type crosses as the plain
value it holds. What the student process refused to encode (any other object) becomes a
:class:`Refused`, which equals nothing and says why.
"""

from __future__ import annotations

import base64
import json
import math

from cnnbook.grading.student_side import encode

__all__ = ["encode", "decode", "Refused", "MalformedAnswer", "keras_model_from_config"]

MAX_ARRAY_VALUES = 50_000_000
"""Largest NumPy array an answer may hold (values)."""


class MalformedAnswer(ValueError):
    """Data that no honest student process writes (a forged message)."""


class Refused:
    """An answer that was not plain data (an object of the student's own class): it never equals
    anything, and its ``repr`` says what it was."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = None

    def __repr__(self):
        return f"<not plain data: {self.reason}>"


def _checked_text(value) -> str:
    if not isinstance(value, str):
        raise MalformedAnswer(f"expected text, got {type(value).__name__}")
    return value


_KERAS_MODULES = ("keras", "keras.")


def _check_keras_config(config, depth: int = 0) -> None:
    """Every object a model config names must come from Keras itself (``module`` ``keras`` or
    ``keras.*``); Keras' ``safe_mode`` refuses lambdas. Raises :class:`MalformedAnswer`."""
    if depth > 200:
        raise MalformedAnswer("the model's config is nested too deeply")
    if isinstance(config, dict):
        module = config.get("module")
        if module is not None and not (module == "keras" or str(module).startswith("keras.")):
            raise MalformedAnswer(f"the model uses {module!r}, which is not part of Keras")
        for value in config.values():
            _check_keras_config(value, depth + 1)
    elif isinstance(config, list):
        for value in config:
            _check_keras_config(value, depth + 1)


def keras_model_from_config(text: str):
    """A Keras model rebuilt from the JSON config a student process sent (only Keras' classes,
    ``safe_mode``); :class:`MalformedAnswer` when it names anything else."""
    import keras

    config = json.loads(_checked_text(text))
    _check_keras_config(config)
    return keras.saving.deserialize_keras_object(config, safe_mode=True)


def decode(data, depth: int = 0):
    """Plain Python values from data a student process wrote (see the module docstring). Raises
    :class:`MalformedAnswer` on anything :func:`cnnbook.grading.student_side.encode` never
    writes."""
    if depth > 64:
        raise MalformedAnswer("nested too deeply")
    if data is None or type(data) in (bool, int, str):
        return data
    if type(data) is float:
        return data
    if type(data) is list:
        return [decode(item, depth + 1) for item in data]
    if type(data) is not dict or len(data) != 1:
        raise MalformedAnswer(f"unexpected {type(data).__name__}")
    (tag, content), = data.items()
    if tag == "__tuple__" and type(content) is list:
        return tuple(decode(item, depth + 1) for item in content)
    if tag == "__dict__" and type(content) is list:
        result = {}
        for pair in content:
            if type(pair) is not list or len(pair) != 2:
                raise MalformedAnswer("a dict entry is not a key and a value")
            key = decode(pair[0], depth + 1)
            try:
                result[key] = decode(pair[1], depth + 1)
            except TypeError as error:  # an unhashable key (a list)
                raise MalformedAnswer(f"a dict key cannot be {type(key).__name__}") from error
        return result
    if tag == "__float__" and content in ("nan", "inf", "-inf"):
        return float(content)
    if tag == "__refused__":
        return Refused(_checked_text(content)[:300])
    if tag == "__ndarray__" and type(content) is dict:
        import numpy

        dtype = numpy.dtype(_checked_text(content.get("dtype")))
        shape = content.get("shape")
        if dtype.kind not in "biuf" or type(shape) is not list or not all(
                type(size) is int and size >= 0 for size in shape):
            raise MalformedAnswer("an array of an unsupported type or shape")
        if math.prod(shape) > MAX_ARRAY_VALUES:
            raise MalformedAnswer(f"an array of more than {MAX_ARRAY_VALUES:,} values")
        raw = base64.b64decode(_checked_text(content.get("data")), validate=True)
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise MalformedAnswer("an array whose data does not match its shape")
        return numpy.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if tag == "__keras_model__":
        return keras_model_from_config(content)
    raise MalformedAnswer(f"unexpected tag {tag!r}")
