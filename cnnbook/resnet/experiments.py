"""The book's expensive experiments, run by hand; their small results are committed in ``results/``.

Pages never train for minutes: they load what this script wrote, and run only tiny live versions.
Every run writes, next to its results, a ``provenance.json`` that says what data, how many epochs,
which device and which software produced them, and the command that reproduces them::

    python -m cnnbook.resnet.experiments resnet [--tiny] [--epochs N] [--out results/resnet]
    python -m cnnbook.resnet.experiments reevaluate [--out results/resnet]
    python -m cnnbook.resnet.experiments converged [--tiny] [--out results/resnet_converged]

``converged`` (:mod:`cnnbook.resnet.converged`) trains the chapter's networks and a ResNet-110
until their training error plateaus, resumably, and lesions the converged ones.

``reevaluate`` measures again, in float32, every number of a finished run that its saved networks
can give (test and training accuracy, lesion studies) and saves those networks as float32 copies:
for results whose networks were evaluated in mixed precision (``evaluation_dtype_policy`` in
``histories.json`` and ``lesion.json`` says how each number was measured).

``resnet`` (chapter "Residual networks", ``book/resnet.md``):

1. trains plain and residual CIFAR networks of He et al. at depths 20 and 56 with the ``fast``
   recipe of :func:`cnnbook.training.train.fit_cifar` (bfloat16 where the CPU has it) and writes
   their
   training curves, test accuracy and **training** accuracy of the final model on the unaugmented
   training images (``histories.json``): the degradation problem is about training error. The
   residual networks are the pre-activation ones (``resnet_cifar(preact=True)``, He et al.
   2016), in which nothing follows the addition, so that the unrolled view of Veit et al. is
   exact for the very networks whose degradation curves the chapter shows;
2. saves the trained networks (``{network}.keras``; only those the chapter loads are committed)
   as float32 copies (:func:`cnnbook.training.evaluation.float32_copy`), and measures every
   accuracy it records with them: trained in bfloat16 where that is faster, evaluated in float32,
   so that the committed numbers do not depend on the CPU's bfloat16 path (AMX on Intel and
   AVX-512 BF16 on AMD round differently);
3. runs the lesion studies of Veit et al. 2016 on the 56-layer pre-activation and plain networks
   with :mod:`cnnbook.resnet.lesion` (``lesion.json``): delete each block in turn, delete ``k``
   random
   blocks and swap ``k`` random pairs of blocks, ``repeats`` (at least 10) random draws per
   ``k``, each curve with its spread (:func:`cnnbook.resnet.lesion.curve_summary`: mean, standard
   deviation, minimum and maximum over the draws).

Each network's results are written as soon as it is trained (and each lesion study as soon as it
is done), with ``provenance.json`` saying which are complete (``"complete": false`` until the
last one): a partial run is usable, and running the same command again skips every network whose
results and weights are already there for the same configuration. Progress goes to
``progress.log`` in the output folder (one line per epoch).

The data come from :func:`cnnbook.course.data.load_cifar10` (the offline subset when
``CNNBOOK_DATA`` is
set; ``provenance.json`` records the SHA-256 of its files and their paths relative to
``CNNBOOK_DATA``, never a folder of the machine). ``--tiny`` runs the whole pipeline in a minute
on a few hundred images with depth-14 networks: the test suite runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from cnnbook.counting.speed import machine_description
from cnnbook.resnet import converged, lesion
from cnnbook.resnet.runs import (  # noqa: F401 (re-exported: the names of one run module)
    EVALUATION_DTYPE_POLICY,
    KINDS,
    RESULTS_DIR,
    SOURCE_MODULES,
    _epoch_logger,
    _history,
    _lesion_record,
    _Log,
    _read_json,
    _run_images,
    _write_json,
    build_network,
    code_state,
    dataset_description,
    network_name,
    parse_network_name,
    provenance,
)

__all__ = [
    "RESULTS_DIR",
    "KINDS",
    "ResnetConfig",
    "FULL_RESNET",
    "TINY_RESNET",
    "network_name",
    "parse_network_name",
    "build_network",
    "dataset_description",
    "provenance",
    "run_resnet",
    "reevaluate_resnet",
    "load_resnet_results",
    "main",
]

@dataclass(frozen=True)
class ResnetConfig:
    """What ``python -m cnnbook.resnet.experiments resnet`` trains and measures.

    ``networks``: ``(kind, depth)`` pairs trained in this order (``kind`` one of
    :data:`cnnbook.resnet.runs.KINDS`).
    ``train_images``/``test_images``: how many of the loaded training images to train on and how
    many test images to measure with (``None``: all); the subsets are prefixes, which are
    class-balanced in the course's offline data. ``eval_images``: the test images scored after
    every epoch (the curves). ``lesion_images``: the test images every lesion measurement scores.
    ``lesion_networks``: the networks (by :func:`cnnbook.resnet.runs.network_name`) whose lesion
    studies are run.
    ``deletion_counts``/``swap_counts``: the ``k`` of the deletion and reordering curves (counts
    above what a network allows are left out); ``repeats``: random draws per ``k``.
    ``precision``: ``"auto"`` (:func:`cnnbook.training.train.fast_dtype_policy`) or a Keras dtype
    policy.
    """

    networks: tuple[tuple[str, int], ...] = (("plain", 20), ("preact", 20), ("plain", 56),
                                             ("preact", 56))
    epochs: int = 20
    batch_size: int = 128
    recipe: str = "fast"
    precision: str = "auto"
    train_images: int | None = None
    test_images: int | None = None
    eval_images: int = 2000
    lesion_images: int = 1000
    lesion_networks: tuple[str, ...] = ("preact56", "plain56")
    deletion_counts: tuple[int, ...] = (1, 2, 4, 6, 8, 12, 16, 20)
    swap_counts: tuple[int, ...] = (1, 2, 4, 8, 16)
    repeats: int = 10
    save_weights: tuple[str, ...] = ("preact20", "preact56")
    seed: int = 0
    tiny: bool = False

    def __post_init__(self):
        names = []
        for pair in self.networks:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"networks must hold (kind, depth) pairs, got {pair!r}")
            names.append(network_name(*pair))
        if len(set(names)) != len(names):
            raise ValueError(f"networks lists a network twice: {names}")
        for field in ("lesion_networks", "save_weights"):
            unknown = [name for name in getattr(self, field) if name not in names]
            if unknown:
                raise ValueError(f"{field} names networks that are not trained: {unknown}; "
                                 f"networks are {names}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")

    @property
    def names(self) -> list[str]:
        """The networks' names in training order."""
        return [network_name(kind, depth) for kind, depth in self.networks]


