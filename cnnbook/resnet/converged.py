"""The ResNet chapter's networks trained until their training error plateaus, and lesion studies
of the converged ones: ``python -m cnnbook.resnet.experiments converged``.

Where ``resnet`` (:mod:`cnnbook.resnet.experiments`) trains every network for the same fixed
budget, this run trains each with He et al.'s optimizer (the ``he2015`` recipe: SGD, momentum 0.9,
learning rate 0.1, the paper's weight decay) and lets the training curve decide how long:
:func:`cnnbook.training.plateau.fit_until_plateau` divides the learning rate by 10 when the
training error stops falling, twice, and stops when it stops falling a third time (the 110-layer
network first warms up at 0.01, as in the paper). The 10,000-image subset is a fifth of the
paper's training set, so the curves flatten after fewer epochs and at other errors; the page
shows them whole.

Networks: plain and pre-activation at 20 and 56 layers (He et al.'s Figure 1, in the book's data)
and a pre-activation ResNet-110 (the network of Veit et al.'s lesion studies). Each network's
results are written when it is done, and the lesion study of a network runs as soon as it is
trained (single deletions, ``k`` deletions and ``k`` swaps with 10 draws each, and two
diagnostics: :func:`cnnbook.resnet.lesion.branch_ratios`, how much each residual branch changes
its input, and :func:`cnnbook.resnet.lesion.block_gradient_norms` of the trained network).

The run is resumable at every level: a network whose results are in the output folder is skipped,
one whose training was interrupted continues from its last epoch (``checkpoints/{network}/``, left
out of git; removed when the network is done), and a lesion study already written is kept.
Everything is recorded with ``provenance.json`` like ``resnet``'s. ``--tiny`` runs the pipeline on
a few hundred images in a minute (the tests).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cnnbook.counting.speed import machine_description
from cnnbook.resnet import lesion, runs

__all__ = ["ConvergedConfig", "FULL_CONVERGED", "TINY_CONVERGED", "run_converged",
           "load_converged_results", "CONVERGED_DIR"]

CONVERGED_DIR = runs.RESULTS_DIR / "resnet_converged"
"""Where the run's results are committed."""


@dataclass(frozen=True)
class ConvergedConfig:
    """What ``python -m cnnbook.resnet.experiments converged`` trains and measures.

    The fields shared with :class:`cnnbook.resnet.experiments.ResnetConfig` mean the same.
    ``rule``: the :class:`cnnbook.training.plateau.PlateauRule` fields (``window``,
    ``relative_improvement``, ``absolute_improvement``, ``stages``, ``negligible_improvement``,
    ``warmup_until_error``, ``max_epochs``).
    ``diagnostic_images``: the test images of the gradient norms (a backward pass through the
    whole network holds every activation). The deletion curves delete shape-keeping blocks only,
    as Veit et al.'s; the single deletions cover every block.
    """

    networks: tuple[tuple[str, int], ...] = (("plain", 20), ("preact", 20), ("plain", 56),
                                             ("preact", 56), ("preact", 110))
    batch_size: int = 128
    recipe: str = "he2015"
    precision: str = "auto"
    rule: dict = field(default_factory=lambda: {
        "window": 4, "relative_improvement": 0.08, "absolute_improvement": 0.005, "stages": 3,
        "negligible_improvement": 0.001, "warmup_until_error": 0.8, "max_epochs": 120})
    train_images: int | None = None
    test_images: int | None = None
    eval_images: int = 2000
    lesion_images: int = 1000
    diagnostic_images: int = 250
    lesion_networks: tuple[str, ...] = ("plain56", "preact56", "preact110")
    deletion_counts: tuple[int, ...] = (1, 2, 4, 6, 8, 12, 16, 20, 30, 40, 50)
    swap_counts: tuple[int, ...] = (1, 2, 4, 8, 16)
    repeats: int = 10
    save_weights: tuple[str, ...] = ("preact20", "plain56", "preact56", "preact110")
    seed: int = 0
    tiny: bool = False

    def __post_init__(self):
        from cnnbook.training.plateau import PlateauRule  # imports Keras: checked here only

        names = [runs.network_name(*pair) for pair in self.networks]
        if len(set(names)) != len(names):
            raise ValueError(f"networks lists a network twice: {names}")
        for name in (*self.lesion_networks, *self.save_weights):
            if name not in names:
                raise ValueError(f"{name} is not among the networks trained: {names}")
        unsaved = [name for name in self.lesion_networks if name not in self.save_weights]
        if unsaved:
            raise ValueError(f"lesion_networks must be saved (save_weights) to be lesioned: "
                             f"{unsaved}")
        PlateauRule(**self.rule)
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")

    @property
    def names(self) -> list[str]:
        return [runs.network_name(kind, depth) for kind, depth in self.networks]


