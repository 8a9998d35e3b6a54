"""cnnbook.counting.speed: timings are checked against models whose call times the test itself sets
(a
fake model that sleeps planned durations), the machine description against what the test
imposes on a child process (its CPU affinity, no visible GPU), and the cache against a builder
that counts its calls. No test asserts how fast a real network is: that depends on the machine
(the book reports it, benchmarks/ tracks it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import keras
import pytest

from cnnbook.counting import speed

ROOT = Path(__file__).resolve().parents[1]


class SleepingModel:
    """Duck-typed model for measure_throughput: ``predict_on_batch`` sleeps the next of
    ``durations`` seconds (the warm-up calls first), so the true call times are known."""

    def __init__(self, durations, name="sleeper", shape=(None, 4, 4, 3)):
        self.name = name
        self.inputs = [types.SimpleNamespace(shape=shape)]
        self.durations = list(durations)
        self.batches = []

    def predict_on_batch(self, images):
        self.batches.append(images.shape)
        time.sleep(self.durations.pop(0))


def test_the_median_call_time_of_planned_durations_gives_latency_and_throughput():
    # One warm-up call (0.3 s, not timed), then five timed calls whose median is 0.06 s. Sleep
    # never returns early; a loaded machine may wake it late, hence the one-sided margin.
    model = SleepingModel([0.3, 0.02, 0.10, 0.06, 0.04, 0.08])
    result = speed.measure_throughput(model, 4, warmup=1, iterations=5)
    assert result.model_name == "sleeper" and result.batch_size == 4
    assert model.batches == [(4, 4, 4, 3)] * 6  # the warm-up and the timed calls, batch of 4
    assert 0.06 <= result.seconds_per_batch < 0.075
    assert 60 <= result.latency_ms < 75
    assert 4 / 0.075 < result.images_per_second <= 4 / 0.06
    assert sorted(result.batch_seconds)[0] >= 0.02 and max(result.batch_seconds) >= 0.10


def test_a_time_budget_stops_the_timing_once_the_timed_calls_reach_it():
    # Calls of 0.02 s against a 0.05 s budget: the third call reaches it, the rest never run.
    model = SleepingModel([0.0] + [0.02] * 10)
    result = speed.measure_throughput(model, warmup=1, iterations=10, time_budget_s=0.05)
    assert len(result.batch_seconds) == 3
    assert len(model.durations) == 7
    with pytest.raises(ValueError, match="time_budget_s"):
        speed.measure_throughput(model, time_budget_s=0)


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
def test_counts_below_one_are_rejected(argument):
    arguments = {"batch_size": 1, "warmup": 1, "iterations": 1, argument: 0}
    batch_size = arguments.pop("batch_size")
    with pytest.raises(ValueError, match=f"{argument} must be an integer >= 1"):
        speed.measure_throughput(SleepingModel([0.0] * 3), batch_size, **arguments)


def _describe_in_child(prelude: str, env_extra: dict) -> dict:
    code = (f"import os, json\n{prelude}\nfrom cnnbook.counting import speed\n"
            "print(json.dumps(speed.machine_description()))")
    env = {**__import__("os").environ, **env_extra}
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True, timeout=300).stdout
    return json.loads(output.strip().splitlines()[-1])


def test_machine_description_reports_the_cores_and_devices_a_process_is_given():
    # Pinned to one core with no GPU visible: whatever the machine, that is what it must report.
    machine = _describe_in_child("os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})",
                                 {"CUDA_VISIBLE_DEVICES": "-1"})
    assert machine["cores"] == 1
    assert machine["device"] == "CPU" and machine["gpus"] == []
    assert machine["tensorflow"] == __import__("tensorflow").__version__
    assert machine["keras"] == keras.__version__
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = {line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")}
        assert machine["cpu"] in names
        # Family and model tell CPUs of one name apart (a virtual "AMD EPYC" was Zen 5, family
        # 26, on 2026-11-25 and Zen 4, family 25, on 2026-12-05, 1.6 times slower)
        text = cpuinfo.read_text()
        family = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.MULTILINE)
        model = re.search(r"^model\s*:\s*(\d+)$", text, re.MULTILINE)
        if family and model:
            assert f"family {family[1]} model {model[1]} " in machine["cpu_id"] + " "
        flags = set(re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)[1].split())
        assert set(machine["cpu_flags"]) == flags & set(speed.SPEED_FLAGS)


def test_cached_speed_measures_once_per_machine_and_reads_the_cache_after(tmp_path):
    builds = []

    def build():
        builds.append(1)
        return SleepingModel([0.0, 0.01, 0.0, 0.02, 0.02], name="counted")

    machine = {"cpu": "test CPU", "cores": 2, "tensorflow": "x", "device": "CPU"}
    first = speed.cached_speed("counted", build, (1, 2), warmup=1, iterations=1,
                               cache_dir=tmp_path, machine=machine)
    assert len(builds) == 1
    assert first["by_batch"]["1"]["batch_seconds"][0] >= 0.01
    assert first["by_batch"]["2"]["batch_seconds"][0] >= 0.02
    assert first["machine"] == machine
    # The gain is throughput at the largest batch over the smallest: (2/t2) / (1/t1).
    expected_gain = (2 / first["by_batch"]["2"]["seconds_per_batch"]) / (
        1 / first["by_batch"]["1"]["seconds_per_batch"])
    assert first["batching_gain"] == pytest.approx(expected_gain)
    again = speed.cached_speed("counted", build, (1, 2), warmup=1, iterations=1,
                               cache_dir=tmp_path, machine=machine)
    assert len(builds) == 1 and again == first  # read back, not measured again
    other_machine = {**machine, "cores": 4}
    speed.cached_speed("counted", build, (1, 2), warmup=1, iterations=1, cache_dir=tmp_path,
                       machine=other_machine)
    assert len(builds) == 2  # another machine measures afresh
    for path in tmp_path.glob("counted-*.json"):
        path.write_text("{not json")
    speed.cached_speed("counted", build, (1, 2), warmup=1, iterations=1, cache_dir=tmp_path,
                       machine=machine)
    assert len(builds) == 3  # a damaged file is measured again, not trusted


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "here"))
    assert speed.speed_cache_dir() == tmp_path / "here"
    monkeypatch.delenv(speed.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert speed.speed_cache_dir() == tmp_path / "xdg" / "cnnbook" / "speed"


@pytest.mark.parametrize("arguments, message", [
    (("", lambda: None, (1,)), "name must be"),
    (("m", None, (1,)), "build must be"),
    (("m", lambda: None, ()), "batch_sizes must list"),
    (("m", lambda: None, (1, 1)), "batch_sizes must list"),
    (("m", lambda: None, (0,)), "batch_sizes must be an integer"),
])
def test_cached_speed_rejects_bad_arguments(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        speed.cached_speed(*arguments, cache_dir=tmp_path, machine={})


def test_both_chapters_quote_one_resnet50_measurement():
    # Issue 13.4: one measurement, one number. Each page that states ResNet-50's speed reads it
    # from speed.resnet50_speed() and times ResNet-50 no other way.
    for page in ("resnet.md", "architectures.md"):
        text = (ROOT / "book" / page).read_text()
        assert "speed.resnet50_speed()" in text, page
        assert "measure_throughput(resnet50" not in text, page