FULL_RESNET = ResnetConfig()
"""The configuration whose results ``results/resnet`` holds. 20 epochs of the ``fast`` recipe
(1,560 steps of 128 images, every network trained to the end of its one-cycle schedule):
ResNet-20 reaches 76.1-76.4% in 20 epochs with it against 78.5% in 36 (``benchmarks/README.md``),
two points short of that plateau, while the four networks (the two 56-layer ones cost about three
times ResNet-20 each) and the lesion studies fit in about an hour of a shared 2-core CPU. With
more time, ``--epochs 36`` runs the recipe's tuned budget."""

TINY_RESNET = ResnetConfig(
    networks=(("plain", 14), ("preact", 14)), epochs=1, batch_size=64, train_images=256,
    test_images=256, eval_images=128, lesion_images=64, lesion_networks=("preact14", "plain14"),
    deletion_counts=(1, 2, 40), swap_counts=(1, 2), repeats=2, save_weights=("preact14",),
    tiny=True,
)
"""A configuration that runs every step in about a minute (for the tests); its numbers mean
nothing."""


# --- The resnet experiment ----------------------------------------------------------------------


def _same_run(history: dict, config: ResnetConfig) -> bool:
    return (history.get("epochs") == config.epochs and history.get("recipe") == config.recipe
            and history.get("batch_size") == config.batch_size)


