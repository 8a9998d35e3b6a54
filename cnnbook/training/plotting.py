"""Plots of a training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_history"]


def plot_history(history, title: str | None = None, path: str | Path | None = None):
    """Loss and accuracy per epoch (training, and validation when present) side by side; returns
    the matplotlib figure (saved to ``path`` if given)."""
    import matplotlib.pyplot as plt  # slow to import: only when a run is plotted

    record = history.history if hasattr(history, "history") else dict(history)
    if "loss" not in record:
        raise ValueError("history must be a keras History (or its .history dict) with a 'loss'")
    epochs = np.arange(1, len(record["loss"]) + 1)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for axis, metric, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for prefix, name in (("", "training"), ("val_", "validation")):
            if prefix + metric in record:
                axis.plot(epochs, record[prefix + metric], marker="o", markersize=3, label=name)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure
