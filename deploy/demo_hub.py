"""The local demonstration hub of ``make hub``: JupyterHub on http://127.0.0.1:8000 with an
instructor and two students, the course ready to release.

    python deploy/demo_hub.py [--state DIR] [--port 8000]

It prepares the state folder (default ``.hub/`` in the repository, ignored by git): the
instructor's course ``home/instructor/cnnbook-course`` (a copy of nbgrader_config.py, solutions/ and
exercises/, every assignment generated into the gradebook so the formgrader shows it ready to
release) and the exchange; then it runs JupyterHub in the foreground with
deploy/jupyterhub_config.py in demo mode (local processes, any password logs in: keep it on
127.0.0.1). Ctrl-C stops the hub, the servers and their kernels. Delete the state folder to start
the course afresh. tests/test_hub.py prepares its instructor with the same function.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEPLOY_DIR.parent
INSTRUCTOR = "instructor"
STUDENTS = ("student1", "student2")
SECOND_COURSE, SECOND_INSTRUCTOR = "cnnbook-b", "instructor_b"
"""``--ngshare``: the second course and its instructor."""
NGSHARE_ADMIN = "registrar"
"""``--ngshare``: ngshare's admin, who creates the courses (and teaches none)."""
COURSE_FOLDER = "cnnbook-course"
"""The instructor's course is ``~/<COURSE_FOLDER>``
(deploy/jupyter/instructor/nbgrader_config.py)."""


def assignments_of(repo_root: Path = REPO_ROOT) -> list[str]:
    """The assignment ids: the folders of solutions/ that hold ``<id>/<id>.ipynb``."""
    return sorted(folder.name for folder in (repo_root / "solutions").iterdir()
                  if (folder / f"{folder.name}.ipynb").is_file())


def prepare_instructor_course(home: Path, repo_root: Path = REPO_ROOT,
                              assignments: list[str] | tuple[str, ...] | None = None,
                              course_id: str | None = None) -> Path:
    """Copy the course (nbgrader_config.py, solutions/, exercises/) into
    ``home/cnnbook-course`` and run ``nbgrader generate_assignment --force`` there for each of
    ``assignments`` (default: all), so the gradebook knows them and the formgrader can release
    them. ``course_id`` (default: the configuration's, ``cnnbook``) names another course, a
    second section on the same hub. Returns the course folder.
    An existing course folder is kept as it is (its gradebook and submissions are the course's
    state): delete it to start afresh."""
    course = Path(home) / COURSE_FOLDER
    known = assignments_of(repo_root)
    chosen = known if assignments is None else list(assignments)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"assignments {unknown} are not in {repo_root / 'solutions'}; "
                         f"choose among {known}")
    if course_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", course_id):
        raise ValueError(f"course_id {course_id!r}: use letters, digits, '-' and '_' (at most "
                         "64), as nbgrader's exchange needs")
    if course.exists():
        return course
    course.mkdir(parents=True)
    shutil.copy2(repo_root / "nbgrader_config.py", course / "nbgrader_config.py")
    if course_id is not None:
        with open(course / "nbgrader_config.py", "a") as config:
            config.write(f"\n# this copy's course (deploy/demo_hub.py)\n"
                         f"c.CourseDirectory.course_id = {course_id!r}\n")
    ignore = shutil.ignore_patterns("*.keras", ".ipynb_checkpoints", "__pycache__")
    for folder in ("solutions", "exercises"):
        shutil.copytree(repo_root / folder, course / folder, ignore=ignore)
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("NBGRADER_")}
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment["PATH"]])
    for assignment in chosen:
        result = subprocess.run(
            [sys.executable, "-m", "nbgrader", "generate_assignment", "--force", assignment],
            cwd=course, env=environment, capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {assignment} failed in {course}:\n"
                               f"{(result.stdout + result.stderr)[-3000:]}")
    return course


def hub_environment(state: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a demo hub whose state lives in ``state``."""
    environment = dict(os.environ)
    environment.update({
        "CNNBOOK_HUB_MODE": "demo",
        "CNNBOOK_HUB_STATE": str(state),
        "CNNBOOK_EXCHANGE": str(state / "exchange"),
        "CNNBOOK_HUB_PORT": str(port),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")]),
    })
    environment.update(extra)
    return environment


def hub_command() -> list[str]:
    return [sys.executable, "-m", "jupyterhub", "-f", str(DEPLOY_DIR / "jupyterhub_config.py")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, default=REPO_ROOT / ".hub",
                        help="folder of the hub's database, homes and exchange (default .hub/)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ngshare", action="store_true",
                        help="two courses on one hub through the ngshare exchange "
                        f"(deploy/README.md): {SECOND_INSTRUCTOR} teaches {SECOND_COURSE}, "
                        f"{NGSHARE_ADMIN} creates the courses")
    arguments = parser.parse_args(argv)
    state = arguments.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    print(f"preparing the course in {state / 'home' / INSTRUCTOR / COURSE_FOLDER} ...", flush=True)
    prepare_instructor_course(state / "home" / INSTRUCTOR)
    instructors, students, extra = [INSTRUCTOR], list(STUDENTS), {}
    if arguments.ngshare:
        print(f"preparing {SECOND_COURSE} in {state / 'home' / SECOND_INSTRUCTOR / COURSE_FOLDER}"
              " ...", flush=True)
        prepare_instructor_course(state / "home" / SECOND_INSTRUCTOR, course_id=SECOND_COURSE)
        instructors.append(SECOND_INSTRUCTOR)
        students += [NGSHARE_ADMIN]
        extra = {"CNNBOOK_EXCHANGE_KIND": "ngshare", "CNNBOOK_NGSHARE_ADMINS": NGSHARE_ADMIN}
        print(f"ngshare: log in as {NGSHARE_ADMIN} and, in a terminal, create the courses: "
              f"`ngshare-course-management create_course cnnbook {INSTRUCTOR}` and "
              f"`ngshare-course-management create_course {SECOND_COURSE} {SECOND_INSTRUCTOR}`; "
              f"then each instructor enrols students in a terminal of their server, from "
              f"~/{COURSE_FOLDER}: `ngshare-course-management add_student cnnbook student1`.",
              flush=True)
    environment = hub_environment(
        state, arguments.port,
        CNNBOOK_INSTRUCTORS=",".join(instructors), CNNBOOK_STUDENTS=",".join(students), **extra,
    )
    print(f"JupyterHub on http://127.0.0.1:{arguments.port}: log in as {INSTRUCTOR} (formgrader: "
          f"Nbgrader > Formgrader, release an assignment) or as {' or '.join(STUDENTS)} "
          f"(Nbgrader > Assignment List), with any password.",
          flush=True)
    os.execve(sys.executable, hub_command(), environment)


if __name__ == "__main__":
    sys.exit(main())
