"""Cost of a ResNet training step on this machine by precision and batch-norm implementation.

For each configuration (``float32`` or ``mixed_bfloat16`` Keras dtype policy, Keras' own batch norm
or ``cnnbook.training.fused_norm.fused_batch_norm``), train ResNet-20 (``--depth``) on augmented
batches of the
CIFAR-10 training images through ``cnnbook.course.data.training_dataset`` and measure the wall time
and
the process CPU time per image. The configurations take turns for ``--rounds`` rounds after one
warm-up each; the best round (wall) and the mean CPU time per image are printed. On a shared
machine the CPU time is the steadier figure. Run by hand, never in CI:

    CNNBOOK_DATA=../shared/data/cifar10 python benchmarks/step_cost.py --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import keras

import cnnbook  # noqa: F401  (quietens TensorFlow before it is imported)
from cnnbook.counting import speed
from cnnbook.course import data
from cnnbook.nets import models
from cnnbook.training import fused_norm, train

CONFIGS = [(policy, bn) for policy in ("float32", "mixed_bfloat16") for bn in ("keras", "fused")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    (x_train, y_train), _ = data.load_cifar10()
    stream = data.training_dataset(x_train, y_train, args.batch_size, seed=0)
    runs = {}
    for policy, bn in CONFIGS:
        keras.utils.set_random_seed(0)
        with train.fast_precision(policy):
            model = models.resnet_cifar(args.depth)
        model.compile(
            optimizer=train.make_optimizer("he2015", 10_000, args.batch_size),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        runs[(policy, bn)] = model
    results = {f"{policy}/{bn}": {"wall": [], "cpu": []} for policy, bn in CONFIGS}
    loads = [os.getloadavg()]
    for round_index in range(args.rounds + 1):
        for (policy, bn), model in runs.items():
            context = (fused_norm.fused_batch_norm(model) if bn == "fused"
                       else contextlib.nullcontext())
            with context:
                wall, cpu = time.perf_counter(), time.process_time()
                model.fit(stream, steps_per_epoch=args.steps, epochs=1, verbose=0)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if round_index:  # round 0 traces and warms up
                images = args.steps * args.batch_size
                results[f"{policy}/{bn}"]["wall"].append(images / wall)
                results[f"{policy}/{bn}"]["cpu"].append(1000 * cpu / images)
        loads.append(os.getloadavg())
        print(f"round {round_index}: load {loads[-1][0]:.2f}", flush=True)
    print(json.dumps({
        "depth": args.depth, "batch_size": args.batch_size, "steps": args.steps,
        "configurations": {
            name: {
                "best_images_per_second": round(max(r["wall"])),
                "images_per_second": [round(v) for v in r["wall"]],
                "cpu_ms_per_image": round(sum(r["cpu"]) / len(r["cpu"]), 3),
            }
            for name, r in results.items()
        },
        "load_averages_1_5_15": [[round(v, 2) for v in load] for load in loads],
        "machine": speed.machine_description(), "keras": keras.__version__,
    }, indent=1))


if __name__ == "__main__":
    main()