def run_resnet(config: ResnetConfig = FULL_RESNET, out: Path | str = RESULTS_DIR / "resnet",
               command: str | None = None, verbose: int = 0) -> dict:
    """Train, save and lesion as :class:`ResnetConfig` says; write the result files to ``out``
    after every network and every lesion study, and return them as a dict (the same as
    :func:`load_resnet_results` reads back). Networks whose history (same epochs, recipe and
    batch size) and weights are already in ``out`` are not trained again: their weights are
    loaded for the lesion studies; lesion studies already in ``out`` are kept."""
    # slow to import (Keras, and train, which imports it): only when training (see build_network)
    import keras

    from cnnbook.training import train  # imports Keras, as above
    from cnnbook.training.evaluation import float32_copy  # imports Keras, as above

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / "progress.log", verbose)
    command = command or "python -m cnnbook.resnet.experiments resnet"
    (x_train, y_train), (x_test, y_test), (x_lesion, y_lesion) = _run_images(config)
    x_eval, y_eval = x_test[: config.eval_images], y_test[: config.eval_images]
    dataset = dataset_description(len(x_train), len(x_test))
    dataset.update(eval_images=int(len(x_eval)), lesion_images=int(len(x_lesion)))
    policy = train.fast_dtype_policy() if config.precision == "auto" else config.precision
    code = code_state()

    previous = _read_json(out / "provenance.json")
    if previous and previous.get("config") != json.loads(json.dumps(asdict(config))):
        raise ValueError(
            f"{out} holds results of another configuration (see its provenance.json): choose "
            "another --out folder, or delete that one to start afresh"
        )
    histories = _read_json(out / "histories.json")
    lesions = _read_json(out / "lesion.json")
    seconds: dict[str, float] = dict(previous.get("seconds", {}))

    def record(complete: bool) -> dict:
        entry = provenance(command, config, dataset, seconds, policy, code)
        entry["complete"] = complete
        entry["networks_done"] = [name for name in config.names if name in histories]
        entry["lesions_done"] = [name for name in config.lesion_networks if name in lesions]
        _write_json(out / "provenance.json", entry)
        return entry

    log(f"start: {command}; networks {config.names}, {config.epochs} epochs of {config.recipe}, "
        f"dtype policy {policy}, {len(x_train)} training images")
    record(False)
    for kind, depth in config.networks:
        name = network_name(kind, depth)
        weights = out / f"{name}.keras"
        if name in histories and _same_run(histories[name], config) and (
                name not in config.lesion_networks or weights.is_file()):
            log(f"{name}: already trained, skipped")
            continue
        with train.fast_precision(policy):
            keras.utils.set_random_seed(config.seed)
            model = build_network(kind, depth)
        log(f"{name}: training")
        start = time.perf_counter()
        history = train.fit_cifar(
            model, (x_train, y_train), val=(x_eval, y_eval), epochs=config.epochs,
            batch_size=config.batch_size, recipe=config.recipe, verbose=0, seed=config.seed,
            callbacks=[_epoch_logger(name, log)],
        )
        train_seconds = time.perf_counter() - start
        # A fresh, uncompiled float32 copy (the weights without the optimizer's state): what is
        # measured and saved, whatever precision the network trained in.
        trained = float32_copy(model)
        test_accuracy = lesion.accuracy(trained, x_test, y_test)
        train_accuracy = lesion.accuracy(trained, x_train, y_train)
        histories[name] = _history(model, _as_dict(history), test_accuracy, train_accuracy,
                                   train_seconds, config)
        seconds[f"train_{name}"] = round(train_seconds, 1)
        if name in config.save_weights or name in config.lesion_networks:
            trained.save(weights)
        _write_json(out / "histories.json", histories)
        record(False)
        log(f"{name}: test accuracy {test_accuracy:.4f}, training accuracy (unaugmented) "
            f"{train_accuracy:.4f}, {train_seconds:.0f} s")

    for name in config.lesion_networks:
        if name in lesions and lesions[name].get("images") == len(y_lesion):
            log(f"lesions of {name}: already done, skipped")
            continue
        model = float32_copy(keras.models.load_model(out / f"{name}.keras", safe_mode=True))
        log(f"lesions of {name}: running")
        start = time.perf_counter()
        lesions[name] = _lesion_record(model, x_lesion, y_lesion, config)
        seconds[f"lesion_{name}"] = round(time.perf_counter() - start, 1)
        _write_json(out / "lesion.json", lesions)
        record(False)
        log(f"lesions of {name}: done in {seconds[f'lesion_{name}']:.0f} s")
    _write_json(out / "lesion.json", lesions)
    entry = record(True)
    log("complete")
    return {"histories": histories, "lesion": lesions, "provenance": entry}


