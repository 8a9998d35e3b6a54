"""What the ResNet chapter's long runs share (:mod:`cnnbook.resnet.experiments` and
:mod:`cnnbook.resnet.converged`): the networks by name, provenance (data by hash, code by commit
and digest, device, software), result files written atomically, the progress log, the images of
a run and the record of a lesion study. ``config`` arguments are either run's configuration (a
dataclass with ``train_images``, ``test_images``, ``lesion_images``, ``deletion_counts``,
``swap_counts``, ``repeats``, ``seed``, ``recipe`` and ``batch_size``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import cnnbook
from cnnbook.counting.speed import machine_description
from cnnbook.course import data
from cnnbook.resnet import lesion

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
"""The repository's ``results/`` folder (the default output of every experiment)."""

KINDS = ("plain", "resnet", "preact")
"""Network kinds: ``plain`` (:func:`cnnbook.nets.models.plain_cifar`), ``resnet`` (the original
post-activation :func:`cnnbook.nets.models.resnet_cifar`) and ``preact`` (``resnet_cifar(depth,
preact=True)``)."""


def network_name(kind: str, depth: int) -> str:
    """``"preact56"``, ``"plain20"``: the key of a network in every result file."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    return f"{kind}{depth}"


def parse_network_name(name: str) -> tuple[str, int]:
    """The inverse of :func:`network_name`: ``"preact56"`` -> ``("preact", 56)``."""
    for kind in KINDS:
        if name.startswith(kind) and name[len(kind):].isdigit():
            return kind, int(name[len(kind):])
    raise ValueError(f"{name!r} is not a network name such as 'plain20' or 'preact56'")


def build_network(kind: str, depth: int):
    """A fresh untrained network of :data:`KINDS` ``kind`` and ``depth`` (in the current dtype
    policy)."""
    # cnnbook.nets.models (and cnnbook.training.train) import Keras, which takes seconds: the
    # pages import this module to read the committed results, so only training imports them
    from cnnbook.nets import models

    network_name(kind, depth)
    if kind == "plain":
        return models.plain_cifar(depth)
    return models.resnet_cifar(depth, preact=kind == "preact")


# --- Provenance ----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


SOURCE_MODULES = ("nets/models", "course/layers", "nets/normalization", "course/data",
                  "training/train", "training/fused_norm", "training/evaluation", "resnet/lesion",
                  "resnet/runs", "resnet/experiments", "training/plateau", "resnet/converged")
"""The cnnbook modules whose code decides the results (their SHA-256 goes in the provenance, so
a result stays traceable even when it was run from uncommitted code)."""


def _module_digests() -> dict:
    package = Path(__file__).resolve().parents[1]
    return {f"{name}.py": _sha256(package / f"{name}.py")[:16] for name in SOURCE_MODULES
            if (package / f"{name}.py").is_file()}


def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "cnnbook"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "cnnbook_modified": None}
    return {"commit": commit, "cnnbook_modified": bool(dirty)}


def dataset_description(num_train: int, num_test: int) -> dict:
    """Where the images came from, without any folder of the machine: with ``CNNBOOK_DATA`` set,
    ``files`` maps each ``.npz`` file's path relative to that folder to its SHA-256; otherwise
    Keras' download of the full data set. And how many images were used."""
    folder = os.environ.get(data.DATA_ENV)
    if folder:
        root = Path(folder).expanduser()
        source = {
            "source": f"{data.DATA_ENV} folder (the course's offline CIFAR-10 subset)",
            "files": {path.relative_to(root).as_posix(): _sha256(path)
                      for path in sorted(root.glob("*.npz"))},
            "paths_relative_to": data.DATA_ENV,
        }
    else:
        source = {"source": "keras.datasets.cifar10 (the full data set)"}
    return {"name": "CIFAR-10", **source, "train_images": int(num_train),
            "test_images": int(num_test)}


def code_state() -> dict:
    """The git commit, whether ``cnnbook/`` had uncommitted changes, and the SHA-256 of the
    modules that decide the results (:data:`SOURCE_MODULES`): taken when a run starts, since the
    files may change on disk while it runs."""
    return {**_git_commit(), "module_sha256": _module_digests()}


