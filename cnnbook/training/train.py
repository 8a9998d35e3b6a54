"""Training the CIFAR networks with one call: :func:`fit_cifar`, its recipes, and helpers.

``fit_cifar(model, (x_train, y_train), (x_val, y_val), epochs=...)`` feeds raw uint8 images
through :func:`cnnbook.course.data.training_dataset` (in-memory images, shuffled batches of indices,
pad-4 random crop and horizontal flip done on whole batches, prefetch) to a model whose first
layer normalises them, with one of two recipes:

``"he2015"`` -- He et al. 2015, section 4.2, scaled to any number of epochs:
    SGD with momentum 0.9, learning rate ``0.1 * batch_size / 128``, divided by 10 at 50% and at
    75% of the steps (the paper's 32k and 48k of 64k iterations); for a network of 110 layers or
    more the first 400 steps run at a tenth of that rate (the paper's warm-up for ResNet-110).
    Weight decay 1e-4 as the paper's L2 term on the convolution and dense kernels (see
    :data:`HE2015`).

``"fast"`` -- the best test accuracy per second found for small budgets on a CPU
    (``benchmarks/README.md`` has the measurements):
    SGD with Nesterov momentum 0.9; a one-cycle schedule: linear warm-up over the first 20% of
    the steps from a tenth of the peak to the peak ``0.2 * batch_size / 128``, then cosine decay
    to zero; label smoothing 0.1 (targets ``0.91`` for the true class and ``0.01`` elsewhere);
    weight decay 2e-3 (twice the paper's strength, see :class:`Recipe`) on kernels only, not on
    batch-norm scales and shifts nor biases. On a GPU Keras compiles the step with XLA; build
    the model inside :func:`fast_precision` to train it in mixed precision (float16 on a GPU,
    bfloat16 on a CPU with bfloat16 instructions). :func:`cnnbook.training.evaluation.evaluate` with
    ``flip=True`` adds test-time flip augmentation.

Both recipes train batch norm with TensorFlow's fused kernel
(:func:`cnnbook.training.fused_norm.fused_batch_norm`): the same
computation as Keras' layer in far fewer operations, a quarter to a third less time per step on a
2-core CPU.

Whatever the recipe, the model leaves :func:`fit_cifar` compiled with
``SparseCategoricalCrossentropy(from_logits=True)`` and an ``"accuracy"`` metric, so
``model.evaluate(x_test, y_test)`` on integer labels works, in this session or after saving and
loading the model. With several GPUs :func:`fit_cifar` trains a copy of the model under
``tf.distribute.MirroredStrategy`` and copies the weights back.

Evaluation (:mod:`cnnbook.training.evaluation`), the history plot
(:mod:`cnnbook.training.plotting`) and the fused batch norm (:mod:`cnnbook.training.fused_norm`)
live in their own modules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path

import keras

from cnnbook.checks import check_int as _check_int
from cnnbook.course import data
from cnnbook.nets import models
from cnnbook.training.evaluation import check_images as _check_images
from cnnbook.training.fused_norm import fused_batch_norm

__all__ = [
    "Recipe",
    "HE2015",
    "FAST",
    "RECIPES",
    "get_recipe",
    "learning_rate_schedule",
    "make_optimizer",
    "fit_cifar",
    "reestimate_batch_norm",
    "compile_for_training",
    "network_depth",
    "fast_precision",
]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The settings of a training recipe.

    Learning rates are given for a batch of 128 and scale linearly with the batch size.
    ``weight_decay`` is Keras' decoupled decay: each step multiplies the decayed weights by
    ``1 - lr * weight_decay``, outside the momentum. An L2 term ``lambda/2 * |w|^2`` in the loss
    instead passes ``lambda * w`` through the momentum, which in a steady state multiplies it by
    ``1 / (1 - momentum)``: the paper's ``lambda = 1e-4`` with momentum 0.9 is
    ``weight_decay = 1e-3`` here.
    """

    name: str
    peak_learning_rate: float  # for a batch of 128
    schedule: str  # "step" (divide by 10 at the milestones) or "one_cycle" (warm-up, cosine)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: fractions of all steps
    warmup_fraction: float = 0.0  # one-cycle schedule: fraction of steps spent warming up
    deep_warmup_steps: int = 0  # step schedule: steps at lr/10 for networks >= 110 layers
    cutout: int = 0  # side of the cutout square of the augmentation (0: none)
    ema_momentum: float = 0.0  # the weights become their moving average at the end (0: none)

    def __post_init__(self):
        if self.schedule not in ("step", "one_cycle"):
            raise ValueError(f"schedule must be 'step' or 'one_cycle', got {self.schedule!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not isinstance(self.cutout, int) or not 0 <= self.cutout <= 32:
            raise ValueError(f"cutout must be a whole number of pixels in [0, 32], got "
                             f"{self.cutout!r}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")


HE2015 = Recipe(
    name="he2015", peak_learning_rate=0.1, schedule="step", momentum=0.9,
    weight_decay=1e-4 / (1 - 0.9), milestones=(0.5, 0.75), deep_warmup_steps=400,
)
"""He et al. 2015, section 4.2 (CIFAR-10), with the schedule scaled to the number of epochs."""

FAST = Recipe(
    name="fast", peak_learning_rate=0.2, schedule="one_cycle", momentum=0.9, nesterov=True,
    weight_decay=2e-3, label_smoothing=0.1, warmup_fraction=0.2,
)
"""The most accuracy per second on a small budget; see the module docstring and benchmarks/.
ResNet-20 on the 10k-image subset, 36 epochs in bfloat16 (4.5 minutes on 2 CPU cores on 2026-11-25,
7.4 on the same machine on 2026-12-05: benchmarks/README.md):
78.5% test accuracy, 80.4% with test-time flips."""

RECIPES = {recipe.name: recipe for recipe in (HE2015, FAST)}
KERNELS_ONLY = ("bias", "gamma", "beta")
"""Variable names excluded from weight decay: decay applies to convolution and dense kernels."""


def get_recipe(recipe) -> Recipe:
    """A :class:`Recipe` from its name (``"he2015"`` or ``"fast"``) or the recipe itself."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(
            f"recipe must be one of {', '.join(map(repr, RECIPES))} or a "
            "cnnbook.training.train.Recipe, "
            f"got {recipe!r}"
        )
    return RECIPES[recipe]


def network_depth(model: keras.Model) -> int:
    """Weighted layers of a CIFAR network: two per block, plus the stem and the classifier
    (0 for a model without ``stage{s}_block{b}`` blocks)."""
    num_blocks = len(models.block_names(model))
    return 2 * num_blocks + 2 if num_blocks else 0


def learning_rate_schedule(recipe, total_steps: int, batch_size: int = 128, depth: int = 0):
    """The learning rate of ``recipe`` as a Keras schedule (a function of the step, saved with
    the optimizer).

    * ``"step"``: ``peak * batch_size / 128``, divided by 10 at each milestone fraction of
      ``total_steps``; if ``depth >= 110``, the first ``deep_warmup_steps`` steps at a tenth of it.
    * ``"one_cycle"``: linear from ``peak / 10`` to ``peak`` over ``warmup_fraction`` of the steps,
      then ``peak * (1 + cos(pi * t)) / 2`` for the remaining fraction ``t`` in [0, 1].
    """
    recipe = get_recipe(recipe)
    total_steps = _check_int("total_steps", total_steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    peak = recipe.peak_learning_rate * batch_size / 128
    if recipe.schedule == "step":
        boundaries = [round(fraction * total_steps) for fraction in recipe.milestones]
        values = [peak * 0.1**index for index in range(len(boundaries) + 1)]
        if depth >= 110 and recipe.deep_warmup_steps:
            warmup_end = min(recipe.deep_warmup_steps, max(boundaries[0] - 1, 1))
            boundaries = [warmup_end, *boundaries]
            values = [peak / 10, *values]
        # PiecewiseConstantDecay needs increasing boundaries: merge those that coincide.
        merged_boundaries, merged_values = [], [values[0]]
        for boundary, value in zip(boundaries, values[1:], strict=True):
            if merged_boundaries and boundary <= merged_boundaries[-1]:
                merged_values[-1] = value
            else:
                merged_boundaries.append(boundary)
                merged_values.append(value)
        if not merged_boundaries:
            return keras.optimizers.schedules.PiecewiseConstantDecay([total_steps], [peak, peak])
        return keras.optimizers.schedules.PiecewiseConstantDecay(merged_boundaries, merged_values)
    warmup_steps = round(recipe.warmup_fraction * total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10 if warmup_steps else peak,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.0,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(recipe, total_steps: int, batch_size: int = 128, depth: int = 0):
    """SGD with the recipe's momentum, schedule (:func:`learning_rate_schedule`) and weight decay
    on kernels only (variables named ``bias``, ``gamma``, ``beta`` are left alone).

    With ``recipe.ema_momentum = m > 0`` the optimizer also keeps an exponential moving average of
    the trainable weights, ``a_1 = w_1``, ``a_t = m a_{t-1} + (1 - m) w_t`` after step ``t``
    (about the last ``1 / (1 - m)`` steps), and Keras writes it into the model when ``fit`` ends.
    :func:`fit_cifar` then re-estimates the batch-norm statistics for the averaged weights
    (:func:`reestimate_batch_norm`, one epoch of batches)."""
    recipe = get_recipe(recipe)
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(recipe, total_steps, batch_size, depth),
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay or None,
        use_ema=recipe.ema_momentum > 0,
        ema_momentum=recipe.ema_momentum or 0.99,
    )
    if recipe.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(KERNELS_ONLY))
    return optimizer


def _default_strategy():
    """MirroredStrategy over the visible GPUs when there are several, else None (no strategy)."""
    # TensorFlow itself only where a TensorFlow API is called: the rest of the module uses Keras'
    # own API (the package keeps TensorFlow imports out of its modules' tops)
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None


def fit_cifar(
    model: keras.Model,
    train,
    val=None,
    *,
    epochs: int,
    batch_size: int = 128,
    recipe="he2015",
    verbose: int = 1,
    seed: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    strategy=None,
) -> keras.callbacks.History:
    """Train ``model`` on ``train = (images, labels)`` (raw uint8 images, integer labels) for
    ``epochs`` passes and return Keras' ``History`` (``loss``, ``accuracy`` and, with ``val``,
    ``val_loss``, ``val_accuracy`` per epoch).

    One epoch is ``floor(N / batch_size)`` steps of augmented batches (see
    :func:`cnnbook.course.data.training_dataset`); ``val`` is evaluated unaugmented after each
    epoch.
    ``recipe`` is ``"he2015"``, ``"fast"`` (module docstring) or a :class:`Recipe`. ``seed`` seeds
    Python, NumPy, TensorFlow and the pipeline: the same seed with a model built after the same
    ``keras.utils.set_random_seed`` gives the same run. ``verbose`` is Keras' (1: a progress bar).
    ``strategy``: a ``tf.distribute`` strategy to train under (default: ``MirroredStrategy`` when
    several GPUs are visible); the model is copied into its scope, trained, and its weights
    copied back.

    Raises ``ValueError`` for a bad recipe, a number of epochs or batch size below 1, a batch
    larger than the training set, or images that do not fit the model's input.
    """
    recipe = get_recipe(recipe)
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    images, labels = _check_images("train", train, model)
    steps = data.steps_per_epoch(len(images), batch_size)
    keras.utils.set_random_seed(seed)

    one_hot = recipe.label_smoothing > 0
    training = data.training_dataset(images, labels, batch_size, seed=seed, one_hot=one_hot,
                                     cutout=recipe.cutout)
    validation = None
    if val is not None:
        val_images, val_labels = _check_images("val", val, model)
        validation = data.evaluation_dataset(val_images, val_labels, one_hot=one_hot)

    strategy = strategy if strategy is not None else _default_strategy()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        trained = model
        if strategy is not None:
            trained = keras.models.clone_model(model)
            trained.set_weights(model.get_weights())
        optimizer = make_optimizer(recipe, epochs * steps, batch_size, network_depth(model))
        compile_for_training(trained, recipe, optimizer)
    with fused_batch_norm(trained):
        history = trained.fit(
            training, epochs=epochs, steps_per_epoch=steps, validation_data=validation,
            callbacks=list(callbacks), verbose=verbose, shuffle=False,  # the pipeline shuffles
        )
    if recipe.ema_momentum > 0:  # the averaged weights need batch-norm statistics of their own
        with scope:  # a new stream: the first epoch's batches, whatever training consumed
            reestimate_batch_norm(trained, data.training_dataset(
                images, labels, batch_size, seed=seed, one_hot=one_hot, cutout=recipe.cutout),
                steps)
    if trained is not model:
        model.set_weights(trained.get_weights())
    _compile_for_evaluation(model, optimizer if trained is model else None)
    return history


def reestimate_batch_norm(model: keras.Model, batches, steps: int) -> None:
    """Recompute the moving statistics of ``model``'s batch-norm layers for its present weights:
    ``steps`` batches of ``batches`` (an iterable of ``(images, labels)``) pass through it in
    training mode, weights untouched. Each layer's moving mean ``mu`` becomes
    ``m^steps mu + (1 - m) sum_t m^(steps - t) mean_t`` (Keras' update with the layer's momentum
    ``m``): with ``m = 0.9`` and an epoch of 78 steps the old statistics keep a weight of 3e-4.
    Needed after the weights are replaced by their moving average (``Recipe.ema_momentum``),
    whose statistics were never measured."""
    import tensorflow as tf  # only where TensorFlow's API is called (see _default_strategy)

    @tf.function
    def forward(images):
        model(images, training=True)

    for images, _ in itertools.islice(iter(batches), steps):  # a stream may be endless
        forward(images)


def compile_for_training(model: keras.Model, recipe, optimizer) -> None:
    """Compile ``model`` with ``optimizer`` and the recipe's loss: from-logits cross-entropy with
    the recipe's label smoothing (then one-hot targets, see
    :func:`cnnbook.course.data.training_dataset`) and an ``"accuracy"`` metric; XLA where Keras
    chooses it (``jit_compile="auto"``)."""
    recipe = get_recipe(recipe)
    if recipe.label_smoothing > 0:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=recipe.label_smoothing
        )
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile="auto")


def _compile_for_evaluation(model: keras.Model, optimizer=None) -> None:
    """Leave ``model`` compiled for integer labels: from-logits cross-entropy and accuracy."""
    model.compile(
        optimizer=optimizer if optimizer is not None else "sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def _cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_dtype_policy() -> str:
    """The fastest Keras dtype policy here: ``"mixed_float16"`` with a GPU, ``"mixed_bfloat16"``
    on a CPU with bfloat16 instructions (AVX512-BF16 or AMX), else ``"float32"``. Mixed policies
    compute in 16 bits and keep the weights in float32; the logits stay float32."""
    import tensorflow as tf  # only where TensorFlow's API is called (see _default_strategy)

    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if _cpu_has_bfloat16() else "float32"


@contextlib.contextmanager
def fast_precision(policy: str | None = None):
    """Build models inside ``with fast_precision():`` to give them the dtype policy ``policy``
    (default :func:`fast_dtype_policy`); the global policy is restored on exit."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy or fast_dtype_policy())
    try:
        yield keras.config.dtype_policy().name
    finally:
        keras.config.set_dtype_policy(previous)
