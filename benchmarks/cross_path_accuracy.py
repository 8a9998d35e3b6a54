"""How much a committed network's accuracy moves when its float32 sums are taken in another order:
the spread that tests/test_experiments.py's CROSS_PATH_TOLERANCE allows for between CPUs.

Another CPU runs other kernels (AVX-512 on one, AMX or AVX2 on another), which add the same
float32 products in another order. On one machine the same happens between oneDNN's kernels and
TensorFlow's own (``TF_ENABLE_ONEDNN_OPTS=0``), and between batch sizes. For every committed
network of results/resnet this prints, as JSON, the test accuracy along each path and how many of
the test images change class between paths::

    CNNBOOK_DATA=../shared/data/cifar10 python benchmarks/cross_path_accuracy.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PATHS = {
    "onednn, batch 500": ({}, 500),
    "onednn, batch 32": ({}, 32),
    "tensorflow kernels, batch 500": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, 500),
}


def predicted_classes(batch_size: int) -> dict:
    """In this process: the class each committed network gives each test image."""
    import keras
    import numpy as np

    import cnnbook.course.layers  # noqa: F401 (registers the course's layers for loading)
    from cnnbook.course import data
    from cnnbook.resnet import experiments

    _, (x_test, y_test) = data.load_cifar10()
    classes = {"labels": np.asarray(y_test).reshape(-1).tolist()}
    for path in sorted((experiments.RESULTS_DIR / "resnet").glob("*.keras")):
        model = keras.models.load_model(path, safe_mode=True)
        classes[path.stem] = model.predict(x_test, batch_size=batch_size, verbose=0).argmax(
            axis=-1).tolist()
    return classes


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(predicted_classes(int(sys.argv[2]))))
        return 0
    from cnnbook.counting.speed import machine_description

    runs = {}
    for name, (environment, batch_size) in PATHS.items():
        output = subprocess.run([sys.executable, __file__, "--child", str(batch_size)],
                                env={**os.environ, **environment}, capture_output=True,
                                text=True, check=True).stdout
        runs[name] = json.loads(output.strip().splitlines()[-1])
    first = next(iter(runs.values()))
    labels = first["labels"]
    report = {"machine": machine_description(), "test_images": len(labels), "networks": {}}
    for network in (key for key in first if key != "labels"):
        report["networks"][network] = {
            "accuracy": {name: sum(a == b for a, b in zip(run[network], labels, strict=True))
                         / len(labels) for name, run in runs.items()},
            "images_changing_class": {
                f"{name} vs {next(iter(runs))}": sum(
                    a != b for a, b in zip(run[network], first[network], strict=True))
                for name, run in list(runs.items())[1:]},
        }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
