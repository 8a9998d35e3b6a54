"""A similarity report for the instructor after grading: pairs of students whose answer code is
unusually alike, and networks that compute the same function. A report to read, never a grade:
nothing here writes to the gradebook.

::

    python -m cnnbook.grading similarity sizing            # from the course root

**Code.** From each ``submitted/<student>/<id>/<id>.ipynb`` only the answer cells are read: the
code cells that the assignment's source marks as solutions (``nbgrader.solution``), found by
their grade id in the submission (a student's own extra cells and the instructor's test cells do
not count). The release's version of those cells (the code the students were given: signatures,
docstrings, ``raise NotImplementedError()``) is boilerplate, which copydetect leaves out of every
comparison. copydetect (winnowing, the algorithm of Stanford's MOSS: Schleimer, Wilkerson and Aiken
2003) fingerprints each student's answers as k-grams of tokens with names and comments
normalised, so renamed variables and rewritten comments do not hide a copy; a pair's similarity is
the share of one student's fingerprints found in the other's. Pairs above ``--threshold`` are
listed, most similar first, and copydetect's HTML report (both codes side by side, the common
parts highlighted) is written to ``similarity/<id>.html`` in the course root.

Short answers to a narrow question resemble each other honestly (two correct one-line formulas
may be the same tokens): the threshold and ``noise_tokens`` (the shortest run of tokens that
counts, copydetect's ``noise_t``) are for the instructor to set, and every listed pair is a
question for a conversation, not a finding.

**Networks.** ``python -m cnnbook.grading accuracy`` compares the submitted networks' outputs on
the same test images and records the groups that compute (nearly) the same function in
``similarity/<entry>-same-function.json`` (:func:`record_same_function`); the report lists them
beside the code pairs.

A submitted notebook that is not a regular file, is larger than ``max_notebook_bytes`` or is not
a notebook is left out with the reason, as is a student with no answer code: the report names
them.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SimilarPair", "answer_cell_ids", "answer_code", "similar_pairs", "similarity_report",
           "record_same_function", "read_same_function", "MAX_NOTEBOOK_BYTES"]

MAX_NOTEBOOK_BYTES = 20 * 2**20
"""A submitted notebook larger than this is not read (its outputs are not needed here)."""


@dataclass(frozen=True)
class SimilarPair:
    """Two students and the share of each one's answer fingerprints found in the other's."""

    first: str
    second: str
    first_share: float
    second_share: float
    common_tokens: int

    @property
    def similarity(self) -> float:
        return max(self.first_share, self.second_share)


def _notebook_cells(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES) -> list[dict]:
    """The cells of the notebook at ``path``, read without following a link; ``ValueError``
    naming the problem when it is not a regular file, too large, or not a notebook."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        raise ValueError("no submitted notebook") from None
    if not stat.S_ISREG(status.st_mode):
        raise ValueError("the submitted notebook is a link or not a regular file")
    if status.st_size > max_bytes:
        raise ValueError(f"the submitted notebook is larger than {max_bytes} bytes")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    with os.fdopen(os.open(path, flags), encoding="utf-8", errors="replace") as handle:
        try:
            notebook = json.loads(handle.read(max_bytes + 1))
        except (ValueError, RecursionError):  # RecursionError: nested a million deep
            raise ValueError("the submitted notebook is not valid JSON") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise ValueError("the submitted file has no list of cells: not a notebook")
    return [cell for cell in cells if isinstance(cell, dict)]


def _grade_id(cell: dict) -> str | None:
    metadata = cell.get("metadata")
    nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    return grade_id if isinstance(grade_id, str) else None


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def answer_cell_ids(source_notebook: Path) -> list[str]:
    """Grade ids of the answer code cells of an assignment's source notebook: code cells with
    ``nbgrader.solution`` true, in order."""
    ids = []
    for cell in _notebook_cells(Path(source_notebook)):
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and nbgrader.get("solution") and _grade_id(cell):
            ids.append(_grade_id(cell))
    return ids


def answer_code(notebook: Path, ids: list[str]) -> str:
    """The code of the cells of ``notebook`` whose grade id is in ``ids``, in ``ids``' order, one
    cell after another (a cell that is missing contributes nothing)."""
    by_id = {}
    for cell in _notebook_cells(Path(notebook)):
        if cell.get("cell_type") == "code" and _grade_id(cell) in ids:
            by_id.setdefault(_grade_id(cell), _source(cell))
    return "\n\n".join(by_id[grade_id] for grade_id in ids if grade_id in by_id)


