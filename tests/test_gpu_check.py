"""benchmarks/gpu_check.sh (issue 13.5): the one-run GPU check also runs on the CPU with a tiny
budget, and writes the figures it prints to its JSON file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from benchmark_scripts import benchmark_module

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _module():
    return benchmark_module("gpu_check")


def test_time_to_target_is_the_training_time_up_to_the_first_epoch_that_reaches_it():
    time_to_target = _module().time_to_target
    accuracies = [0.50, 0.88, 0.912, 0.905, 0.93]
    seconds = [10.0, 4.0, 4.5, 4.0, 4.0]
    assert time_to_target(accuracies, seconds, 0.91) == (3, 18.5)  # 10 + 4 + 4.5
    assert time_to_target(accuracies, seconds, 0.50) == (1, 10.0)
    assert time_to_target(accuracies, seconds, 0.95) is None
    with pytest.raises(ValueError, match="one accuracy per epoch"):
        time_to_target(accuracies, seconds[:-1], 0.91)


@pytest.mark.slow
def test_the_gpu_check_runs_on_the_cpu_with_a_tiny_budget(cifar_subset_dir, tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}  # the CPU, whatever the machine has
    completed = subprocess.run(
        ["bash", str(SCRIPT), "--epochs", "2", "--train-images", "128", "--test-images", "100",
         "--batch-size", "64", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads(out.read_text())
    assert "device: CPU" in completed.stdout
    assert record["machine"]["device"] == "CPU" and record["machine"]["gpus"] == []
    assert (record["epochs"], record["batch_size"]) == (2, 64)
    assert (record["train_images"], record["test_images"]) == (128, 100)
    accuracies = record["test_accuracy_per_epoch"]
    assert len(accuracies) == 2 == len(record["train_seconds_per_epoch"])
    # Accuracies on 100 test images are whole percentages.
    assert all(abs(100 * value - round(100 * value)) < 1e-6 for value in accuracies)
    assert record["best_test_accuracy"] == max(accuracies)
    assert accuracies[record["best_epoch"] - 1] == max(accuracies)
    # 2 epochs of 2 steps of 64 images in the measured training time.
    assert record["images_per_second"] == pytest.approx(256 / record["train_seconds"], rel=0.01)
    assert record["train_seconds"] <= record["wall_seconds"]
    # Not the full training set: no time to 91% is claimed.
    assert record["full_training_set"] is False and record["seconds_to_target"] is None
    assert "not measured" in record["seconds_to_target_note"]
    assert f"best test accuracy {100 * max(accuracies):.2f}%" in record["tiers_source"]


def test_bad_budgets_are_refused_with_the_option_named(tmp_path):
    for arguments, message in ((["--epochs", "0"], "--epochs must be an integer >= 1"),
                               (["--target", "1.5"], "--target must be an accuracy")):
        completed = subprocess.run(["bash", str(SCRIPT), *arguments, "--out",
                                    str(tmp_path / "x.json")], capture_output=True, text=True,
                                   timeout=120)
        assert completed.returncode != 0 and message in completed.stderr
        assert not (tmp_path / "x.json").exists()
