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

One measurement, one number: a figure that several pages quote (ResNet-50's latency, frame rate
and batching gain, in the chapters "Residual networks" and "Known ConvNet architectures") comes
from :func:`cached_speed` (here :func:`resnet50_speed`), which measures once per machine and
software (repeated, median) and caches the result on disk, so that every page of a build reads
the same measurement. The cache folder is ``$CNNBOOK_SPEED_CACHE`` if set, else
``cnnbook/speed`` under ``$XDG_CACHE_HOME`` (default ``~/.cache``); a file is keyed by the
model, the batch sizes, the timing settings and :func:`machine_description`, so another CPU, core
count or TensorFlow version measures afresh. Delete the folder to measure again.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cnnbook.checks import check_int as _check_int

__all__ = [
    "Throughput",
    "measure_throughput",
    "machine_description",
    "CACHE_ENV",
    "speed_cache_dir",
    "cached_speed",
    "resnet50_speed",
]


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
        expected is not None and expected != size
        for expected, size in zip(model_shape, shape, strict=True)
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


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
"""The ``/proc/cpuinfo`` flags that decide which oneDNN kernels run (AVX-512, bfloat16 dot
products, Intel's AMX tiles)."""


def _cpu_identity() -> dict:
    """``cpu_id`` (vendor, family, model and stepping: a virtual machine often reports only "AMD
    EPYC" as the name, and Zen 4 is family 25, Zen 5 family 26) and ``cpu_flags`` (those of
    :data:`SPEED_FLAGS` the CPU has), from ``/proc/cpuinfo``; empty where it is missing."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return {"cpu_id": "", "cpu_flags": []}
    identity = " ".join(f"{name} {fields[key]}" for key, name in (
        ("vendor_id", "vendor"), ("cpu family", "family"), ("model", "model"),
        ("stepping", "stepping")) if key in fields)
    flags = set(fields.get("flags", "").split())
    return {"cpu_id": identity, "cpu_flags": [flag for flag in SPEED_FLAGS if flag in flags]}


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_description() -> dict:
    """What the timings ran on: ``cpu`` (model name), ``cpu_id`` and ``cpu_flags``
    (:func:`_cpu_identity`: two CPUs of one name can differ by half in speed), ``cores``
    (logical cores this process may use), ``system`` (OS and architecture), ``python``,
    ``tensorflow`` and ``keras`` versions, ``gpus`` (names of the GPUs TensorFlow sees; empty on
    a CPU-only machine) and ``device`` (``"GPU"`` or ``"CPU"``, what ``predict_on_batch``
    ran on)."""
    # Keras and TensorFlow take seconds to import: this module imports them only in the functions
    # that use them, so that importing it stays light
    import keras
    import tensorflow as tf  # as above

    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    return {
        "cpu": _cpu_model(),
        **_cpu_identity(),
        "cores": _usable_cores(),
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "gpus": gpus,
        "device": "GPU" if gpus else "CPU",
    }


# --- One measurement, cached for every page ------------------------------------------------------

CACHE_ENV = "CNNBOOK_SPEED_CACHE"
"""Environment variable naming the folder of cached speed measurements."""

_CACHE_FORMAT = 1
"""Bumped when the cached record or the method changes, so that old files are not read."""


def speed_cache_dir() -> Path:
    """``$CNNBOOK_SPEED_CACHE``, else ``$XDG_CACHE_HOME/cnnbook/speed`` (``~/.cache`` when
    ``XDG_CACHE_HOME`` is unset)."""
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cnnbook" / "speed"


def cached_speed(
    name: str,
    build: Callable[[], object],
    batch_sizes: Sequence[int] = (1, 32),
    *,
    warmup: int = 2,
    iterations: int = 7,
    cache_dir: Path | str | None = None,
    machine: dict | None = None,
) -> dict:
    """The speed of the model that ``build()`` returns, at each of ``batch_sizes``, measured once
    for this machine and cached (see the module docstring).

    Each batch size gets :func:`measure_throughput` with ``warmup`` untimed and ``iterations``
    timed calls (no time budget: every call counts toward the median). Returns (and caches) a
    dict: ``model`` (``name``), ``measured_utc``, ``machine`` (:func:`machine_description`, or
    ``machine`` when given), ``warmup``, ``iterations``, ``by_batch`` (one
    :meth:`Throughput.as_dict` per batch size, plus ``batch_seconds``, every timed call), and
    ``batching_gain``, the images per second at the largest batch size over those at the
    smallest. A cached record with the same key is returned without building the model.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string naming the model, got {name!r}")
    if not callable(build):
        raise ValueError(f"build must be a function that returns the model, got {build!r}")
    sizes = [_check_int("batch_sizes", size, 1) for size in batch_sizes]
    if not sizes or len(set(sizes)) != len(sizes):
        raise ValueError(f"batch_sizes must list distinct sizes, at least one, got {batch_sizes!r}")
    warmup = _check_int("warmup", warmup, 1)
    iterations = _check_int("iterations", iterations, 1)
    machine = dict(machine) if machine is not None else machine_description()
    key_fields = {"format": _CACHE_FORMAT, "model": name, "batch_sizes": sizes,
                  "warmup": warmup, "iterations": iterations, "machine": machine}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else speed_cache_dir()
    path = folder / f"{name}-{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # a damaged cache file: measure again and overwrite it
    model = build()
    by_batch = {}
    for size in sizes:
        result = measure_throughput(model, size, warmup=warmup, iterations=iterations)
        by_batch[str(size)] = {**result.as_dict(), "batch_seconds": list(result.batch_seconds)}
    smallest, largest = by_batch[str(min(sizes))], by_batch[str(max(sizes))]
    record = {
        **key_fields,
        "key": key,
        "measured_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "by_batch": by_batch,
        "batching_gain": largest["images_per_second"] / smallest["images_per_second"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(temporary, path)  # atomic: two pages built at once never read half a file
    return record


RESNET50_BATCH_SIZES = (1, 32)
"""Batch 1 (a camera's frames, one at a time) and 32 (an offline job)."""


def resnet50_speed(cache_dir: Path | str | None = None) -> dict:
    """ResNet-50's speed on this machine (``keras.applications.ResNet50(weights=None)``, 224x224
    images, batch sizes :data:`RESNET50_BATCH_SIZES`): the one measurement that every page
    quoting it reads, through :func:`cached_speed`. ``by_batch["1"]["latency_ms"]`` is the latency
    of one image, ``by_batch["1"]["images_per_second"]`` the frame rate, ``batching_gain`` what
    batches of 32 gain in images per second."""

    def build():
        import keras  # slow to import: only when the cache misses and the network is built

        return keras.applications.ResNet50(weights=None)

    return cached_speed("ResNet50", build, RESNET50_BATCH_SIZES, cache_dir=cache_dir)