def reevaluate_resnet(out: Path | str = RESULTS_DIR / "resnet", verbose: int = 0) -> dict:
    """Measure again in float32 the numbers of the run in ``out`` that its saved networks give:
    each saved network's test accuracy and training accuracy (``histories.json``) and its lesion
    study (``lesion.json``), on the images of the run's configuration; save each network as its
    float32 copy. A number replaced keeps its old value under ``"before_reevaluation"``; numbers
    of networks without saved weights stay as they were, with the precision they were measured
    in. ``provenance.json`` records the re-evaluation (command, date, code, machine). Returns the
    results as :func:`load_resnet_results` reads them."""
    # slow to import (Keras): only when networks are loaded (see run_resnet)
    import keras

    import cnnbook.course.layers  # noqa: F401 (as above; registers the saved networks' layers)
    from cnnbook.training.evaluation import float32_copy  # imports Keras, as above

    out = Path(out)
    results = load_resnet_results(out)
    histories, lesions, entry = results["histories"], results["lesion"], results["provenance"]
    config = ResnetConfig(**{  # the run's own configuration, its lists as tuples
        key: tuple(tuple(item) if isinstance(item, list) else item for item in value)
        if isinstance(value, list) else value for key, value in entry["config"].items()})
    log = _Log(out / "progress.log", verbose)
    trained_in = entry.get("dtype_policy", "unknown")
    (x_train, y_train), (x_test, y_test), (x_lesion, y_lesion) = _run_images(config)
    log(f"reevaluate: networks of {out.name} in {EVALUATION_DTYPE_POLICY}")
    for name, history in histories.items():
        history.setdefault("evaluation_dtype_policy", trained_in)
        weights = out / f"{name}.keras"
        if not weights.is_file():
            continue
        model = float32_copy(keras.models.load_model(weights, safe_mode=True))
        before = {key: history[key] for key in ("test_accuracy", "train_accuracy_unaugmented",
                                                "evaluation_dtype_policy")}
        history["test_accuracy"] = lesion.accuracy(model, x_test, y_test)
        history["train_accuracy_unaugmented"] = lesion.accuracy(model, x_train, y_train)
        history["evaluation_dtype_policy"] = EVALUATION_DTYPE_POLICY
        history.setdefault("before_reevaluation", before)
        model.save(weights)
        _write_json(out / "histories.json", histories)
        log(f"{name}: test accuracy {before['test_accuracy']:.4f} -> "
            f"{history['test_accuracy']:.4f}, training accuracy "
            f"{before['train_accuracy_unaugmented']:.4f} -> "
            f"{history['train_accuracy_unaugmented']:.4f}")
        if name in lesions:
            start = time.perf_counter()
            previous = lesions[name]
            lesions[name] = _lesion_record(model, x_lesion, y_lesion, config)
            lesions[name]["before_reevaluation"] = previous.get("before_reevaluation", {
                "baseline": previous["baseline"],
                "single_block": [row["accuracy"] for row in previous["single_block"]],
                "evaluation_dtype_policy": previous.get("evaluation_dtype_policy", trained_in)})
            _write_json(out / "lesion.json", lesions)
            log(f"lesions of {name}: baseline {previous['baseline']:.4f} -> "
                f"{lesions[name]['baseline']:.4f}, {time.perf_counter() - start:.0f} s")
    for study in lesions.values():
        study.setdefault("evaluation_dtype_policy", trained_in)
    _write_json(out / "lesion.json", lesions)
    entry.setdefault("reevaluations", []).append({
        "command": "python -m cnnbook.resnet.experiments reevaluate",
        "evaluation_dtype_policy": EVALUATION_DTYPE_POLICY,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code": code_state(), "device": {key: machine_description()[key] for key in (
            "device", "gpus", "cpu", "cpu_id", "cores", "system")},
    })
    _write_json(out / "provenance.json", entry)
    log("reevaluate: complete")
    return {"histories": histories, "lesion": lesions, "provenance": entry}


