"""Time to accuracy: train a CIFAR ResNet with ``cnnbook.training.train.fit_cifar`` on the training
images
of ``load_cifar10()`` (the shared 10k subset when CNNBOOK_DATA is set), then report the wall time
of training and the accuracy on the whole test set, with and without test-time flips.

    CNNBOOK_DATA=../shared/data/cifar10 python benchmarks/time_to_accuracy.py --depth 20 \
        --epochs 20 --recipe fast --precision auto

``--set name=value`` overrides a field of the recipe (see ``cnnbook.training.train.Recipe``), for
experiments. The result is printed as one JSON line, with the machine and the load averages
(``os.getloadavg``) before and after: on a shared machine a high load means slower figures.
Beside the accuracy of the trained network it reports, for the analysis of a recipe, the same
weights' accuracy computed in float32 (``test_accuracy_float32``) and with the batch-norm
statistics measured again on training batches without the cutout or without any augmentation
(``test_accuracy_batch_norm_statistics_from``); ``--zero-residual-gamma`` starts every residual
branch at zero. ``train_cpu_seconds`` is the CPU time the process used while training (all its
threads): on an otherwise idle 2-core machine the wall time is a little over half of it.
Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import keras
import tensorflow as tf

import cnnbook  # noqa: F401  (quietens TensorFlow before it is imported)
from cnnbook.counting import speed
from cnnbook.course import data
from cnnbook.nets import models
from cnnbook.training import evaluation, train


def parse_override(text: str):
    name, _, value = text.partition("=")
    field_types = {field.name: field.type for field in dataclasses.fields(train.Recipe)}
    if name not in field_types:
        raise SystemExit(f"--set: unknown recipe field {name!r}; fields: {', '.join(field_types)}")
    if value in ("True", "False"):
        return name, value == "True"
    try:
        return name, int(value)
    except ValueError:
        return name, float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--shortcut", default="A")
    parser.add_argument("--preact", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--precision", default="auto", help="auto, float32, mixed_bfloat16, ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], type=parse_override)
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument(
        "--zero-residual-gamma", action="store_true",
        help="start each residual branch at zero: the scale of its last batch norm (bn2) is 0 "
             "(Goyal et al. 2017, section 5.1); post-activation blocks only",
    )
    args = parser.parse_args()
    if args.zero_residual_gamma and args.preact:
        parser.error("--zero-residual-gamma: a pre-activation branch ends in a convolution, "
                     "not a batch norm; leave out --preact")

    recipe = dataclasses.replace(train.get_recipe(args.recipe), **dict(args.set))
    (x_train, y_train), (x_test, y_test) = data.load_cifar10()
    keras.utils.set_random_seed(args.seed)
    policy = None if args.precision == "auto" else args.precision
    with train.fast_precision(policy) as policy_name:
        model = models.resnet_cifar(
            args.depth, args.shortcut, preact=args.preact, base_filters=args.base_filters
        )
    if args.zero_residual_gamma:
        for name in models.block_names(model):
            gamma = model.get_layer(name).get_layer("bn2").gamma
            gamma.assign(tf.zeros_like(gamma))
    load_before = os.getloadavg()
    cpu_start = time.process_time()
    start = time.perf_counter()
    history = train.fit_cifar(
        model, (x_train, y_train), epochs=args.epochs, batch_size=args.batch_size,
        recipe=recipe, verbose=args.verbose, seed=args.seed,
    )
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - cpu_start
    load_after = os.getloadavg()
    start = time.perf_counter()
    accuracy = evaluation.evaluate(model, (x_test, y_test))
    accuracy_flip = evaluation.evaluate(model, (x_test, y_test), flip=True)
    eval_seconds = time.perf_counter() - start
    # the same weights computing in float32 (a mixed-precision network predicts in bfloat16)
    accuracy_float32 = evaluation.evaluate(evaluation.float32_copy(model), (x_test, y_test))
    # Batch-norm statistics measured on other batches than training's augmented ones: one epoch
    # of batches in training mode (momentum 0.9: the old statistics keep a weight of 3e-4), the
    # weights untouched, then the test accuracy; the trained statistics are put back after each.
    steps = data.steps_per_epoch(len(x_train), args.batch_size)
    trained_weights = model.get_weights()
    accuracy_reestimated = {}
    for stats_from, augment in (("crop_flip", True), ("unaugmented", False)):
        train.reestimate_batch_norm(model, data.training_dataset(
            x_train, y_train, args.batch_size, seed=args.seed, augment=augment), steps)
        accuracy_reestimated[stats_from] = evaluation.evaluate(model, (x_test, y_test))
        model.set_weights(trained_weights)
    print(json.dumps({
        "model": model.name, "params": model.count_params(), "precision": policy_name,
        "recipe": dataclasses.asdict(recipe), "epochs": args.epochs,
        "batch_size": args.batch_size, "train_images": len(x_train),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "images_per_second": round(args.epochs * (len(x_train) // args.batch_size)
                                   * args.batch_size / train_seconds),
        "final_train_loss": round(history.history["loss"][-1], 4),
        "final_train_accuracy": round(history.history["accuracy"][-1], 4),
        "test_accuracy": accuracy, "test_accuracy_flip": accuracy_flip,
        "eval_seconds": round(eval_seconds, 1),
        "test_accuracy_float32": accuracy_float32,
        "zero_residual_gamma": args.zero_residual_gamma,
        "test_accuracy_batch_norm_statistics_from": accuracy_reestimated,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in load_after],
        "machine": speed.machine_description(), "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }))


if __name__ == "__main__":
    main()
