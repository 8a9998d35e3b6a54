"""The book's expensive experiments, run by hand; their small results are committed in ``results/``.

Pages never train for minutes: they load what this script wrote, and run only tiny live versions.
Every run writes, next to its results, a ``provenance.json`` that says what data, how many epochs,
which device and which software produced them, and the command that reproduces them::

    python -m cnnbook.experiments resnet [--tiny] [--epochs N] [--out results/resnet]

``resnet`` (chapter "Residual networks", ``book/resnet.md``):

1. trains plain and residual CIFAR networks of He et al. 2015 at two depths (20 and 56) with
   :func:`cnnbook.train.fit_cifar` and writes their training curves (``histories.json``): the
   degradation problem;
2. saves the trained networks whose weights are small (``{network}.keras``);
3. runs the lesion studies of Veit et al. 2016 on the deeper plain and residual pair with
   :mod:`cnnbook.lesion` (``lesion.json``): delete each block in turn, delete ``k`` random blocks,
   swap ``k`` random pairs of blocks.

The data come from :func:`cnnbook.data.load_cifar10` (the offline subset when ``CNNBOOK_DATA`` is
set, which ``provenance.json`` records). ``--tiny`` runs the whole pipeline in seconds on a few
hundred images with depth-8 networks: the test suite runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import cnnbook

__all__ = [
    "RESULTS_DIR",
    "ResnetConfig",
    "FULL_RESNET",
    "TINY_RESNET",
    "network_name",
    "provenance",
    "run_resnet",
    "load_resnet_results",
    "main",
]

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
"""The repository's ``results/`` folder (the default output of every experiment)."""


@dataclass(frozen=True)
class ResnetConfig:
    """What ``python -m cnnbook.experiments resnet`` trains and measures.

    ``train_images``/``test_images``: how many of the loaded training images to train on and how
    many test images to measure with (``None``: all); the subsets are prefixes, which are
    class-balanced in the course's offline data. ``eval_images``: the test images scored after
    every epoch (the curves) and by the lesion studies. ``lesion_depth``: the depth of the plain
    and residual pair that the lesion studies use (one of ``depths``).
    """

    depths: tuple[int, ...] = (20, 56)
    epochs: int = 8
    batch_size: int = 128
    recipe: str = "he2015"
    train_images: int | None = None
    test_images: int | None = None
    eval_images: int = 2000
    lesion_depth: int = 56
    deletion_counts: tuple[int, ...] = (0, 1, 2, 4, 6, 8, 12, 16, 20)
    swap_counts: tuple[int, ...] = (0, 1, 2, 4, 8, 12, 16)
    repeats: int = 3
    save_weights: tuple[str, ...] = ("resnet20", "resnet56")
    seed: int = 0
    tiny: bool = False

    def __post_init__(self):
        if self.lesion_depth not in self.depths:
            raise ValueError(
                f"lesion_depth must be one of depths {self.depths}, got {self.lesion_depth}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


FULL_RESNET = ResnetConfig()
"""The configuration whose results ``results/resnet`` holds."""

TINY_RESNET = ResnetConfig(
    depths=(8,), epochs=1, batch_size=64, train_images=512, test_images=256, eval_images=128,
    lesion_depth=8, deletion_counts=(0, 1), swap_counts=(0, 1), repeats=1,
    save_weights=("resnet8",), tiny=True,
)
"""A configuration that runs every step in seconds (for the tests); its numbers mean nothing."""


def network_name(kind: str, depth: int) -> str:
    """``"resnet56"``, ``"plain20"``: the key of a network in every result file."""
    if kind not in ("plain", "resnet"):
        raise ValueError(f"kind must be 'plain' or 'resnet', got {kind!r}")
    return f"{kind}{depth}"


def _build(kind: str, depth: int):
    from cnnbook import models

    return models.resnet_cifar(depth) if kind == "resnet" else models.plain_cifar(depth)


# --- Provenance ----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


SOURCE_MODULES = ("models", "layers", "data", "train", "lesion", "experiments")
"""The cnnbook modules whose code decides the results (their SHA-256 goes in the provenance, so
a result stays traceable even when it was run from uncommitted code)."""


def _module_digests() -> dict:
    package = Path(__file__).resolve().parent
    return {f"{name}.py": _sha256(package / f"{name}.py")[:16] for name in SOURCE_MODULES
            if (package / f"{name}.py").is_file()}


def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "cnnbook"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "cnnbook_modified": None}
    return {"commit": commit, "cnnbook_modified": bool(dirty)}


def dataset_description(num_train: int, num_test: int) -> dict:
    """Where the images came from: the ``CNNBOOK_DATA`` folder and the SHA-256 of its ``.npz``
    files, or Keras' download of the full data set; and how many images were used."""
    from cnnbook import data

    folder = os.environ.get(data.DATA_ENV)
    if folder:
        files = sorted(Path(folder).expanduser().glob("*.npz"))
        source = {
            "source": f"{data.DATA_ENV} folder (the course's offline CIFAR-10 subset)",
            "folder": str(Path(folder).expanduser().resolve()),
            "files": {path.name: _sha256(path) for path in files},
        }
    else:
        source = {"source": "keras.datasets.cifar10 (the full data set)"}
    return {"name": "CIFAR-10", **source, "train_images": int(num_train),
            "test_images": int(num_test)}


