"""Inference speed of a Keras model on the machine at hand, and a description of that machine.

Chapter "Known ConvNet architectures" (``book/architectures.md``) times a few ImageNet networks
with :func:`measure_throughput` when the book is built. The figures describe the building
machine only (its CPU, core count, TensorFlow build and whether a GPU was used, as
:func:`machine_description` reports), so no test asserts a time: ``tests/test_speed.py`` checks
that the measurement is well formed.

Method: one batch of random images (values 0..255, the model's input shape) is run through
``model.predict_on_batch`` ``warmup`` times unmeasured (the first call traces and compiles the
graph), then ``iterations`` times under ``time.perf_counter`` (or fewer: with a
``time_budget_s``, timing stops once the timed calls have taken that long, after at least one
call, so that a slow model on a slow machine cannot stall a page). The median time of one batch
``t`` gives ``images per second = batch_size / t``; at batch size 1, ``t`` is also the latency of
one image and ``1 / t`` the frame rate a camera pipeline could sustain.
"""

from __future__ import annotations

import numbers
import os
import platform
import statistics
import time
from dataclasses import dataclass
from cnnbook.checks import check_int as _check_int

__all__ = ["Throughput", "measure_throughput", "machine_description"]


@dataclass(frozen=True)
class Throughput:
    """One measurement: ``batch_size`` images per call, the measured seconds of each timed call.

    ``seconds_per_batch`` is their median; ``images_per_second = batch_size / seconds_per_batch``;
    ``latency_ms`` is ``1000 * seconds_per_batch`` (the wait for a whole batch)."""

    model_name: str
    batch_size: int
    batch_seconds: tuple[float, ...]

    @property
    def seconds_per_batch(self) -> float:
        return statistics.median(self.batch_seconds)

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.seconds_per_batch

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.seconds_per_batch

    def as_dict(self) -> dict:
        """The figures by name, for a table."""
        return {
            "model": self.model_name,
            "batch_size": self.batch_size,
            "seconds_per_batch": self.seconds_per_batch,
            "images_per_second": self.images_per_second,
            "latency_ms": self.latency_ms,
        }




def _image_shape(model, input_shape) -> tuple[int, ...]:
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        raise ValueError(
            "model must be a built Keras model with exactly one input (an image batch), got "
            f"{type(model).__name__} with inputs {inputs!r}"
        )
    model_shape = tuple(inputs[0].shape[1:])
    if input_shape is None:
        if any(size is None for size in model_shape):
            raise ValueError(
                f"model {model.name!r} accepts images of any size {model_shape}: pass "
                "input_shape=(height, width, channels) to say which size to time"
            )
        return tuple(int(size) for size in model_shape)
    shape = tuple(_check_int("input_shape", size, 1) for size in input_shape)
    if len(shape) != len(model_shape) or any(
        expected is not None and expected != size for expected, size in zip(model_shape, shape)
    ):
        raise ValueError(
            f"input_shape {shape} does not fit the model's input {model_shape}; give the sizes "
            "without the batch axis, matching every size the model fixes"
        )
    return shape


def measure_throughput(
    model,
    batch_size: int = 1,
    *,
    warmup: int = 2,
    iterations: int = 5,
    time_budget_s: float | None = None,
    input_shape=None,
    seed: int = 0,
) -> Throughput:
    """Time ``model.predict_on_batch`` on ``batch_size`` random images (see the module docstring).

    ``warmup`` untimed calls (>= 1: the first call builds the graph) come before at most
    ``iterations`` timed ones; with ``time_budget_s`` the timing stops once the timed calls have
    taken that many seconds in total (at least one call is always timed).
    ``input_shape`` (no batch axis) is needed only for a model with ``None`` sizes.
    Returns a :class:`Throughput` (``len(batch_seconds)`` says how many calls were timed).
    """
    import numpy as np

    batch_size = _check_int("batch_size", batch_size, 1)
    warmup = _check_int("warmup", warmup, 1)
    iterations = _check_int("iterations", iterations, 1)
    if time_budget_s is not None and not (
        isinstance(time_budget_s, numbers.Real) and time_budget_s > 0
    ):
        raise ValueError(f"time_budget_s must be a positive number of seconds or None, got "
                         f"{time_budget_s!r}")
    shape = _image_shape(model, input_shape)
    images = np.random.default_rng(seed).uniform(0, 255, size=(batch_size, *shape))
    images = images.astype("float32")
    for _ in range(warmup):
        model.predict_on_batch(images)
    batch_seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        model.predict_on_batch(images)
        batch_seconds.append(time.perf_counter() - start)
        if time_budget_s is not None and sum(batch_seconds) >= time_budget_s:
            break
    return Throughput(model.name, batch_size, tuple(batch_seconds))


def _cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_description() -> dict:
    """What the timings ran on: ``cpu`` (model name), ``cores`` (logical cores this process may
    use), ``system`` (OS and architecture), ``python``, ``tensorflow`` and ``keras`` versions,
    ``gpus`` (names of the GPUs TensorFlow sees; empty on a CPU-only machine) and ``device``
    (``"GPU"`` or ``"CPU"``, what ``predict_on_batch`` ran on)."""
    import keras
    import tensorflow as tf

    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    return {
        "cpu": _cpu_model(),
        "cores": _usable_cores(),
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "gpus": gpus,
        "device": "GPU" if gpus else "CPU",
    }
