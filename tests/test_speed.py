"""cnnbook.speed: a throughput measurement is well formed and the machine is described. No test
asserts a time (the figures depend on the machine: the book reports them, benchmarks/ tracks them)."""

from __future__ import annotations

import math
import os

import keras
import pytest

from cnnbook import speed


@pytest.fixture(scope="module")
def tiny_model():
    images = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(images)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(2)(x), name="tiny")


@pytest.mark.parametrize("batch_size", [1, 4])
def test_throughput_counts_images_over_the_median_batch_time(tiny_model, batch_size):
    result = speed.measure_throughput(tiny_model, batch_size, warmup=1, iterations=3)
    assert result.model_name == "tiny"
    assert result.batch_size == batch_size
    assert len(result.batch_seconds) == 3
    assert all(seconds > 0 and math.isfinite(seconds) for seconds in result.batch_seconds)
    assert min(result.batch_seconds) <= result.seconds_per_batch <= max(result.batch_seconds)
    assert result.images_per_second == pytest.approx(batch_size / result.seconds_per_batch)
    assert result.latency_ms == pytest.approx(1000 * result.seconds_per_batch)
    # A tiny model on 8x8 images is not slower than one batch per second on any machine.
    assert result.images_per_second > batch_size
    assert set(result.as_dict()) == {
        "model", "batch_size", "seconds_per_batch", "images_per_second", "latency_ms"
    }


def test_models_with_free_image_sizes_need_an_input_shape():
    images = keras.Input((None, None, 3))
    model = keras.Model(images, keras.layers.GlobalAveragePooling2D()(images), name="free")
    with pytest.raises(ValueError, match="input_shape"):
        speed.measure_throughput(model)
    result = speed.measure_throughput(model, 2, warmup=1, iterations=1, input_shape=(16, 16, 3))
    assert result.batch_size == 2
    with pytest.raises(ValueError, match="does not fit"):
        speed.measure_throughput(model, input_shape=(16, 16, 4))


@pytest.mark.parametrize("argument", ["batch_size", "warmup", "iterations"])
def test_counts_below_one_are_rejected(tiny_model, argument):
    arguments = {"batch_size": 1, "warmup": 1, "iterations": 1, argument: 0}
    batch_size = arguments.pop("batch_size")
    with pytest.raises(ValueError, match=f"{argument} must be an integer >= 1"):
        speed.measure_throughput(tiny_model, batch_size, **arguments)


def test_machine_description_names_the_cpu_cores_versions_and_device():
    import tensorflow as tf

    machine = speed.machine_description()
    assert machine["cpu"] and isinstance(machine["cpu"], str)
    assert 1 <= machine["cores"] <= os.cpu_count()
    assert machine["tensorflow"] == tf.__version__
    assert machine["keras"] == keras.__version__
    assert machine["device"] == ("GPU" if tf.config.list_physical_devices("GPU") else "CPU")
    assert (machine["device"] == "GPU") == bool(machine["gpus"])


def test_a_time_budget_stops_the_timing_after_at_least_one_call(tiny_model):
    result = speed.measure_throughput(tiny_model, warmup=1, iterations=50, time_budget_s=1e-9)
    assert len(result.batch_seconds) == 1
    with pytest.raises(ValueError, match="time_budget_s"):
        speed.measure_throughput(tiny_model, time_budget_s=0)
