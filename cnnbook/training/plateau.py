"""Training until the training error stops falling, one epoch at a time, resumable.

He et al. (2015, section 4.2) train their CIFAR networks with SGD at a learning rate of 0.1,
divide it by 10 twice and stop: at fixed iterations (32k, 48k, 64k) chosen where the curves of
their 45k-image training set had flattened. On another data set size those iterations mean
nothing, so :func:`fit_until_plateau` lets the training curve decide: it stays at a learning rate
while the training error falls, moves to the next (a tenth) when it has stopped falling, and
stops after the last. "Stopped falling" is :func:`plateau_reached`: with ``e`` the training
errors of the epochs at the current learning rate and ``w`` the window,

    mean(e[-w:]) > (1 - r) * mean(e[-2w:-w])

the mean error of the last ``w`` epochs is not at least a fraction ``r`` below that of the ``w``
before (defaults ``w = 5``, ``r = 0.05``), and, with an absolute threshold ``a``, not ``a`` per
epoch or more below it either; or, with a negligible fall ``n``, it is less than ``n`` per epoch
below it, whatever its share. The relative threshold because the error at the last learning
rate is a tenth of the first one's while the noise of one epoch's error shrinks with it; the
absolute one because near chance a fall of a point or two per epoch is a small fraction of the
error and yet plainly not a plateau; the negligible one because near zero error an error that
keeps shrinking by a steady share (1.5% to 1.1% in 8 epochs) never meets the relative test,
although it falls by a tenth of a point per epoch or less.
Networks of 110 layers or more first train at a tenth of the rate until an epoch's training error
is below 80% (the paper's warm-up for ResNet-110), and no network is taken to be on a plateau
while its error is at or above that threshold: it has not started to learn yet (a plain network
of 56 layers spends its first epochs at chance, which the rule alone would read as flat). A cap
on the epochs ends a run that never plateaus; the result says which of the two ended it.

The training error is that of the epoch's augmented batches as Keras reports it (1 - accuracy),
the curve He et al.'s Figure 1 plots.

After every epoch the run's state (weights, the optimizer's variables, the history and where the
schedule stands) is written to ``checkpoint`` (a folder; every file replaced atomically), and a
call with the same folder continues from there: on the same machine and software, an
interrupted run resumed gives the same result as one that never stopped, since every epoch's
shuffle and augmentation come from the seed and the epoch's number (:func:`epoch_seed`) and
oneDNN's CPU kernels are deterministic (another CPU, a GPU or another TensorFlow may round
differently, and then the resumed part differs as a rerun would).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from cnnbook.checks import check_int
from cnnbook.course import data
from cnnbook.training import train
from cnnbook.training.evaluation import check_images
from cnnbook.training.fused_norm import fused_batch_norm

__all__ = ["PlateauRule", "plateau_reached", "window_means", "learning_rates", "epoch_seed",
           "epoch_stream", "fit_until_plateau", "CHECKPOINT_FILES"]

CHECKPOINT_FILES = ("state.json", "epoch{N}.weights.h5")
"""What a checkpoint folder holds (:func:`fit_until_plateau`): the state, and the weights and
optimizer variables of the epoch it names."""


@dataclasses.dataclass(frozen=True)
class PlateauRule:
    """When :func:`fit_until_plateau` moves on: ``window``, ``relative_improvement`` and
    ``absolute_improvement`` (per epoch, or ``None``) of :func:`plateau_reached`; ``stages``:
    learning rates used, each a tenth of the one before (3: the recipe's peak, a tenth, a
    hundredth, as He et al.); ``negligible_improvement``: ``n`` (per epoch, or ``None``), a
    fall too small to count whatever its share; ``warmup_until_error``: the
    training error below which a network of 110 layers or more leaves its warm-up at a tenth of
    the peak, and at or above which no network is on a plateau; ``max_epochs``: the cap."""

    window: int = 5
    relative_improvement: float = 0.05
    absolute_improvement: float | None = None
    stages: int = 3
    negligible_improvement: float | None = None
    warmup_until_error: float = 0.8
    max_epochs: int = 200

    def __post_init__(self):
        check_int("window", self.window, 1)
        check_int("stages", self.stages, 1)
        check_int("max_epochs", self.max_epochs, 1)
        if self.absolute_improvement is not None and not 0.0 < self.absolute_improvement < 1.0:
            raise ValueError(f"absolute_improvement must be None or in (0, 1), got "
                             f"{self.absolute_improvement}")
        if self.negligible_improvement is not None and not (
                0.0 < self.negligible_improvement < (self.absolute_improvement or 1.0)):
            raise ValueError(f"negligible_improvement must be None or in (0, "
                             f"absolute_improvement), got {self.negligible_improvement}")
        if not 0.0 <= self.relative_improvement < 1.0:
            raise ValueError(f"relative_improvement must be in [0, 1), got "
                             f"{self.relative_improvement}")
        if not 0.0 < self.warmup_until_error <= 1.0:
            raise ValueError(f"warmup_until_error must be in (0, 1], got "
                             f"{self.warmup_until_error}")


def window_means(errors: Sequence[float], window: int) -> tuple[float, float]:
    """``(before, recent)``: the mean of the last ``window`` errors and of the ``window`` before
    them, the two numbers :func:`plateau_reached` compares (at least ``2 * window`` errors)."""
    window = check_int("window", window, 1)
    if len(errors) < 2 * window:
        raise ValueError(f"window_means needs at least {2 * window} errors, got {len(errors)}")
    return (float(np.mean(errors[-2 * window:-window])), float(np.mean(errors[-window:])))


def plateau_reached(errors: Sequence[float], window: int = 5,
                    relative_improvement: float = 0.05,
                    absolute_improvement: float | None = None,
                    negligible_improvement: float | None = None) -> bool:
    """Whether the errors of the epochs at one learning rate have stopped falling: at least
    ``2 * window`` of them, and the mean of the last ``window`` is not lower than the mean of the
    ``window`` before by ``relative_improvement`` of it or more, nor (when
    ``absolute_improvement`` is given) by ``absolute_improvement`` per epoch or more; or (when
    ``negligible_improvement`` is given) it is lower by less than that per epoch::

        (before - recent < relative_improvement * before
         and before - recent < absolute_improvement * window)
        or before - recent < negligible_improvement * window
    """
    window = check_int("window", window, 1)
    if len(errors) < 2 * window:
        return False
    before, recent = window_means(errors, window)
    improvement = before - recent
    if negligible_improvement is not None and improvement < negligible_improvement * window:
        return True
    if absolute_improvement is not None and improvement >= absolute_improvement * window:
        return False
    return improvement < relative_improvement * before


def learning_rates(recipe, batch_size: int, stages: int) -> list[float]:
    """The learning rate of each stage: the recipe's peak ``peak * batch_size / 128``, then a
    tenth of the one before."""
    recipe = train.get_recipe(recipe)
    peak = recipe.peak_learning_rate * check_int("batch_size", batch_size, 1) / 128
    return [peak * 0.1**stage for stage in range(check_int("stages", stages, 1))]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle and augmentation (different for every epoch, the
    same in a resumed run): ``seed * 100003 + epoch``, so ``epoch_seed(seed, 0) + epoch``."""
    return int(seed) * 100_003 + int(epoch)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    # "tmp-" in front: Keras wants weights files to end in ".weights.h5", NumPy ".npz"
    temporary = path.with_name("tmp-" + path.name)
    write(temporary)
    os.replace(temporary, path)


