"""Training throughput of ``cnnbook.training.train.fit_cifar`` against baselines, same model, same
run.

For ResNet-20 (or ``--depth``) on the training images of ``load_cifar10()``, in images per second
of training, one epoch at a time:

* ``fit_cifar``: the tf.data pipeline (in-memory uint8 images, shuffled index batches, pad-crop-
  flip on whole batches, prefetch) with recipe ``--recipe`` and fused batch norm;
* ``in_memory_no_augmentation``: ``model.fit`` on in-memory tensors cut into batches once
  (a cached ``tf.data`` dataset of tensors), no augmentation, the same optimizer, batch size and
  fused batch norm (``cnnbook.training.fused_norm.fused_batch_norm``): the same computation with
  nothing left
  to do on the input side, the ceiling (target: fit_cifar within 10% of it);
* ``keras_arrays_no_augmentation``: the same, but ``model.fit(x, y)`` on the in-memory arrays
  (Keras' own slicing and shuffling);
* ``numpy_augmentation``: the plain way, ``model.fit`` on NumPy arrays with Keras' default
  arguments and layers (Keras' own batch norm), the augmentation done in NumPy before each epoch
  (its time counted), the same batch size;
* ``numpy_augmentation_batch32`` (with ``--keras-default-batch``): the same at Keras' default
  batch size of 32.

The machine is shared, so the configurations take turns epoch by epoch: ``fit_cifar`` runs
``--epochs`` epochs, and after each one a callback runs one epoch of every baseline (each on its
own model). A change in the machine's load then hits all of them alike. The first epoch of each
(tracing, warm-up) is left out. Printed: images per second per epoch, the median and the best
epoch of each configuration, the ratios, the process CPU time per image, and the load averages.
Run by hand, never in CI:

    CNNBOOK_DATA=../shared/data/cifar10 python benchmarks/throughput.py --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import keras
import numpy as np

import cnnbook  # noqa: F401  (quietens TensorFlow before it is imported)
from cnnbook.counting import speed
from cnnbook.course import data
from cnnbook.nets import models
from cnnbook.training import fused_norm, train


def numpy_pad_crop_flip(images: np.ndarray, rng: np.random.Generator, pad: int = 4):
    """The usual NumPy augmentation: zero-pad, crop a random window, mirror half of them."""
    count, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = rng.integers(0, 2 * pad + 1, size=(count, 2))
    flips = rng.random(count) < 0.5
    out = np.empty_like(images)
    for index, ((dy, dx), flip) in enumerate(zip(offsets, flips, strict=False)):
        crop = padded[index, dy : dy + height, dx : dx + width]
        out[index] = crop[:, ::-1] if flip else crop
    return out


class Clock:
    """Wall and process CPU time of a stretch of work."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


