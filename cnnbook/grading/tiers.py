"""The accuracy grader's configuration: which model of an assignment it grades, into which cell,
with which reference network, and the tiers of accuracy that earn points on each training set
(``c.AccuracyGrader`` in ``nbgrader_config.py``, read as nbgrader reads it). Each training set's
tiers name the measured reference run they come from (``benchmarks/reference_tiers.py``), or are
refused until someone measures them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

from cnnbook.grading.reference_networks import REFERENCE_ARCHITECTURES

__all__ = ["AccuracyRule", "accuracy_rule", "checked_tiers", "load_course_config", "points_for",
           "unmatched_shipped_warnings"]


@dataclass(frozen=True)
class AccuracyRule:
    """How ``python -m cnnbook.grading accuracy`` grades one assignment (from
    ``nbgrader_config.py``).

    ``architecture`` names the reference network of
    :data:`~cnnbook.grading.reference_networks.REFERENCE_ARCHITECTURES` that the
    grader builds itself and loads the submitted weights into. ``tiers`` are ``(threshold,
    points)`` pairs, highest threshold first: an accuracy of at least ``threshold`` (a fraction of
    the test images) earns ``points``; below every threshold, zero. ``tiers_source`` says which
    measured reference run the tiers come from (``None``: not measured). ``shipped_models`` are
    the ``.keras`` files the course ships (paths), which a submission must not copy;
    ``unmatched_shipped_patterns`` the patterns of ``c.AccuracyGrader.shipped_models`` that matched
    no file (for those, the copy check compares nothing: the grader warns).
    """

    assignment: str
    notebook: str
    grade_id: str
    model_file: str
    architecture: str
    training_set: str
    tiers: tuple[tuple[float, float], ...]
    tiers_source: str | None = None
    shipped_models: tuple[str, ...] = ()
    unmatched_shipped_patterns: tuple[str, ...] = ()

    @property
    def max_points(self) -> float:
        return max(points for _, points in self.tiers)


def checked_tiers(tiers, where: str) -> tuple[tuple[float, float], ...]:
    """``tiers`` as ``((threshold, points), ...)`` sorted by threshold, highest first; raises
    ``ValueError`` (naming ``where``) unless every threshold is in (0, 1], every points value is
    >= 0 and a higher threshold never earns fewer points."""
    pairs = []
    for tier in tiers:
        try:
            threshold, points = (float(value) for value in tier)
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: every tier must be a pair [threshold, points], got {tier!r}"
            ) from None
        if not 0 < threshold <= 1 or points < 0:
            raise ValueError(
                f"{where}: a threshold is an accuracy in (0, 1] and points are >= 0, got "
                f"{tier!r}; write e.g. [0.9, 4] for 'at least 90% earns 4 points'"
            )
        pairs.append((threshold, points))
    if not pairs:
        raise ValueError(f"{where}: give at least one tier [threshold, points]")
    pairs.sort(reverse=True)
    if any(lower[1] > higher[1] for higher, lower in zip(pairs, pairs[1:], strict=False)):
        raise ValueError(f"{where}: a higher threshold must not earn fewer points, got {pairs}")
    return tuple(pairs)


def points_for(accuracy: float, tiers: Sequence[tuple[float, float]]) -> float:
    """Points of the highest tier whose threshold ``accuracy`` reaches (0 below every tier)."""
    return max((points for threshold, points in tiers if accuracy >= threshold), default=0.0)


def load_course_config(root: Path):
    """The traitlets ``Config`` of ``root/nbgrader_config.py`` (what nbgrader itself reads)."""
    if not (root / "nbgrader_config.py").is_file():
        raise FileNotFoundError(
            f"{root} has no nbgrader_config.py: run from the course root or pass --root"
        )
    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


def accuracy_rule(config, assignment: str, training_set: str | None = None,
                  root: Path | None = None, accept_unmeasured: bool = False) -> AccuracyRule:
    """The :class:`AccuracyRule` of ``assignment`` in ``config.AccuracyGrader``.

    Its ``assignments[assignment]`` entry holds ``model_file``, ``grade_id``, ``architecture``
    (a key of :data:`~cnnbook.grading.reference_networks.REFERENCE_ARCHITECTURES`), optional
    ``notebook`` (default: the assignment
    id; an assignment that grades several models has one entry per model, keyed e.g.
    ``architectures-plain``, whose ``assignment`` names the nbgrader assignment) and ``tiers``: per
    training set, ``{"tiers": [[threshold, points], ...], "source": ...}``
    where ``source`` describes the measured reference run (command, budget, accuracy) or is
    ``None`` while nobody has measured it. ``training_set`` must be given, here (the command's
    ``--training-set``) or as ``c.AccuracyGrader.training_set``: tiers only mean something for
    the data the class trained on. Tiers without a source are refused unless
    ``accept_unmeasured``. ``c.AccuracyGrader.shipped_models`` lists glob patterns (relative to
    ``root``) of the models the course ships.
    """
    settings = config.AccuracyGrader
    assignments = dict(settings.get("assignments", {}))
    if assignment not in assignments:
        raise ValueError(
            f"assignment {assignment!r} has no accuracy grading in nbgrader_config.py; "
            f"c.AccuracyGrader.assignments names {sorted(assignments) or 'none'}"
        )
    entry = assignments[assignment]
    tiers_by_set = entry.get("tiers", {})
    training_set = training_set or settings.get("training_set")
    if not training_set:
        raise ValueError(
            f"name the data the class trained {assignment!r} on: --training-set "
            f"{' or --training-set '.join(sorted(tiers_by_set))} (or set "
            "c.AccuracyGrader.training_set in nbgrader_config.py); the tiers of one set mean "
            "nothing for another"
        )
    if training_set not in tiers_by_set:
        raise ValueError(
            f"training set {training_set!r} has no tiers for {assignment!r}; choose one of "
            f"{sorted(tiers_by_set)} (--training-set or c.AccuracyGrader.training_set)"
        )
    missing = [key for key in ("model_file", "grade_id", "architecture") if key not in entry]
    if missing:
        raise ValueError(
            f"c.AccuracyGrader.assignments[{assignment!r}] lacks {', '.join(missing)}"
        )
    if entry["architecture"] not in REFERENCE_ARCHITECTURES:
        raise ValueError(
            f"c.AccuracyGrader.assignments[{assignment!r}]['architecture'] is "
            f"{entry['architecture']!r}; the grader knows {sorted(REFERENCE_ARCHITECTURES)}"
        )
    tier_set = tiers_by_set[training_set]
    if not isinstance(tier_set, dict) or "tiers" not in tier_set or "source" not in tier_set:
        raise ValueError(
            f"tiers[{training_set!r}] of {assignment!r} must be a dict "
            "{'tiers': [[threshold, points], ...], 'source': 'the measured reference run' or None}"
        )
    source = tier_set["source"]
    if source is None and not accept_unmeasured:
        raise ValueError(
            f"the tiers of {training_set!r} for {assignment!r} were never measured (source None in "
            "nbgrader_config.py): train the reference notebook on that data with the class's "
            "budget, set the tiers from its accuracy and record the run as their source, or pass "
            "--accept-unmeasured-tiers to grade with them anyway"
        )
    root = Path(root) if root is not None else Path.cwd()
    files_by_pattern = {pattern: [path for path in root.glob(pattern) if path.is_file()]
                        for pattern in settings.get("shipped_models", [])}
    shipped = sorted({str(path.resolve()) for paths in files_by_pattern.values() for path in paths})
    return AccuracyRule(
        assignment=entry.get("assignment", assignment),
        notebook=entry.get("notebook", entry.get("assignment", assignment)),
        grade_id=entry["grade_id"],
        model_file=entry["model_file"],
        architecture=entry["architecture"],
        training_set=training_set,
        tiers=checked_tiers(tier_set["tiers"], f"tiers[{training_set!r}]"),
        tiers_source=source,
        shipped_models=tuple(shipped),
        unmatched_shipped_patterns=tuple(pattern for pattern, paths in files_by_pattern.items()
                                         if not paths),
    )


def unmatched_shipped_warnings(rule: AccuracyRule, root: Path) -> list[str]:
    """One warning line per pattern of ``c.AccuracyGrader.shipped_models`` that matched no file
    under ``root``: the instructor must know that the copy check is off for those models."""
    return [f"warning: c.AccuracyGrader.shipped_models pattern {pattern!r} matches no file under "
            f"{root}: submissions are not checked for copies of those models (build or restore "
            "them, or fix the pattern in nbgrader_config.py)"
            for pattern in rule.unmatched_shipped_patterns]
