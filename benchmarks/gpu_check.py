"""One run that says what a machine (a GPU above all) does with the book's training code.

Run it through ``benchmarks/gpu_check.sh`` (which prints the GPUs first); it:

1. prints the device TensorFlow computes on (:func:`cnnbook.counting.speed.machine_description`);
2. trains ResNet-20 (option A) with the ``fast`` recipe of
:func:`cnnbook.training.train.fit_cifar`, in the
   fastest precision of the device (:func:`cnnbook.training.train.fast_precision`: float16 on a GPU,
   bfloat16 on a CPU that has it), on the training images of
   :func:`cnnbook.course.data.load_cifar10`
   (the full data set when ``CNNBOOK_DATA`` is unset and Keras' copy is present, else the course
   subset), scoring the test images after every epoch;
3. reports the best test accuracy and its epoch, the training throughput (images per second,
   training time only: the per-epoch scoring is timed apart), and, when the training set is the
   full CIFAR-10 (50,000 images), the training time until the test accuracy first reached
   ``--target`` (91%: He et al. 2015 report 91.25% for ResNet-20, i.e. 8.75% error);
4. writes these figures as one JSON file (default ``benchmarks/results/gpu_check.json``), which
   ``benchmarks/README.md`` quotes and whose ``tiers_source`` line can be recorded as the
   ``source`` of the ``cifar10`` accuracy tiers in ``nbgrader_config.py``.

On a GPU the defaults (40 epochs of batches of 512) take a few minutes on the full data set. The
test suite runs it on the CPU with a tiny budget (``--epochs 1 --train-images 256``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL_TRAINING_SET = 50_000
PAPER_ACCURACY = 0.9125  # He et al. 2015, Table 6: ResNet-20, 8.75% test error


def time_to_target(accuracies, train_seconds, target: float):
    """``(epoch, seconds)``: the first epoch (1-based) whose test accuracy reached ``target`` and
    the training seconds of the epochs up to and including it; ``None`` if none reached it."""
    if len(accuracies) != len(train_seconds):
        raise ValueError(f"one accuracy per epoch and one time per epoch, got {len(accuracies)} "
                         f"and {len(train_seconds)}")
    elapsed = 0.0
    epochs = zip(accuracies, train_seconds, strict=True)
    for epoch, (accuracy, seconds) in enumerate(epochs, start=1):
        elapsed += seconds
        if accuracy >= target:
            return epoch, elapsed
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    parser.add_argument("--batch-size", type=int, default=512,
                        help="images per step (default 512; the learning rate scales with it)")
    parser.add_argument("--train-images", type=int, default=None,
                        help="train on the first N training images (default: all)")
    parser.add_argument("--test-images", type=int, default=None,
                        help="score the first N test images (default: all)")
    parser.add_argument("--target", type=float, default=0.91,
                        help="test accuracy whose time is reported (default 0.91)")
    parser.add_argument("--precision", default="auto",
                        help="'auto' (float16 on a GPU, bfloat16 on a CPU with it) or a Keras "
                             "dtype policy such as float32")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "gpu_check.json", help="the JSON file to write")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _positive(parser, name, value):
    if value is not None and value < 1:
        parser.error(f"--{name} must be an integer >= 1, got {value}")


def main(argv: list[str] | None = None) -> dict:
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "train_images", "test_images"):
        _positive(parser, name.replace("_", "-"), getattr(args, name))
    if not 0 < args.target <= 1:
        parser.error(f"--target must be an accuracy in (0, 1], got {args.target}")

    import keras

    import cnnbook  # noqa: F401  (quietens TensorFlow before it is imported)
    from cnnbook.counting import speed
    from cnnbook.course import data
    from cnnbook.nets import models
    from cnnbook.training import train

    machine = speed.machine_description()
    print(f"device: {machine['device']}"
          + (f" ({', '.join(machine['gpus'])})" if machine["gpus"] else "")
          + f"; CPU {machine['cpu']}, {machine['cores']} cores; TensorFlow "
          f"{machine['tensorflow']}, Keras {machine['keras']}", flush=True)

    (x_train, y_train), (x_test, y_test) = data.load_cifar10()
    x_train, y_train = x_train[: args.train_images], y_train[: args.train_images]
    x_test, y_test = x_test[: args.test_images], y_test[: args.test_images]
    if args.batch_size > len(x_train):
        parser.error(f"--batch-size {args.batch_size} is larger than the {len(x_train)} "
                     "training images: choose a smaller batch or more images")
    source = (f"{data.DATA_ENV} folder" if os.environ.get(data.DATA_ENV)
              else "keras.datasets.cifar10")
    print(f"data: {len(x_train)} training and {len(x_test)} test images from {source}",
          flush=True)

    policy = None if args.precision == "auto" else args.precision
    keras.utils.set_random_seed(args.seed)
    with train.fast_precision(policy) as policy_name:
        model = models.resnet_cifar(20)

    class Clock(keras.callbacks.Callback):
        """Training seconds per epoch (the per-epoch test scoring excluded) and test accuracy."""

        def __init__(self):
            super().__init__()
            self.train_seconds, self.accuracy, self.elapsed = [], [], 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.scored = time.perf_counter(), False

        def on_test_begin(self, logs=None):
            if not self.scored:
                self.train_seconds.append(time.perf_counter() - self.start)

        def on_epoch_end(self, epoch, logs=None):
            if len(self.train_seconds) <= epoch:  # no scoring this epoch
                self.train_seconds.append(time.perf_counter() - self.start)
            self.elapsed += self.train_seconds[-1]
            self.accuracy.append(float((logs or {}).get("val_accuracy", float("nan"))))
            print(f"epoch {epoch + 1}: test accuracy {self.accuracy[-1]:.4f} after "
                  f"{self.elapsed:.1f} s of training", flush=True)

    clock = Clock()
    wall_start = time.perf_counter()
    train.fit_cifar(model, (x_train, y_train), val=(x_test, y_test), epochs=args.epochs,
                    batch_size=args.batch_size, recipe="fast", verbose=0, seed=args.seed,
                    callbacks=[clock])
    wall_seconds = time.perf_counter() - wall_start

    steps = data.steps_per_epoch(len(x_train), args.batch_size)
    images_per_epoch = steps * args.batch_size
    cumulative = [sum(clock.train_seconds[: i + 1]) for i in range(len(clock.train_seconds))]
    best_epoch = max(range(len(clock.accuracy)), key=lambda i: clock.accuracy[i])
    full = len(x_train) >= FULL_TRAINING_SET
    reached = time_to_target(clock.accuracy, clock.train_seconds, args.target) if full else None
    later_epochs = clock.train_seconds[1:] or clock.train_seconds  # the first one traces
    record = {
        "script": "benchmarks/gpu_check.sh",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "dtype_policy": policy_name,
        "model": "ResNet-20 (option A)",
        "recipe": "fast",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_images": int(len(x_train)),
        "test_images": int(len(x_test)),
        "full_training_set": full,
        "data_source": source,
        "test_accuracy_per_epoch": clock.accuracy,
        "train_seconds_per_epoch": [round(value, 3) for value in clock.train_seconds],
        "best_test_accuracy": clock.accuracy[best_epoch],
        "best_epoch": best_epoch + 1,
        "final_test_accuracy": clock.accuracy[-1],
        "train_seconds": round(cumulative[-1], 2),
        "wall_seconds": round(wall_seconds, 2),
        "images_per_second": round(images_per_epoch * len(cumulative) / cumulative[-1], 1),
        "images_per_second_after_first_epoch": round(
            images_per_epoch * len(later_epochs) / sum(later_epochs), 1),
        "target_accuracy": args.target,
        "paper_accuracy": PAPER_ACCURACY,
        "seconds_to_target": round(reached[1], 2) if reached else None,
        "epochs_to_target": reached[0] if reached else None,
        "seconds_to_target_note": (
            "training seconds until the test accuracy first reached the target" if full and reached
            else "target not reached in this run" if full
            else f"not measured: the target is for the full training set of {FULL_TRAINING_SET:,} "
                 f"images, this run had {len(x_train):,}"),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    record["tiers_source"] = (
        f"benchmarks/gpu_check.sh, {record['date_utc'][:10]}, {machine['device']} "
        f"{', '.join(machine['gpus']) or machine['cpu']}: ResNet-20, fast recipe, {args.epochs} "
        f"epochs of {args.batch_size} on {len(x_train):,} training images, best test accuracy "
        f"{100 * record['best_test_accuracy']:.2f}% (epoch {record['best_epoch']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"best test accuracy {record['best_test_accuracy']:.4f} (epoch {record['best_epoch']}); "
          f"{record['images_per_second']:.0f} images/s; time to {args.target:.0%}: "
          f"{record['seconds_to_target'] if record['seconds_to_target'] is not None else '-'} s "
          f"({record['seconds_to_target_note']}); written to {args.out}", flush=True)
    return record


if __name__ == "__main__":
    main()