FULL_CONVERGED = ConvergedConfig()
"""The configuration of ``results/resnet_converged``. The rule's tolerance, 8% less error over
4 epochs, was chosen on plain-20's first run at the learning rate of 0.1: its training error
still fell by 4-5% every 4 epochs after 40 epochs (23.4% to 19.1% from epoch 29 to 40), a slow
creep that 5% would have followed past the cap of 80 epochs, leaving no epochs for the lower
rates; at 8% it moves on after about 29 epochs. The absolute threshold, half a point per epoch,
came from plain-56: near chance its error fell from 90% to 80% by 1.5 to 2.5 points an epoch,
only 7% of itself over 4 epochs, and the relative rule alone took that for a plateau. It was
added after plain-20 and preact-20 had finished; at every change of rate of theirs the error had
fallen by less than 2 points over the 4 epochs (at most 1.89), so their runs are those of the
final rule, which ``tests/test_converged.py`` checks by replaying it on their curves.

The negligible fall, a tenth of a point per epoch, and the cap raised from 80 to 120 epochs came
from preact-56 at its second rate: from epoch 68 to 77 the mean training error of each 4 epochs
was 13-18% below that of the 4 before, at most 0.07 points per epoch (near 1% error), which the
relative test never takes for a plateau; under the rule as it was it would have met the cap of
80 epochs at the second rate. They were added after its epoch 77; the epochs before were decided
by the rule before (under the final rule its second rate would have ended after epoch 68, not 78:
it spent 10 more epochs at 0.01).
Plain-20, preact-20 and plain-56 had finished: no fall of theirs at any rate was below 0.4 points
over 4 epochs before their rule moved them on, so the final rule replays them unchanged.
``provenance.json`` records both changes (``config_changes``) and ``histories.json`` the epoch
after which preact-56 continued under the final rule (``rule_changes``)."""

TINY_CONVERGED = ConvergedConfig(
    networks=(("plain", 8), ("preact", 8)), batch_size=64,
    rule={"window": 1, "relative_improvement": 0.99, "stages": 2, "warmup_until_error": 1.0,
          "max_epochs": 4},
    train_images=256, test_images=256, eval_images=128, lesion_images=64, diagnostic_images=32,
    lesion_networks=("plain8", "preact8"), deletion_counts=(1, 2), swap_counts=(1,), repeats=2,
    save_weights=("plain8", "preact8"), tiny=True,
)
"""Every step in about a minute on a few hundred images (the tests); the numbers mean nothing."""


def _config_from(entry: dict) -> dict:
    return json.loads(json.dumps(entry))


