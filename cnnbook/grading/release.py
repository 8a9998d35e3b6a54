"""Regenerate the student versions ``exercises/<id>/`` from the sources ``solutions/<id>/``.

    python -m cnnbook.grading.release              # every assignment of solutions/
    python -m cnnbook.grading.release sizing       # one or more assignments by id

Run it from the course root (the repository root, which holds ``nbgrader_config.py``). For each
assignment it refuses a source folder that holds a trained model or a data file (``*.keras``,
``*.h5``, ``*.npz``: ``nbgrader validate`` of the resnet source leaves ``resnet20.keras`` there,
and nbgrader would copy it to the students), runs ``nbgrader generate_assignment <id> --force``
(which clears solutions and hidden tests and writes ``exercises/<id>/``), and checks that no
solution or hidden-test marker survived. Commit the regenerated ``exercises/`` with the sources.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

SOURCE_DIRECTORY = "solutions"
RELEASE_DIRECTORY = "exercises"
NEVER_RELEASED = ("*.keras", "*.h5", "*.npz")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def assignment_ids(root: Path) -> list[str]:
    """Ids of the assignments in ``root/solutions``: folders ``<id>`` holding ``<id>.ipynb``."""
    source = root / SOURCE_DIRECTORY
    return sorted(
        folder.name for folder in source.iterdir()
        if folder.is_dir() and (folder / f"{folder.name}.ipynb").is_file()
    )


def nbgrader_environment() -> dict[str, str]:
    """The environment for an nbgrader child process: nbgrader runs the ``alembic`` executable
    of its own environment to create ``gradebook.db``, so that environment's ``bin`` goes first
    on ``PATH`` even when it is not activated."""
    environment = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    environment["PATH"] = bin_dir + os.pathsep + environment.get("PATH", "")
    return environment


def run_nbgrader(root: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGUMENTS`` in ``root`` with this Python; output is captured."""
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *arguments],
        cwd=root, env=nbgrader_environment(), capture_output=True, text=True,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"nbgrader {' '.join(arguments)} failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result


def release(root: Path, assignment_id: str) -> Path:
    """Generate ``exercises/<assignment_id>/`` from ``solutions/<assignment_id>/``."""
    source = root / SOURCE_DIRECTORY / assignment_id
    if not (source / f"{assignment_id}.ipynb").is_file():
        raise ValueError(
            f"assignment {assignment_id!r} has no {source / (assignment_id + '.ipynb')}; "
            f"known assignments: {', '.join(assignment_ids(root))}"
        )
    strays = sorted(str(path.relative_to(root)) for pattern in NEVER_RELEASED
                    for path in source.rglob(pattern))
    if strays:
        raise ValueError(
            f"{', '.join(strays)}: trained models and data are never released to students; "
            "move them out of the source folder, then release again"
        )
    run_nbgrader(root, "generate_assignment", assignment_id, "--force")
    target = root / RELEASE_DIRECTORY / assignment_id
    for path in target.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            leaked = [marker for marker in MARKERS if marker in text]
            if leaked:
                raise RuntimeError(f"{path} still holds {', '.join(leaked)}: do not commit it")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbook.grading.release", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="course root, the folder of nbgrader_config.py (default: here)")
    arguments = parser.parse_args(argv)
    root = arguments.root.resolve()
    if not (root / "nbgrader_config.py").is_file():
        parser.error(f"{root} has no nbgrader_config.py: run from the course root or pass --root")
    for assignment_id in arguments.assignments or assignment_ids(root):
        target = release(root, assignment_id)
        print(f"released {assignment_id} -> {target.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