def _weights_file(epoch: int) -> str:
    return f"epoch{epoch:04d}.weights.h5"


def _save(folder: Path, model, state: dict) -> None:
    """Write the epoch's weights to a file of their own, then ``state.json`` naming it, then
    remove older weights files: a crash at any point leaves a ``state.json`` whose named file
    holds exactly the epoch it records."""
    folder.mkdir(parents=True, exist_ok=True)
    name = _weights_file(state["epoch"])
    # a compiled model's weights file holds its optimizer's variables too (Keras 3)
    _write_atomically(folder / name, lambda path: model.save_weights(path))
    state["weights_file"] = name
    _write_atomically(folder / "state.json",
                      lambda path: path.write_text(json.dumps(state, indent=1) + "\n"))
    for older in folder.glob("*.weights.h5"):
        if older.name != name:
            older.unlink()


def _restore(folder: Path, model, optimizer, steps_per_epoch: int, configuration: dict,
             earlier_rules: Sequence[PlateauRule] = ()) -> dict:
    state = json.loads((folder / "state.json").read_text())
    saved = dict(state["configuration"])
    try:  # a rule written before a field was added has that field's default
        saved_rule = PlateauRule(**saved.pop("rule"))
    except (TypeError, ValueError, KeyError):
        saved_rule = None
    wanted = json.loads(json.dumps(configuration))
    rule = PlateauRule(**wanted.pop("rule"))
    if saved != wanted or saved_rule is None or (
            saved_rule != rule and saved_rule not in tuple(earlier_rules)):
        raise ValueError(f"the checkpoint in {folder} is of another configuration "
                         f"({state['configuration']}): delete the folder to start afresh")
    if saved_rule != rule:  # continued under the rule that replaced the one it was written under
        state.setdefault("rule_changes", []).append(
            {"after_epoch": state["epoch"], "rule_before": dataclasses.asdict(saved_rule)})
        state["configuration"] = json.loads(json.dumps(configuration))
    optimizer.build(model.trainable_variables)  # so that its saved variables load too
    try:
        model.load_weights(folder / state.get("weights_file", "model.weights.h5"))
    except (ValueError, OSError) as error:
        raise ValueError(f"the checkpoint in {folder} does not fit this network or is damaged: "
                         f"delete the folder to start afresh ({error})") from error
    iterations = int(keras.ops.convert_to_numpy(optimizer.iterations.value))
    if iterations != state["epoch"] * steps_per_epoch:
        raise ValueError(
            f"the checkpoint in {folder} holds {iterations} optimizer steps where its state "
            f"records {state['epoch']} epochs of {steps_per_epoch}: its files disagree; delete "
            "the folder to start afresh")
    return state