def provenance(command: str, config, dataset: dict, seconds: dict,
               precision: str | None = None, code: dict | None = None) -> dict:
    """Everything needed to say where a result came from and to reproduce it (``code``: a
    :func:`code_state` taken when the run started; default: now)."""
    machine = machine_description()
    return {
        "command": command,
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset,
        "config": asdict(config),
        "dtype_policy": precision,
        "device": {key: machine[key]
                   for key in ("device", "gpus", "cpu", "cpu_id", "cores", "system")},
        "software": {
            **{key: machine[key] for key in ("python", "tensorflow", "keras")},
            "numpy": np.__version__,
            "cnnbook": cnnbook.__version__,
            **(code if code is not None else code_state()),
        },
        "seconds": seconds,
    }


def _write_json(path: Path, payload) -> None:
    """Write atomically (a temporary file renamed): an interrupted run never leaves half a file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    os.replace(temporary, path)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


EVALUATION_DTYPE_POLICY = "float32"
"""The precision every recorded accuracy is measured in (see ``reevaluate``)."""


def _history(model, history, test_accuracy: float, train_accuracy: float, seconds: float,
             config) -> dict:
    return {
        "params_trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "epochs": len(history["loss"]),
        "recipe": config.recipe,
        "batch_size": config.batch_size,
        **{key: [float(value) for value in values] for key, values in history.items()},
        "test_accuracy": float(test_accuracy),
        "train_accuracy_unaugmented": float(train_accuracy),
        "evaluation_dtype_policy": EVALUATION_DTYPE_POLICY,
        "train_seconds": round(seconds, 1),
    }


class _Log:
    """Progress lines to ``progress.log`` (and to stdout when verbose), flushed at once."""

    def __init__(self, path: Path, verbose: int):
        self.path, self.verbose = path, verbose

    def __call__(self, message: str) -> None:
        line = f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {message}"
        with open(self.path, "a") as stream:
            stream.write(line + "\n")
        if self.verbose:
            print(line, flush=True)


def _epoch_logger(name: str, log: _Log):
    import keras  # slow to import: only when training (see build_network)

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            values = " ".join(f"{key} {value:.4f}" for key, value in (logs or {}).items())
            log(f"{name} epoch {epoch + 1}: {values} ({time.perf_counter() - self.start:.1f} s, "
                f"load {os.getloadavg()[0]:.1f})")

    return EpochLog()


def _run_images(config):
    """The training, test and lesion images (with labels) of a run of ``config``: prefixes of
    what :func:`cnnbook.course.data.load_cifar10` loads."""
    (x_train, y_train), (x_test, y_test) = data.load_cifar10()
    x_train, y_train = x_train[: config.train_images], y_train[: config.train_images]
    x_test, y_test = x_test[: config.test_images], y_test[: config.test_images]
    return ((x_train, y_train), (x_test, y_test),
            (x_test[: config.lesion_images], y_test[: config.lesion_images]))


def _lesion_record(model, images, labels, config) -> dict:
    candidates = len(lesion.deletable_blocks(model, include_downsampling=False))
    deletion_counts = [count for count in config.deletion_counts if count <= candidates]
    can_swap = bool(lesion.swappable_pairs(model))
    deletion = lesion.deletion_curve(model, images, labels, [0, *deletion_counts],
                                     repeats=config.repeats, seed=config.seed)
    reorder = (lesion.reorder_curve(model, images, labels, [0, *config.swap_counts],
                                    repeats=config.repeats, seed=config.seed) if can_swap else [])
    return {
        "baseline": lesion.accuracy(model, images, labels),
        "images": int(len(labels)),
        "single_block": lesion.lesion_study(model, images, labels),
        "deletion_curve": deletion,
        "deletion_summary": lesion.curve_summary(deletion, "num_deleted"),
        "reorder_curve": reorder,
        "reorder_summary": lesion.curve_summary(reorder, "num_swaps") if reorder else [],
        "evaluation_dtype_policy": EVALUATION_DTYPE_POLICY,  # callers pass a float32_copy
    }
