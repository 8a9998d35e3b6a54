"""The reference runs behind the accuracy tiers of the shared subset (``cifar10-subset`` in
``nbgrader_config.py``): train each assignment's reference networks the way its tiers' ``source``
says (``nbgrader validate`` of the source notebook with ``CNNBOOK_EPOCHS``, on the 9,000 training
images of the subset's split), measure each trained network with the accuracy grader's own
command (``python -m cnnbook.grading evaluate``: the grader's network, the student's weights, the
10,000 test images), and write one JSON record per graded model into ``results/reference_tiers/``.

Minutes of training on a CPU, so a long run: never in the test suite. Run it in the background
with a log, from the repository root, after changing a notebook's training or the tiers::

    CNNBOOK_DATA=../shared/data/cifar10 nohup .venv/bin/python benchmarks/reference_tiers.py \\
        > reference_tiers.log 2>&1 &

``tests/test_course.py`` checks the committed records against the configuration: each tier
source quotes its record's accuracy and epochs, and each reference reaches its top tier. The
suite itself trains for one epoch only, enough to grade real trained networks end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    # assignment: (CNNBOOK_EPOCHS of its reference run, {accuracy grader entry: model file})
    "resnet": ("6", {"resnet": "resnet20.keras"}),
    "architectures": ("3", {"architectures-plain": "plain_cnn.keras",
                            "architectures-separable": "separable_cnn.keras"}),
}
OUTPUT = ROOT / "results" / "reference_tiers"


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _architecture(entry: str) -> str:
    # the grader's configuration, read as the grader reads it (cnnbook is installed in the venv)
    from cnnbook.grading.tiers import accuracy_rule, load_course_config

    return accuracy_rule(load_course_config(ROOT), entry, "cifar10-subset", ROOT).architecture


def run(assignment: str) -> list[dict]:
    epochs, models = RUNS[assignment]
    environment = {**os.environ, "CNNBOOK_EPOCHS": epochs,
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory(prefix="cnnbook-reference-tiers-") as scratch:
        course = Path(scratch)
        shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
        shutil.copytree(ROOT / "solutions", course / "solutions",
                        ignore=shutil.ignore_patterns("*.keras", ".ipynb_checkpoints"))
        source = course / "solutions" / assignment / f"{assignment}.ipynb"
        start = time.perf_counter()
        loads = [os.getloadavg()]
        subprocess.run([sys.executable, "-m", "nbgrader", "validate", str(source)], cwd=course,
                       env=environment, check=True)
        training_seconds = time.perf_counter() - start
        loads.append(os.getloadavg())
        records = []
        for entry, model_file in models.items():
            evaluated = subprocess.run(
                [sys.executable, "-m", "cnnbook.grading", "evaluate",
                 str(source.with_name(model_file)), "--architecture", _architecture(entry)],
                cwd=course, env=environment, capture_output=True, text=True, check=True)
            outcome = json.loads(evaluated.stdout.strip().splitlines()[-1])
            if not outcome.get("ok"):
                raise RuntimeError(f"{entry}: the grader refused the reference: {outcome}")
            records.append({
                "entry": entry, "assignment": assignment, "model_file": model_file,
                "accuracy": outcome["accuracy"], "test_images": outcome["test_images"],
                "validation_accuracy": outcome["validation_accuracy"],
                "command": f"CNNBOOK_EPOCHS={epochs} nbgrader validate "
                           f"solutions/{assignment}/{assignment}.ipynb, then python -m "
                           f"cnnbook.grading evaluate {model_file}",
                "epochs": int(epochs), "training_set": "cifar10-subset",
                "validate_seconds": round(training_seconds, 1),
                "load_averages": [list(load) for load in loads],
                "machine": f"{_cpu_name()}, {os.cpu_count()} cores",
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            })
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                        help=f"any of {', '.join(RUNS)} (default: all of them)")
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.assignments) - set(RUNS))
    if unknown:
        parser.error(f"no reference run for {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    if not os.environ.get("CNNBOOK_DATA"):
        parser.error("set CNNBOOK_DATA to the shared subset's folder: the tiers are the subset's")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for assignment in arguments.assignments or list(RUNS):
        for record in run(assignment):
            path = OUTPUT / f"{record['entry']}.json"
            path.write_text(json.dumps(record, indent=1) + "\n")
            print(f"{record['entry']}: {record['accuracy']:.2%} -> {path.relative_to(ROOT)}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