def epoch_stream(images, labels, batch_size: int, seed: int, first_epoch: int, last_epoch: int,
                 one_hot: bool = False, cutout: int = 0):
    """The augmented training batches of epochs ``first_epoch`` to ``last_epoch - 1``, one epoch
    after another (``floor(N / batch_size)`` batches each): epoch ``e`` shuffles the images by a
    stateless permutation seeded by :func:`epoch_seed` and augments its ``b``-th batch with
    :func:`cnnbook.course.data.augment_batch` seeded by ``(epoch_seed(seed, e), b)``, so an epoch's
    batches do not depend on where the stream started."""
    import tensorflow as tf  # the pipeline only

    with tf.device("/cpu:0"):
        image_tensor = tf.convert_to_tensor(np.asarray(images, dtype=np.uint8))
        label_tensor = tf.convert_to_tensor(np.asarray(labels).reshape(-1).astype(np.int64))
    num_images = int(image_tensor.shape[0])
    steps = data.steps_per_epoch(num_images, batch_size)

    def epoch_batches(epoch):
        epoch_key = tf.constant(epoch_seed(seed, 0), tf.int64) + epoch  # epoch_seed(seed, epoch)
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_images, dtype=tf.int64),
            seed=tf.stack([epoch_key, tf.constant(0, tf.int64)]))
        batches = tf.reshape(order[: steps * batch_size], [steps, batch_size])
        return tf.data.Dataset.from_tensor_slices(batches).enumerate().map(
            lambda step, indices: (epoch_key, step, indices))

    def load(epoch_key, step, indices):
        batch = data.augment_batch(tf.gather(image_tensor, indices), tf.stack([epoch_key, step]),
                                   cutout=cutout)
        labels_of_batch = tf.gather(label_tensor, indices)
        if one_hot:
            labels_of_batch = tf.one_hot(labels_of_batch, 10)
        return batch, labels_of_batch

    return (tf.data.Dataset.range(int(first_epoch), int(last_epoch))
            .flat_map(epoch_batches)
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


class _PlateauControl(keras.callbacks.Callback):
    """Sets each epoch's learning rate, records the epoch, moves through the stages, saves the
    checkpoint and stops the fit (:func:`fit_until_plateau`)."""

    def __init__(self, state, rule, rates, optimizer, folder, on_epoch):
        super().__init__()
        self.state, self.rule, self.rates = state, rule, rates
        self.optimizer, self.folder, self.on_epoch = optimizer, folder, on_epoch

    def _rate(self) -> float:
        stage = self.state["stage"]
        return self.rates[0] / 10 if stage < 0 else self.rates[stage]

    def on_epoch_begin(self, epoch, logs=None):
        self.optimizer.learning_rate.assign(self._rate())
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        state, rule = self.state, self.rule
        stage = state["stage"]
        row = {key: float(value) for key, value in (logs or {}).items()}
        row.update(learning_rate=self._rate(), stage=stage,
                   seconds=time.perf_counter() - self.start, epoch=state["epoch"] + 1)
        for key, value in row.items():
            if key != "epoch":
                state["history"].setdefault(key, []).append(value)
        state["epoch"] += 1
        error = 1.0 - row["accuracy"]
        if stage < 0:
            if error < rule.warmup_until_error:
                state["stage"], state["stage_errors"] = 0, []
        else:
            state["stage_errors"].append(error)
            # a network whose error is still at the warm-up threshold has not started to learn
            # (a deep plain network spends its first epochs near chance): not a plateau
            if error < rule.warmup_until_error and plateau_reached(
                    state["stage_errors"], rule.window, rule.relative_improvement,
                    rule.absolute_improvement, rule.negligible_improvement):
                if stage + 1 < rule.stages:
                    state["stage"], state["stage_errors"] = stage + 1, []
                else:
                    state["stopped"] = "plateau"
        if state["stopped"] is None and state["epoch"] >= rule.max_epochs:
            state["stopped"] = "max_epochs"
        if self.folder is not None:
            _save(self.folder, self.model, state)
        if self.on_epoch is not None:
            self.on_epoch(row)
        if state["stopped"] is not None:
            self.model.stop_training = True


def fit_until_plateau(model: keras.Model, train_images, val=None, *, recipe="he2015",
                      batch_size: int = 128, rule: PlateauRule = PlateauRule(), seed: int = 0,
                      checkpoint: str | os.PathLike | None = None,
                      on_epoch: Callable[[dict], None] | None = None,
                      earlier_rules: Sequence[PlateauRule] = ()) -> dict:
    """Train ``model`` on ``train_images = (images, labels)`` until the training error plateaus at
    the last learning rate (module docstring), with ``recipe``'s optimizer (momentum, weight
    decay, label smoothing; its schedule is replaced by the plateau stages) and augmentation.

    ``val``: ``(images, labels)`` evaluated after every epoch. ``checkpoint``: a folder to save
    the state in after every epoch and to resume from when it holds one (the model must be built
    the same way as the first time). ``on_epoch(row)`` is called after every epoch with the
    epoch's row of the history (for a progress log). ``earlier_rules``: rules that ``rule``
    replaced during a run; a checkpoint written under one of them (all else the same) continues
    under ``rule`` from its next epoch, and the result's ``rule_changes`` records it
    (``[{"after_epoch", "rule_before"}]``, empty when the run had one rule).

    Returns ``{"history": {"loss", "accuracy", ["val_loss", "val_accuracy",] "learning_rate",
    "stage", "seconds"} as per-epoch lists (``seconds``: the epoch's wall time), "epochs",
    "stopped": "plateau" or "max_epochs", "stage_epochs": epochs spent at each stage (warm-up as
    stage -1), "learning_rates": the stages' rates}``; the model leaves
    compiled for integer labels, like :func:`cnnbook.training.train.fit_cifar`'s.
    """
    recipe = train.get_recipe(recipe)
    batch_size = check_int("batch_size", batch_size, 1)
    images, labels = check_images("train", train_images, model)
    steps = data.steps_per_epoch(len(images), batch_size)
    one_hot = recipe.label_smoothing > 0
    validation = None
    if val is not None:
        val_images, val_labels = check_images("val", val, model)
        validation = data.evaluation_dataset(val_images, val_labels, one_hot=one_hot)
    rates = learning_rates(recipe, batch_size, rule.stages)
    warmup = train.network_depth(model) >= 110 and recipe.deep_warmup_steps > 0

    optimizer = keras.optimizers.SGD(learning_rate=rates[0], momentum=recipe.momentum,
                                     nesterov=recipe.nesterov,
                                     weight_decay=recipe.weight_decay or None)
    if recipe.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(train.KERNELS_ONLY))
    train.compile_for_training(model, recipe, optimizer)

    folder = Path(checkpoint) if checkpoint is not None else None
    configuration = {"recipe": recipe.name, "batch_size": batch_size, "seed": int(seed),
                     "rule": dataclasses.asdict(rule), "learning_rates": rates,
                     "training_images": len(images)}
    if folder is not None and (folder / "state.json").is_file():
        state = _restore(folder, model, optimizer, steps, configuration, earlier_rules)
    else:
        state = {"configuration": configuration, "epoch": 0, "stage": -1 if warmup else 0,
                 "stage_errors": [], "history": {}, "stopped": None}

    def finish() -> dict:
        history = state["history"]
        stages = history.get("stage", [])
        return {"history": history, "epochs": state["epoch"], "stopped": state["stopped"],
                "stage_epochs": {str(stage): stages.count(stage) for stage in sorted(set(stages))},
                "learning_rates": rates, "rule_changes": state.get("rule_changes", [])}

    if state["stopped"] is None:
        control = _PlateauControl(state, rule, rates, optimizer, folder, on_epoch)
        training = epoch_stream(images, labels, batch_size, seed, state["epoch"], rule.max_epochs,
                                one_hot=one_hot, cutout=recipe.cutout)
        with fused_batch_norm(model):
            # one fit for the whole run: a fit per epoch costs about 5 s more per epoch (Keras
            # sets up its evaluation again each time)
            model.fit(training, initial_epoch=state["epoch"], epochs=rule.max_epochs,
                      steps_per_epoch=steps, validation_data=validation, callbacks=[control],
                      verbose=0, shuffle=False)
    train._compile_for_evaluation(model, optimizer)
    return finish()
