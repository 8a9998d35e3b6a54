"""Helpers of tests/test_course.py: a temporary copy of the course, the real nbgrader commands
run in it, and readers for nbgrader notebooks and the gradebook."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ASSIGNMENTS = ("sizing", "parameters", "resnet")
WITHOUT_FEEDBACK_KERNEL = "--JudgeOutsideKernel.feedback_kernel=False"
"""For ``nbgrader autograde`` runs whose tests read grades, comments and feedback pages but not the
student's own outputs: the grades come from the judge either way (the hostile corpus's second run
checks that they are the same), and the run takes about a third less CPU. The corpus's first run
and the guide's verbatim commands keep the feedback kernel."""

PARTLY_CORRECT = {
    # assignment: (answer cell, text replaced, wrong text, test cells expected to fail)
    "sizing": ("alexnet_answers", '"unused_rows": input_size - last_row_read',
               '"unused_rows": 0', ("test_alexnet_first_layer",)),
    "parameters": ("parameter_rules", "return 4 * channels", "return 2 * channels",
                   ("test_batchnorm_params",)),
}
"""Partly correct submissions (tests/test_course.py, and the hostile corpus's ``good_partial``):
one answer of the solution made wrong, and the test cells that must then fail."""
BLOCK_MARKERS = {
    "solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
    "hidden": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
}