class Baseline:
    """One epoch at a time of ``model.fit`` outside fit_cifar."""

    def __init__(self, name, args, x_train, y_train):
        self.name = name
        self.batch_size = 32 if name == "numpy_augmentation_batch32" else args.batch_size
        keras.utils.set_random_seed(0)
        with train.fast_precision(args.precision):
            self.model = models.resnet_cifar(args.depth)
        steps = (args.epochs + 1) * (len(x_train) // self.batch_size + 1)
        self.model.compile(
            optimizer=train.make_optimizer(args.recipe, steps, self.batch_size),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        self.x_train, self.y_train = x_train, y_train.astype("int32")
        self.rng = np.random.default_rng(0)
        if name == "keras_arrays_no_augmentation":
            self.x_tensor = keras.ops.convert_to_tensor(self.x_train)
            self.y_tensor = keras.ops.convert_to_tensor(self.y_train)
        if name == "in_memory_no_augmentation":
            import tensorflow as tf

            self.batches = (
                tf.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
                .batch(self.batch_size, drop_remainder=True).cache().prefetch(tf.data.AUTOTUNE)
            )

    def epoch(self) -> tuple[float, float, int]:
        """Wall seconds, CPU seconds and images of one epoch."""
        images = len(self.x_train)
        with Clock() as clock:
            if self.name == "in_memory_no_augmentation":
                with fused_norm.fused_batch_norm(self.model):  # fit_cifar's computation
                    self.model.fit(self.batches, epochs=1, verbose=0)
                images = images // self.batch_size * self.batch_size
            elif self.name == "keras_arrays_no_augmentation":
                with fused_norm.fused_batch_norm(self.model):
                    self.model.fit(self.x_tensor, self.y_tensor, batch_size=self.batch_size,
                                   epochs=1, verbose=0)
            else:
                augmented = numpy_pad_crop_flip(self.x_train, self.rng)
                self.model.fit(augmented, self.y_train, batch_size=self.batch_size, epochs=1,
                               verbose=0)
        return clock.wall, clock.cpu, images


class Interleave(keras.callbacks.Callback):
    """Times fit_cifar's epochs and, after each, runs one epoch of every baseline."""

    def __init__(self, baselines, images_per_epoch):
        super().__init__()
        self.baselines = baselines
        self.images_per_epoch = images_per_epoch
        self.records = {"fit_cifar": [], **{b.name: [] for b in baselines}}
        self.loads = []

    def on_epoch_begin(self, epoch, logs=None):
        self.clock = Clock().__enter__()

    def on_epoch_end(self, epoch, logs=None):
        self.clock.__exit__()
        self.records["fit_cifar"].append((self.clock.wall, self.clock.cpu, self.images_per_epoch))
        for baseline in self.baselines:
            self.records[baseline.name].append(baseline.epoch())
        self.loads.append(os.getloadavg())
        print(f"epoch {epoch + 1}: " + ", ".join(
            f"{name} {records[-1][2] / records[-1][0]:.0f}/s"
            for name, records in self.records.items()
        ) + f" (load {self.loads[-1][0]:.2f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--recipe", default="he2015")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--epochs", type=int, default=6, help="epochs, the first one untimed")
    parser.add_argument("--keras-default-batch", action="store_true")
    args = parser.parse_args()

    (x_train, y_train), _ = data.load_cifar10()
    names = ["in_memory_no_augmentation", "keras_arrays_no_augmentation", "numpy_augmentation"]
    if args.keras_default_batch:
        names.append("numpy_augmentation_batch32")
    baselines = [Baseline(name, args, x_train, y_train) for name in names]
    images_per_epoch = len(x_train) // args.batch_size * args.batch_size
    interleave = Interleave(baselines, images_per_epoch)
    load_before = os.getloadavg()
    keras.utils.set_random_seed(0)
    with train.fast_precision(args.precision):
        model = models.resnet_cifar(args.depth)
    train.fit_cifar(model, (x_train, y_train), epochs=args.epochs, batch_size=args.batch_size,
                    recipe=args.recipe, verbose=0, callbacks=[interleave])

    summary = {}
    for name, records in interleave.records.items():
        timed = records[1:]  # the first epoch traces the step and warms up
        rates = [images / wall for wall, _, images in timed]
        summary[name] = {
            "images_per_second": [round(rate) for rate in rates],
            "median": round(statistics.median(rates)),
            "best": round(max(rates)),
            "cpu_ms_per_image": round(
                1000 * sum(cpu for _, cpu, _ in timed) / sum(images for *_, images in timed), 3
            ),
        }

    def ratio(key, other):
        return round(summary["fit_cifar"][key] / summary[other][key], 3)

    print(json.dumps({
        "depth": args.depth, "batch_size": args.batch_size, "precision": args.precision,
        "recipe": args.recipe, "train_images": len(x_train), "timed_epochs": args.epochs - 1,
        "configurations": summary,
        "fit_cifar_over_in_memory": {k: ratio(k, "in_memory_no_augmentation")
                                     for k in ("median", "best")},
        "fit_cifar_over_numpy_augmentation": {k: ratio(k, "numpy_augmentation")
                                              for k in ("median", "best")},
        "load_before": [round(v, 2) for v in load_before],
        "load_after_each_round": [[round(v, 2) for v in load] for load in interleave.loads],
        "machine": speed.machine_description(), "keras": keras.__version__,
    }, indent=1))


if __name__ == "__main__":
    main()
