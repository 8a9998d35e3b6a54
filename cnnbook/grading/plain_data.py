"""The plain data that crosses between a student process and the judge.

:func:`cnnbook.grading.student_side.encode` writes a value as JSON-ready data; :func:`decode`
turns such data back into exact built-in types only (``int``, ``float``, ``str``, ``tuple``,
``list``, ``dict``, ``bool``, ``None``), NumPy arrays and, for ``{"__keras_model__": {config,
weights}}``, a Keras model rebuilt from its config with ``safe_mode`` and Keras' own layer classes
only (and the course's :data:`TRUSTED_LAYER_MODULES`), holding the weights sent; for
``{"__keras_graph__": ...}`` the layers a block function added to the judge's input
(:class:`KerasGraph`). Nothing a
student process sends can become an object with behaviour of its own, so a value that lies
(``__eq__`` always true) cannot reach a comparison: a subclass of a plain type crosses as the plain
value it holds. What the student process refused to encode (any other object) becomes a
:class:`Refused`, which equals nothing and says why.
"""

from __future__ import annotations

import base64
import json
import math

import numpy

from cnnbook.grading.student_side import encode

__all__ = ["encode", "decode", "Refused", "MalformedAnswer", "KerasGraph",
           "keras_model_from_config"]

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


TRUSTED_LAYER_MODULES = {"cnnbook.course.layers": ("ZeroPadShortcut", "LayerScale",
                                             "GlobalResponseNormalization")}
"""Modules besides Keras whose layer classes a student's model may use: the layers the course
hands out (:data:`cnnbook.course.layers.CUSTOM_LAYERS`), the grader's own code."""

_FUNCTION_MODULES = ("keras.activations", "keras.src.activations", "keras.ops", "keras.src.ops")
"""Where a function a model config names (an activation given as a function) may come from: not
any ``keras.*`` module, whose other functions (``keras.config.set_epsilon``) would change the
judge's state when the network runs."""


def _check_keras_config(config, depth: int = 0) -> None:
    """Every object a model config names must come from Keras itself (``module`` ``keras`` or
    ``keras.*``) or be one of :data:`TRUSTED_LAYER_MODULES`' layers; Keras' ``safe_mode``
    refuses lambdas. Raises :class:`MalformedAnswer`."""
    if depth > 200:
        raise MalformedAnswer("the model's config is nested too deeply")
    if isinstance(config, dict):
        module = config.get("module")
        class_name = config.get("class_name")
        trusted = class_name in TRUSTED_LAYER_MODULES.get(str(module), ())
        if module is not None and not (module == "keras" or str(module).startswith("keras.")
                                       or trusted):
            raise MalformedAnswer(
                f"the model uses {str(class_name)[:60]!r} of {str(module)[:60]!r}, which is not "
                "part of Keras: build it from Keras' own layers and activations (for example "
                "activation=\"swish\"), and the course's cnnbook.course.layers")
        if class_name == "function" and not str(module).startswith(_FUNCTION_MODULES):
            raise MalformedAnswer(f"the model calls {str(config.get('config'))[:60]!r} of "
                                  f"{str(module)[:60]!r}, which is not an activation or an op "
                                  "of Keras")
        if class_name == "Lambda":  # its output shape is whatever the config declares
            raise MalformedAnswer("the model uses a Lambda layer, which the grader does not "
                                  "rebuild: use Keras' own layers (keras.layers.Activation, "
                                  "Multiply, Add, ...) instead")
        for value in config.values():
            _check_keras_config(value, depth + 1)
    elif isinstance(config, list):
        for value in config:
            _check_keras_config(value, depth + 1)


def keras_model_from_config(text: str):
    """A Keras model rebuilt from the JSON config a student process sent (only Keras' classes,
    ``safe_mode``); :class:`MalformedAnswer` when it names anything else."""
    # Keras takes seconds to import: the grader imports this module (through judge_side) and
    # never rebuilds a model, only the judge does
    import keras

    import cnnbook.course.layers  # noqa: F401 (registers the course's layers)

    config = json.loads(_checked_text(text))
    _check_keras_config(config)
    return keras.saving.deserialize_keras_object(config, safe_mode=True)


class KerasGraph:
    """The layers a student's block function added to the judge's Keras input tensors, rebuilt
    as ``model``; :meth:`on` joins them to those tensors."""

    __slots__ = ("model", "as_list")

    def __init__(self, model, as_list: bool):
        self.model, self.as_list = model, as_list

    def on(self, inputs):
        """The block's output tensor(s), computed by the student's layers from ``inputs`` (the
        judge's own input tensors, in the order the call passed them)."""
        import keras  # only the judge joins layers (see keras_model_from_config)

        joined = keras.models.clone_model(self.model, input_tensors=inputs,
                                          clone_function=lambda layer: layer)
        outputs = joined.outputs
        return list(outputs) if self.as_list else outputs[0]

    def __repr__(self):
        return f"<Keras layers of {self.model.name}>"


def _array(data, depth: int):
    value = decode(data, depth)
    if type(value).__name__ != "ndarray":
        raise MalformedAnswer("a model weight that is not an array")
    return value


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
    if tag == "__keras_model__" and type(content) is dict:
        model = keras_model_from_config(content.get("config"))
        weights = content.get("weights")
        if type(weights) is not list:
            raise MalformedAnswer("a model without its list of weights")
        model.set_weights([_array(weight, depth + 1) for weight in weights])
        return model
    if tag == "__keras_graph__" and type(content) is dict:
        return KerasGraph(keras_model_from_config(content.get("config")),
                          content.get("outputs") == "list")
    raise MalformedAnswer(f"unexpected tag {tag!r}")