def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def source_of(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def nbgrader_metadata(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_cells(notebook: dict) -> dict[str, dict]:
    """Cells that carry points (autograder tests, manually graded answers, tasks), by grade id."""
    return {
        nbgrader_metadata(cell)["grade_id"]: cell
        for cell in notebook["cells"]
        if nbgrader_metadata(cell).get("grade") or nbgrader_metadata(cell).get("task")
    }


def points_of(notebook: dict, *grade_ids: str) -> float:
    cells = grade_cells(notebook)
    return sum(float(nbgrader_metadata(cells[grade_id])["points"]) for grade_id in grade_ids)


def auto_points(notebook: dict) -> float:
    """Points the autograder can give: code cells of tests."""
    return sum(
        float(nbgrader_metadata(cell)["points"])
        for cell in grade_cells(notebook).values()
        if cell["cell_type"] == "code" and not nbgrader_metadata(cell).get("solution")
    )


def split_protected_lines(notebook: dict) -> tuple[set[str], set[str]]:
    """(lines that appear only inside solutions or hidden tests, every other line) of a source
    notebook; lines are stripped and blank ones dropped. A manually graded markdown answer is a
    solution as a whole."""
    protected, public = set(), set()
    for cell in notebook["cells"]:
        metadata = nbgrader_metadata(cell)
        lines = [line.strip() for line in source_of(cell).splitlines()]
        if cell["cell_type"] == "markdown" and metadata.get("solution"):
            protected.update(line for line in lines if line)
            continue
        inside = None
        for line in lines:
            if line in (begin for begin, _ in BLOCK_MARKERS.values()):
                inside = line
            elif line in (end for _, end in BLOCK_MARKERS.values()):
                inside = None
            elif line:
                (protected if inside else public).add(line)
    return protected - public, public


def without_volatile_metadata(notebook: dict) -> dict:
    """A notebook with what may differ between two generations of the same release removed:
    the kernel's language version (written by whoever saved it last)."""
    notebook = json.loads(json.dumps(notebook))
    notebook.get("metadata", {}).get("language_info", {}).pop("version", None)
    return notebook


def course_environment(repo_root: Path, **extra: str) -> dict[str, str]:
    """The environment of the course commands: this Python's bin first on PATH (nbgrader calls
    ``alembic`` from it), the repository on PYTHONPATH (the kernels import cnnbook even when the
    package is not installed), no inherited nbgrader step."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("NBGRADER_")}
    environment["PATH"] = str(Path(sys.executable).parent) + os.pathsep + environment["PATH"]
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(repo_root), *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment.update(extra)
    return environment


@dataclass
class Course:
    """A temporary copy of the course (nbgrader_config.py, solutions/, exercises/)."""

    root: Path
    environment: dict[str, str]
    log: list[str] = field(default_factory=list)

    @classmethod
    def copy_of(cls, repo_root: Path, destination: Path, environment: dict[str, str]) -> Course:
        """Copy the course, and the models it ships (``results/*/*.keras``, which
        ``c.AccuracyGrader.shipped_models`` names), into ``destination``."""
        ignore = shutil.ignore_patterns("*.keras", ".ipynb_checkpoints", "__pycache__")
        shutil.copy2(repo_root / "nbgrader_config.py", destination / "nbgrader_config.py")
        for folder in ("solutions", "exercises"):
            shutil.copytree(repo_root / folder, destination / folder, ignore=ignore)
        for model in repo_root.glob("results/*/*.keras"):
            (destination / model.parent.relative_to(repo_root)).mkdir(parents=True, exist_ok=True)
            shutil.copy2(model, destination / model.relative_to(repo_root))
        return cls(destination, environment)

    def run(self, *command: str, timeout: float = 900, **extra_env: str) -> tuple[str, float]:
        """Run ``command`` in the course root; return its output and wall time in seconds.
        Fails the test with the output's tail when the command fails."""
        start = time.perf_counter()
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env={**self.environment, **extra_env},
        )
        seconds = time.perf_counter() - start
        output = result.stdout + result.stderr
        self.log.append(f"$ {' '.join(command)}  ({seconds:.1f} s)\n{output[-4000:]}")
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed ({result.returncode}):\n{output[-6000:]}")
        return output, seconds

    def nbgrader(self, *arguments: str, **extra_env: str) -> tuple[str, float]:
        return self.run(sys.executable, "-m", "nbgrader", *arguments, **extra_env)

    def python(self, *arguments: str, **extra_env: str) -> tuple[str, float]:
        return self.run(sys.executable, *arguments, **extra_env)

    def source(self, assignment: str) -> Path:
        return self.root / "solutions" / assignment / f"{assignment}.ipynb"

    def release(self, assignment: str) -> Path:
        return self.root / "exercises" / assignment / f"{assignment}.ipynb"

    def submit(self, student: str, assignment: str, notebook: dict | Path,
               files: dict[str, bytes | Path] | None = None) -> Path:
        """Put a submission in ``submitted/<student>/<assignment>/`` as ``nbgrader collect``
        would: the notebook under the assignment's name, and any other files."""
        folder = self.root / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(notebook, Path):
            notebook = read_notebook(notebook)
        (folder / f"{assignment}.ipynb").write_text(json.dumps(notebook, indent=1))
        for name, content in (files or {}).items():
            if isinstance(content, Path):
                shutil.copy2(content, folder / name)
            else:
                (folder / name).write_bytes(content)
        return folder


def with_solutions_replaced(notebook: dict, answers: dict[str, str]) -> dict:
    """A copy of the release ``notebook`` in which the answer cell ``grade_id`` of each entry of
    ``answers`` holds that code instead of ``raise NotImplementedError()``: each ``# YOUR CODE
    HERE`` region in turn takes the next part of the code split at ``"\n#---\n"``, indented as
    the region was."""
    notebook = json.loads(json.dumps(notebook))
    placeholder = re.compile(r"^([ \t]*)# YOUR CODE HERE\n\1raise NotImplementedError\(\)",
                             re.MULTILINE)
    for cell in notebook["cells"]:
        grade_id = nbgrader_metadata(cell).get("grade_id")
        if grade_id not in answers:
            continue
        text = source_of(cell)
        for part in answers[grade_id].split("\n#---\n"):
            region = placeholder.search(text)
            if region is None:
                raise ValueError(f"cell {grade_id} has fewer answer regions than parts given")
            indent = region.group(1)
            code = "\n".join(indent + line for line in part.strip("\n").splitlines())
            text = text[:region.start()] + code + text[region.end():]
        cell["source"] = text
    missing = set(answers) - {nbgrader_metadata(cell).get("grade_id") for cell in notebook["cells"]}
    if missing:
        raise ValueError(f"no answer cells {sorted(missing)}")
    return notebook


def edit_cell(notebook: dict, grade_id: str, old: str, new: str) -> dict:
    """A copy of ``notebook`` in which the cell ``grade_id`` has ``old`` replaced by ``new``."""
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook["cells"]:
        if nbgrader_metadata(cell).get("grade_id") == grade_id:
            text = source_of(cell)
            if old not in text:
                raise ValueError(f"{old!r} is not in cell {grade_id}")
            cell["source"] = text.replace(old, new)
            return notebook
    raise ValueError(f"no cell {grade_id}")


def gradebook_scores(root: Path, assignment: str) -> dict[str, dict]:
    """Per student: total score, late penalty, code score and its maximum, and every cell's grade
    and comment."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "cnnbook") as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            notebook = submission.notebooks[0]
            scores[submission.student.id] = {
                "score": submission.score,
                "late_penalty": submission.late_submission_penalty,
                "max_score": submission.max_score,
                "code_score": submission.code_score,
                "max_code_score": submission.max_code_score,
                "grades": {grade.name: (grade.score, grade.auto_score, grade.manual_score,
                                        grade.needs_manual_grade)
                           for grade in notebook.grades},
                "comments": {comment.name: comment.comment for comment in notebook.comments},
            }
    return scores


VALIDATION_PASSED = "Success! Your notebook passes all the tests."
NO_TEST_PASSED = "Success! The notebook does not pass any tests."
GRADE_ID = re.compile(r"^[a-z][a-z0-9_]*$")


def measured_accuracy(model_path, cifar_subset_dir) -> float:
    """The test accuracy of a saved network, measured with Keras itself on the subset's 10,000
    test images (the grader's own measurement builds its reference network and loads the weights
    into it: an independent route to the same number)."""
    import keras  # Keras loads in seconds: only the tests that grade trained networks need it
    import numpy as np

    with np.load(next(Path(cifar_subset_dir).glob("*.npz"))) as archive:
        images, labels = archive["x_test"], archive["y_test"].reshape(-1)
    network = keras.models.load_model(model_path, safe_mode=True)
    logits = np.asarray(network.predict(images, batch_size=500, verbose=0))
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def accuracy_points(repo_root, entry: str, accuracy: float) -> float:
    """The points of the subset's tier that ``accuracy`` reaches, from nbgrader_config.py."""
    from cnnbook.grading import tiers  # with the function above: grading tests only

    rule = tiers.accuracy_rule(tiers.load_course_config(repo_root), entry, "cifar10-subset",
                               repo_root)
    return tiers.points_for(accuracy, rule.tiers)
