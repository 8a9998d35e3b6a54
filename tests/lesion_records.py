"""A check that test_experiments and test_converged share: each summary row of a committed lesion
study's deletion and reordering curves is the mean, spread and range of its draws."""

from __future__ import annotations

import numpy as np
import pytest


def assert_curves_summarise_their_draws(name: str, study: dict, repeats: int) -> None:
    """Every ``k`` of both curves has ``repeats`` draws (one for ``k = 0``), and its summary row
    holds their mean, standard deviation, minimum and maximum."""
    for curve, summary, key in (("deletion_curve", "deletion_summary", "num_deleted"),
                                ("reorder_curve", "reorder_summary", "num_swaps")):
        for row in study[summary]:
            accuracies = [r["accuracy"] for r in study[curve] if r[key] == row[key]]
            assert len(accuracies) == (1 if row[key] == 0 else repeats), (name, curve, row)
            assert row["mean"] == pytest.approx(np.mean(accuracies))
            assert row["std"] == pytest.approx(np.std(accuracies))
            assert (row["min"], row["max"]) == (min(accuracies), max(accuracies))