def provenance(command: str, config: ResnetConfig, dataset: dict, seconds: dict) -> dict:
    """Everything needed to say where a result came from and to reproduce it."""
    from cnnbook.speed import machine_description

    machine = machine_description()
    return {
        "command": command,
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset,
        "config": asdict(config),
        "device": {key: machine[key] for key in ("device", "gpus", "cpu", "cores", "system")},
        "software": {
            **{key: machine[key] for key in ("python", "tensorflow", "keras")},
            "numpy": np.__version__,
            "cnnbook": cnnbook.__version__,
            **_git_commit(),
            "module_sha256": _module_digests(),
        },
        "seconds": seconds,
    }


# --- The resnet experiment ----------------------------------------------------------------------


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")


def _history(model, history, test_accuracy: float, seconds: float) -> dict:
    return {
        "params_trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "epochs": len(history["loss"]),
        **{key: [float(value) for value in values] for key, values in history.items()},
        "test_accuracy": float(test_accuracy),
        "train_seconds": round(seconds, 1),
    }


def run_resnet(config: ResnetConfig = FULL_RESNET, out: Path | str = RESULTS_DIR / "resnet",
               command: str | None = None, verbose: int = 0) -> dict:
    """Train, save and lesion as :class:`ResnetConfig` says; write the result files to ``out``
    and return them as a dict (the same as :func:`load_resnet_results` reads back)."""
    import keras

    from cnnbook import data, lesion, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = data.load_cifar10()
    x_train, y_train = x_train[: config.train_images], y_train[: config.train_images]
    x_test, y_test = x_test[: config.test_images], y_test[: config.test_images]
    x_eval, y_eval = x_test[: config.eval_images], y_test[: config.eval_images]
    seconds: dict[str, float] = {}

    histories = {}
    trained = {}
    for depth in config.depths:
        for kind in ("plain", "resnet"):
            name = network_name(kind, depth)
            keras.utils.set_random_seed(config.seed)
            model = _build(kind, depth)
            start = time.perf_counter()
            history = train.fit_cifar(
                model, (x_train, y_train), val=(x_eval, y_eval), epochs=config.epochs,
                batch_size=config.batch_size, recipe=config.recipe, verbose=2 if verbose else 0,
                seed=config.seed,
            )
            train_seconds = time.perf_counter() - start
            test_accuracy = lesion.accuracy(model, x_test, y_test)
            histories[name] = _history(model, _as_dict(history), test_accuracy, train_seconds)
            seconds[f"train_{name}"] = round(train_seconds, 1)
            if verbose:
                print(f"{name}: test accuracy {test_accuracy:.4f} ({train_seconds:.0f} s)")
            if name in config.save_weights:
                # A fresh, uncompiled copy: the weights without the optimizer's state.
                inference_copy = _build(kind, depth)
                inference_copy.set_weights(model.get_weights())
                inference_copy.save(out / f"{name}.keras")
            if depth == config.lesion_depth:
                trained[name] = model
            _write_json(out / "histories.json", histories)  # after each network: a crash keeps it

    lesions = {}
    for name, model in trained.items():
        start = time.perf_counter()
        lesions[name] = {
            "baseline": lesion.accuracy(model, x_eval, y_eval),
            "single_block": lesion.lesion_study(model, x_eval, y_eval),
            "deletion_curve": lesion.deletion_curve(
                model, x_eval, y_eval, [count for count in config.deletion_counts
                                        if count <= len(lesion.deletable_blocks(model, False))],
                repeats=config.repeats, seed=config.seed),
            "reorder_curve": lesion.reorder_curve(
                model, x_eval, y_eval, config.swap_counts, repeats=config.repeats,
                seed=config.seed) if lesion.swappable_pairs(model) else [],
        }
        seconds[f"lesion_{name}"] = round(time.perf_counter() - start, 1)
        if verbose:
            print(f"lesions of {name}: {seconds[f'lesion_{name}']:.0f} s")
    _write_json(out / "lesion.json", lesions)

    command = command or "python -m cnnbook.experiments resnet"
    record = provenance(command, config, dataset_description(len(x_train), len(x_test)),
                        seconds)
    record["dataset"]["eval_images"] = int(len(x_eval))
    _write_json(out / "provenance.json", record)
    return {"histories": histories, "lesion": lesions, "provenance": record}


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
                f"{path} is missing: run `python -m cnnbook.experiments resnet --out {folder}`"
            )
        results[key] = json.loads(path.read_text())
    return results


# --- Command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cnnbook.experiments",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    arguments = _parser().parse_args(argv)
    config = TINY_RESNET if arguments.tiny else FULL_RESNET
    if arguments.epochs is not None:
        if arguments.epochs < 1:
            raise SystemExit(f"--epochs must be >= 1, got {arguments.epochs}")
        config = replace(config, epochs=arguments.epochs)
    default_out = (Path(tempfile.gettempdir()) / "cnnbook_resnet_tiny" if arguments.tiny
                   else RESULTS_DIR / "resnet")
    out = arguments.out or default_out
    command = "python -m cnnbook.experiments " + " ".join(argv)
    run_resnet(config, out, command=command, verbose=arguments.verbose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