def run_converged(config: ConvergedConfig = FULL_CONVERGED, out: Path | str = CONVERGED_DIR,
                  command: str | None = None, verbose: int = 0) -> dict:
    """Train each network until it plateaus, save it, lesion it; write ``histories.json``,
    ``lesion.json`` and ``provenance.json`` to ``out`` after each step; resume whatever an
    earlier call with the same configuration left (module docstring). Returns what
    :func:`load_converged_results` reads."""
    import keras  # slow to import: only when training (see runs.build_network)

    from cnnbook.training import plateau, train  # import Keras, as above
    from cnnbook.training.evaluation import float32_copy  # imports Keras, as above

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = runs._Log(out / "progress.log", verbose)
    command = command or "python -m cnnbook.resnet.experiments converged"
    (x_train, y_train), (x_test, y_test), (x_lesion, y_lesion) = runs._run_images(config)
    x_eval, y_eval = x_test[: config.eval_images], y_test[: config.eval_images]
    dataset = runs.dataset_description(len(x_train), len(x_test))
    dataset.update(eval_images=int(len(x_eval)), lesion_images=int(len(x_lesion)))
    policy = train.fast_dtype_policy() if config.precision == "auto" else config.precision
    code = runs.code_state()
    rule = plateau.PlateauRule(**config.rule)

    previous = runs._read_json(out / "provenance.json")
    if previous and previous.get("config") != _config_from(asdict(config)):
        raise ValueError(
            f"{out} holds results of another configuration (see its provenance.json): choose "
            "another --out folder, or delete that one to start afresh")
    if previous and previous.get("dtype_policy") not in (None, policy):
        raise ValueError(
            f"{out} was trained in {previous['dtype_policy']}, this machine would train in "
            f"{policy}: finish it where it started, or choose another --out folder")
    # a checkpoint written under a rule that a recorded change replaced continues under this one
    earlier_rules = [plateau.PlateauRule(**change["rule_before"])
                     for change in previous.get("config_changes", [])]
    histories = runs._read_json(out / "histories.json")
    lesions = runs._read_json(out / "lesion.json")
    seconds: dict[str, float] = dict(previous.get("seconds", {}))
    sessions = list(previous.get("sessions", []))
    machine = machine_description()
    sessions.append({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "code": code,
                     "device": {key: machine[key] for key in ("device", "cpu", "cpu_id", "cores")},
                     "software": {key: machine[key] for key in ("tensorflow", "keras")}})

    def record(complete: bool) -> dict:
        entry = runs.provenance(command, config, dataset, seconds, policy, code)
        # changes of rule recorded by hand are kept, as the file holds them now (an entry
        # corrected while this run trains is not overwritten by the copy read at its start)
        changes = runs._read_json(out / "provenance.json").get("config_changes")
        if changes:
            entry["config_changes"] = changes
        entry.update(complete=complete, sessions=sessions,
                     networks_done=[name for name in config.names if name in histories],
                     lesions_done=[name for name in config.lesion_networks if name in lesions])
        runs._write_json(out / "provenance.json", entry)
        return entry

    log(f"start: {command}; networks {config.names}, recipe {config.recipe} until the training "
        f"error plateaus ({config.rule}), dtype policy {policy}, {len(x_train)} training images")
    record(False)
    for kind, depth in config.networks:
        name = runs.network_name(kind, depth)
        weights = out / f"{name}.keras"
        # trained; its weights are needed only while its lesion study is still to run (the
        # committed run leaves out the plain network's, whose study is done)
        needs_weights = name in config.lesion_networks and name not in lesions
        if name in histories and (not needs_weights or weights.is_file()):
            log(f"{name}: already trained, skipped")
            # a run stopped between writing the results and removing the checkpoint
            shutil.rmtree(out / "checkpoints" / name, ignore_errors=True)
        else:
            with train.fast_precision(policy):
                keras.utils.set_random_seed(config.seed)
                model = runs.build_network(kind, depth)
            checkpoint = out / "checkpoints" / name
            resuming = (checkpoint / "state.json").is_file()
            log(f"{name}: {'resuming' if resuming else 'training'}")

            def on_epoch(row, name=name):
                log(f"{name} epoch {row['epoch']} (stage {row['stage']}, lr "
                    f"{row['learning_rate']:g}): " + " ".join(
                        f"{key} {value:.4f}" for key, value in row.items()
                        if key not in ("epoch", "stage", "learning_rate", "seconds"))
                    + f" ({row['seconds']:.1f} s, load {os.getloadavg()[0]:.1f})")

            result = plateau.fit_until_plateau(
                model, (x_train, y_train), val=(x_eval, y_eval), recipe=config.recipe,
                batch_size=config.batch_size, rule=rule, seed=config.seed, checkpoint=checkpoint,
                on_epoch=on_epoch, earlier_rules=earlier_rules)
            # every session's epochs, an interrupted one's included
            train_seconds = sum(result["history"]["seconds"])
            trained = float32_copy(model)
            test_accuracy = lesion.accuracy(trained, x_test, y_test)
            train_accuracy = lesion.accuracy(trained, x_train, y_train)
            history = runs._history(model, result["history"], test_accuracy, train_accuracy,
                                    train_seconds, config)
            history.update(stopped=result["stopped"], stage_epochs=result["stage_epochs"],
                           learning_rates=result["learning_rates"])
            if result["rule_changes"]:  # trained partly under a rule since replaced
                history["rule_changes"] = result["rule_changes"]
            histories[name] = history
            seconds[f"train_{name}"] = round(train_seconds, 1)
            if name in config.save_weights:
                trained.save(weights)  # an uncompiled float32 copy: no optimizer state
            runs._write_json(out / "histories.json", histories)
            record(False)
            shutil.rmtree(checkpoint, ignore_errors=True)
            log(f"{name}: {result['epochs']} epochs, stopped at {result['stopped']}; test "
                f"accuracy {test_accuracy:.4f}, training accuracy (unaugmented) "
                f"{train_accuracy:.4f}, {train_seconds:.0f} s")
        if name in config.lesion_networks:
            if name in lesions and lesions[name].get("images") == len(y_lesion):
                log(f"lesions of {name}: already done, skipped")
                continue
            model = float32_copy(keras.models.load_model(weights, safe_mode=True))
            log(f"lesions of {name}: running")
            start = time.perf_counter()
            study = runs._lesion_record(model, x_lesion, y_lesion, config)
            x_diagnostic = x_lesion[: config.diagnostic_images]
            y_diagnostic = y_lesion[: config.diagnostic_images]
            study["gradient_norms"] = lesion.block_gradient_norms(
                model, x_diagnostic, y_diagnostic, training=False)
            study["diagnostic_images"] = int(len(y_diagnostic))
            study["branch_ratios"] = (lesion.branch_ratios(model, x_lesion) if kind != "plain"
                                      else [])
            lesions[name] = study
            seconds[f"lesion_{name}"] = round(time.perf_counter() - start, 1)
            runs._write_json(out / "lesion.json", lesions)
            record(False)
            log(f"lesions of {name}: done in {seconds[f'lesion_{name}']:.0f} s")
    runs._write_json(out / "lesion.json", lesions)
    runs._write_json(out / "histories.json", histories)
    entry = record(True)
    log("complete")
    return {"histories": histories, "lesion": lesions, "provenance": entry}


def load_converged_results(folder: Path | str = CONVERGED_DIR) -> dict:
    """``{"histories", "lesion", "provenance"}`` of a converged run. A run that has not finished
    (``"complete": false`` in its provenance) may lack the histories or lesion studies it has not
    reached: they are empty. ``FileNotFoundError`` naming the command when the provenance is
    missing, or a finished run lacks a file."""
    folder = Path(folder)
    provenance_path = folder / "provenance.json"
    command = f"run `python -m cnnbook.resnet.experiments converged --out {folder}`"
    if not provenance_path.is_file():
        raise FileNotFoundError(f"{provenance_path} is missing: {command}")
    results = {"provenance": json.loads(provenance_path.read_text())}
    for key in ("histories", "lesion"):
        path = folder / f"{key}.json"
        if path.is_file():
            results[key] = json.loads(path.read_text())
        elif results["provenance"].get("complete"):
            raise FileNotFoundError(f"{path} is missing from a finished run: {command}")
        else:
            results[key] = {}
    return results