def _as_dict(history) -> dict:
    """A Keras ``History`` or a plain dict of per-epoch lists, as a dict."""
    return dict(getattr(history, "history", history))


def load_resnet_results(folder: Path | str = RESULTS_DIR / "resnet") -> dict:
    """The files that :func:`run_resnet` wrote: ``{"histories", "lesion", "provenance"}``.
    Raises ``FileNotFoundError`` naming the command that makes them when one is missing."""
    folder = Path(folder)
    results = {}
    for key in ("histories", "lesion", "provenance"):
        path = folder / f"{key}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run "
                f"`python -m cnnbook.resnet.experiments resnet --out {folder}`"
            )
        results[key] = json.loads(path.read_text())
    return results


# --- Command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cnnbook.resnet.experiments",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="experiment", required=True)
    resnet = commands.add_parser("resnet", help="plain vs residual networks and lesion studies")
    resnet.add_argument("--tiny", action="store_true",
                        help="a few hundred images, depth 8, one epoch: checks the pipeline")
    resnet.add_argument("--epochs", type=int, help="training epochs of every network")
    resnet.add_argument("--out", type=Path, default=None,
                        help="output folder (default: results/resnet; with --tiny a folder "
                             "in the temporary directory, never the repository)")
    resnet.add_argument("--verbose", type=int, default=1, help="0: quiet; 1: a line per step")
    converged = commands.add_parser(
        "converged", help="the networks trained until their training error plateaus, resumable, "
        "and lesion studies of the converged ones (cnnbook.resnet.converged)")
    converged.add_argument("--tiny", action="store_true",
                           help="a few hundred images, depth 8, a few epochs: checks the pipeline")
    converged.add_argument("--out", type=Path, default=None,
                           help="output folder (default: results/resnet_converged; with --tiny a "
                                "folder in the temporary directory, never the repository)")
    converged.add_argument("--verbose", type=int, default=1, help="0: quiet; 1: a line per step")
    again = commands.add_parser("reevaluate", help="measure a finished run's numbers again in "
                                "float32 from its saved networks")
    again.add_argument("--out", type=Path, default=RESULTS_DIR / "resnet",
                       help="the run's folder (default: results/resnet)")
    again.add_argument("--verbose", type=int, default=1, help="0: quiet; 1: a line per step")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    arguments = _parser().parse_args(argv)
    if arguments.experiment == "reevaluate":
        reevaluate_resnet(arguments.out, verbose=arguments.verbose)
        return 0
    if arguments.experiment == "converged":
        out = arguments.out or (Path(tempfile.gettempdir()) / "cnnbook_converged_tiny"
                                if arguments.tiny else converged.CONVERGED_DIR)
        converged.run_converged(
            converged.TINY_CONVERGED if arguments.tiny else converged.FULL_CONVERGED, out,
            command="python -m cnnbook.resnet.experiments converged"
                    + (" --tiny" if arguments.tiny else ""),
            verbose=arguments.verbose)
        return 0
    config = TINY_RESNET if arguments.tiny else FULL_RESNET
    if arguments.epochs is not None:
        if arguments.epochs < 1:
            raise SystemExit(f"--epochs must be >= 1, got {arguments.epochs}")
        config = replace(config, epochs=arguments.epochs)
    default_out = (Path(tempfile.gettempdir()) / "cnnbook_resnet_tiny" if arguments.tiny
                   else RESULTS_DIR / "resnet")
    out = arguments.out or default_out
    # The options that decide the results; the output folder does not (and may be a path of
    # this machine, which provenance never records).
    command = ("python -m cnnbook.resnet.experiments resnet"
               + (" --tiny" if arguments.tiny else "")
               + (f" --epochs {arguments.epochs}" if arguments.epochs is not None else ""))
    run_resnet(config, out, command=command, verbose=arguments.verbose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