def similar_pairs(answers: dict[str, str], given: str, threshold: float = 0.5, *,
                  noise_tokens: int = 25, report: Path | None = None) -> list[SimilarPair]:
    """Pairs of students (keys of ``answers``: their answer code) whose similarity (the larger of
    the two shares of fingerprints in common) exceeds ``threshold``, most similar first, with
    ``given`` (the release's code of the answer cells) left out of every comparison. With
    ``report``, copydetect's HTML report is written there."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold is a share between 0 and 1, got {threshold!r}")
    # copydetect imports matplotlib and Jinja: only when a report is made
    from copydetect import CopyDetector  # see above

    with tempfile.TemporaryDirectory(prefix="cnnbook-similarity-") as folder:
        folder = Path(folder)
        (folder / "given").mkdir()
        (folder / "given" / "given.py").write_text(given, encoding="utf-8")
        (folder / "answers").mkdir()
        names = {}
        for index, (student, code) in enumerate(sorted(answers.items())):
            path = folder / "answers" / f"{index:05d}_{_safe(student)}.py"
            path.write_text(code, encoding="utf-8")
            names[str(path)] = student
        detector = CopyDetector(
            boilerplate_dirs=[str(folder / "given")], extensions=["py"], noise_t=noise_tokens,
            guarantee_t=noise_tokens, display_t=threshold, autoopen=False, silent=True,
            out_file=str(report) if report else str(folder / "report.html"))
        for path in names:
            detector.add_file(path)
        if len(names) < 2:
            return []
        detector.run()
        pairs = []
        for first_share, second_share, first, second, *_, common in (
                detector.get_copied_code_list()):
            pairs.append(SimilarPair(names[first], names[second], round(float(first_share), 3),
                                     round(float(second_share), 3), int(common)))
        if report is not None:
            Path(report).parent.mkdir(parents=True, exist_ok=True)
            detector.generate_html_report()
    return sorted(pairs, key=lambda pair: (-pair.similarity, pair.first, pair.second))


def _safe(student: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in student)[:80]


def _same_function_path(course_root: Path, entry: str) -> Path:
    return Path(course_root) / "similarity" / f"{entry}-same-function.json"


def record_same_function(course_root: Path, entry: str, groups: list[list[str]]) -> Path:
    """Write the groups of students whose networks of ``entry`` compute the same function (from
    ``python -m cnnbook.grading accuracy``) where the report reads them."""
    path = _same_function_path(course_root, entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sorted(sorted(group) for group in groups), indent=1) + "\n",
                    encoding="utf-8")
    return path


def read_same_function(course_root: Path, assignment: str) -> dict[str, list[list[str]]]:
    """Per model entry of ``assignment`` (``resnet``, ``architectures-plain``...), the recorded
    groups of students whose networks compute the same function."""
    folder = Path(course_root) / "similarity"
    found = {}
    for path in sorted(folder.glob("*-same-function.json")) if folder.is_dir() else []:
        entry = path.name.removesuffix("-same-function.json")
        if entry == assignment or entry.startswith(f"{assignment}-"):
            found[entry] = json.loads(path.read_text(encoding="utf-8"))
    return found


def similarity_report(course_root: Path, assignment: str, source_notebook: Path,
                      release_notebook: Path, submitted: dict[str, Path], *,
                      threshold: float = 0.5, noise_tokens: int = 25) -> dict:
    """The whole report for one assignment: ``pairs`` (:func:`similar_pairs` over every
    submission's answer code), ``left_out`` (student: reason), ``same_function`` (recorded
    groups per model entry) and ``html`` (the path of copydetect's report, or ``None`` when
    fewer than two students had answer code)."""
    ids = answer_cell_ids(source_notebook)
    given = answer_code(release_notebook, ids)
    answers, left_out = {}, {}
    for student, notebook in sorted(submitted.items()):
        try:
            code = answer_code(notebook, ids)
        except ValueError as error:
            left_out[student] = str(error)
            continue
        if code.strip() == given.strip() or not code.strip():
            left_out[student] = "no answer code beyond what the release gives"
            continue
        answers[student] = code
    html = Path(course_root) / "similarity" / f"{assignment}.html"
    pairs = similar_pairs(answers, given, threshold, noise_tokens=noise_tokens,
                          report=html if len(answers) >= 2 else None)
    return {"assignment": assignment, "threshold": threshold, "noise_tokens": noise_tokens,
            "compared": sorted(answers), "pairs": pairs, "left_out": left_out,
            "same_function": read_same_function(course_root, assignment),
            "html": html if len(answers) >= 2 else None}
