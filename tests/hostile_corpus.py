"""The hostile corpus: bad and hostile submissions of the `sizing` assignment, generated from the
reference and released notebooks of a (temporary) course, each with the outcome that grading must
produce. ``tests/test_hostile_corpus.py`` submits them all with good ones and grades the batch with
``nbgrader autograde``.

Every kind is a function of the course (root, source and release notebooks) returning a
:class:`Submission`: the files to put in ``submitted/<kind>/sizing/`` and the :class:`Expected`
outcome, written in terms of grade ids; the test turns grade ids into points with the source
notebook's metadata, never with the grader's own output.

Run it to write the corpus into a course folder by hand::

    python tests/hostile_corpus.py COURSE_ROOT     # writes COURSE_ROOT/submitted/<kind>/sizing/
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader_course import nbgrader_metadata, read_notebook, source_of

ASSIGNMENT = "sizing"

# The grade cells of `sizing` and the answers they need (the notebook's own structure).
OUTPUT_SIZE_TESTS = ("test_output_size_valid", "test_output_size_same",
                     "test_output_size_explicit_padding", "test_output_size_rejects_bad_arguments")
TOY_TABLE_TEST = "test_toy_shape_table"
ALEXNET_TEST = "test_alexnet_first_layer"
TOY_NETWORK_TEST = "test_toy_network_shapes"
ALL_TESTS = (*OUTPUT_SIZE_TESTS, TOY_TABLE_TEST, ALEXNET_TEST, TOY_NETWORK_TEST)
NEED_OUTPUT_SIZE = ALL_TESTS
"""Tests that fail when `output_size` is missing: all of them (the toy table and the AlexNet
answers are computed with it, and the toy network's test compares with the table)."""


def _partly_correct():
    """The partly correct submission of tests/test_course.py (kept in step with the notebook
    there): (answer cell, text replaced, wrong text, failing tests)."""
    from test_course import PARTLY_CORRECT

    return PARTLY_CORRECT[ASSIGNMENT]

TEST_LIMITS = {"timeout_s": 60, "memory_limit_mib": 1536, "max_processes": 48,
               "max_output_bytes": 1_000_000, "max_file_bytes": 1_000_000}
"""The limits the corpus test grades under (appended to the course's nbgrader_config.py), small
so that the batch stays short; the timeout leaves room for the set-up cell's TensorFlow import on
a loaded 2-core machine (over 20 s at a load of 15)."""


@dataclass
class Expected:
    """What grading must give: the tests that pass (their points are the code score), the tests
    left for manual grading (no automatic score), and text that must appear in the graded
    notebook (``reason``) or in the command's log (``log``); ``graded`` is False when nbgrader
    cannot produce a graded notebook at all."""

    passing: tuple[str, ...]
    deferred: tuple[str, ...] = ()
    reason: str | None = None
    log: str | None = None
    graded: bool = True
    """False where nbgrader cannot read a notebook of the assignment (not JSON, empty, wrong
    name): it names the student in its error list and exits non-zero, and every cell keeps no
    automatic score, which counts 0."""
    absent: tuple[str, ...] = ()
    """Files that must not be in the grading copy (``autograded/<kind>/sizing/``)."""


@dataclass
class Submission:
    notebook: dict | bytes | None
    """The notebook (``None``: only the files and symlinks below)."""
    expected: Expected
    files: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    notebook_name: str = f"{ASSIGNMENT}.ipynb"


@dataclass
class Course:
    root: Path
    source: dict
    release: dict


def _copy(notebook: dict) -> dict:
    return json.loads(json.dumps(notebook))


def _cell(notebook: dict, grade_id: str) -> dict:
    for cell in notebook["cells"]:
        if nbgrader_metadata(cell).get("grade_id") == grade_id:
            return cell
    raise ValueError(f"the notebook has no cell {grade_id}")


def _set_source(notebook: dict, grade_id: str, source: str) -> dict:
    notebook = _copy(notebook)
    _cell(notebook, grade_id)["source"] = source
    return notebook


def _append_to(notebook: dict, grade_id: str, code: str) -> dict:
    notebook = _copy(notebook)
    cell = _cell(notebook, grade_id)
    cell["source"] = source_of(cell) + "\n\n" + code
    return notebook


def _replace(notebook: dict, grade_id: str, old: str, new: str) -> dict:
    notebook = _copy(notebook)
    cell = _cell(notebook, grade_id)
    if old not in source_of(cell):
        raise ValueError(f"{old!r} is not in cell {grade_id}")
    cell["source"] = source_of(cell).replace(old, new)
    return notebook


def _insert_after(notebook: dict, grade_id: str, code: str) -> dict:
    """A new code cell without nbgrader metadata (what a student adds) after ``grade_id``."""
    notebook = _copy(notebook)
    index = notebook["cells"].index(_cell(notebook, grade_id))
    notebook["cells"].insert(index + 1, {"cell_type": "code", "execution_count": None,
                                         "id": f"added-{index}", "metadata": {}, "outputs": [],
                                         "source": code})
    return notebook


def _partial(course: Course) -> dict:
    cell, old, new, failing = _partly_correct()
    assert tuple(failing) == (ALEXNET_TEST,), failing
    return _replace(course.source, cell, old, new)


def _without(tests: tuple[str, ...], *removed: str) -> tuple[str, ...]:
    return tuple(test for test in tests if test not in removed)


OWN_OUTPUT_SIZE = '''def output_size(input_size, kernel_size, stride=1, padding="valid"):
{body}
'''

KINDS: dict[str, Callable[[Course], Submission]] = {}


def kind(function: Callable[[Course], Submission]) -> Callable[[Course], Submission]:
    KINDS[function.__name__] = function
    return function


# --- Good submissions -----------------------------------------------------------------------------

@kind
def good_reference(course):
    return Submission(course.source, Expected(passing=ALL_TESTS))


@kind
def good_partial(course):
    return Submission(_partial(course), Expected(passing=_without(ALL_TESTS, ALEXNET_TEST)))


# --- Tampered structure ---------------------------------------------------------------------------

@kind
def tests_edited_to_pass(course):
    notebook = course.release
    for test in ALL_TESTS:
        notebook = _set_source(notebook, test, "pass  # edited by the student")
    return Submission(notebook, Expected(passing=()))


@kind
def tests_deleted(course):
    notebook = _partial(course)
    notebook["cells"] = [cell for cell in notebook["cells"]
                         if nbgrader_metadata(cell).get("grade_id") != ALEXNET_TEST]
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, ALEXNET_TEST),
                                         reason="was missing from the submission"))


@kind
def grade_ids_renamed(course):
    notebook = _set_source(_partial(course), ALEXNET_TEST, "pass")
    nbgrader_metadata(_cell(notebook, ALEXNET_TEST))["grade_id"] = "my_own_test"
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, ALEXNET_TEST),
                                         reason="was missing from the submission"))


@kind
def other_nbformat_minor(course):
    notebook = _copy(course.source)
    notebook["nbformat_minor"] = 4  # nbformat 4.4: no cell ids
    for cell in notebook["cells"]:
        cell.pop("id", None)
    return Submission(notebook, Expected(passing=ALL_TESTS))


@kind
def not_json(course):
    return Submission(b"this is not a notebook {", Expected(
        passing=(), graded=False, log="not_json"))


@kind
def empty_file(course):
    return Submission(b"", Expected(passing=(), graded=False, log="empty_file"))


@kind
def wrong_file_name(course):
    return Submission(course.source, Expected(passing=(), graded=False,
                                              log="Skipping unknown notebook"),
                      notebook_name="sizing (1).ipynb")


@kind
def syntax_error(course):
    notebook = _set_source(course.source, "output_size",
                           "def output_size(input_size, kernel_size, stride=1, padding='valid')\n"
                           "    return input_size\n")
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, *NEED_OUTPUT_SIZE),
                                         reason="SyntaxError"))


# --- Resource abuse: the sandbox's limits ---------------------------------------------------------

@kind
def infinite_loop(course):
    notebook = _append_to(course.source, "alexnet_answers", "while True:\n    pass")
    return Submission(notebook, Expected(
        passing=(*OUTPUT_SIZE_TESTS, TOY_TABLE_TEST), deferred=(ALEXNET_TEST, TOY_NETWORK_TEST),
        reason=f"ran longer than the {TEST_LIMITS['timeout_s']} s limit"))


@kind
def os_exit(course):
    notebook = _append_to(course.source, "toy_shapes", "import os\nos._exit(3)")
    return Submission(notebook, Expected(
        passing=OUTPUT_SIZE_TESTS, deferred=(TOY_TABLE_TEST, ALEXNET_TEST, TOY_NETWORK_TEST),
        reason="the kernel stopped while running cell `toy_shapes`"))


@kind
def output_flood(course):
    notebook = _append_to(course.source, "toy_shapes",
                          'for _ in range(50):\n    print("x" * 1_000_000)')  # 50 MB
    return Submission(notebook, Expected(passing=ALL_TESTS, reason="the rest of it was dropped"))


@kind
def memory_bomb(course):
    notebook = _append_to(course.source, "alexnet_answers",
                          'hog = [b"x" * 2**28 for _ in range(24)]  # 6 GiB, written')
    return Submission(notebook, Expected(
        passing=(*OUTPUT_SIZE_TESTS, TOY_TABLE_TEST), deferred=(ALEXNET_TEST, TOY_NETWORK_TEST),
        reason="memory limit"))


@kind
def fork_bomb(course):
    # the sandbox refuses fork: the loop stops at once with an error in the student's own cell,
    # after the cell's answers were defined
    notebook = _append_to(course.source, "alexnet_answers",
                          "import os\nwhile True:\n    os.fork()")
    return Submission(notebook, Expected(passing=ALL_TESTS, reason="PermissionError"))


# --- Reaching outside: the sandbox's walls --------------------------------------------------------

@kind
def network_connection(course):
    notebook = _insert_after(course.source, "output_size", (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('pypi.org', 443), timeout=5)\n"
        "    print('NETWORK REACHED')\n"
        "except OSError as error:\n"
        "    print('no network:', type(error).__name__)\n"))
    return Submission(notebook, Expected(passing=ALL_TESTS, reason="no network: gaierror"))


@kind
def reads_solutions(course):
    solution = course.root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    notebook = _insert_after(course.release, "sizing_setup", (
        "import json, pathlib, re\n"
        f"stolen = json.load(open({str(solution)!r}))\n"
        "code = [''.join(cell['source']) for cell in stolen['cells']\n"
        "        if cell['cell_type'] == 'code']\n"
        "pathlib.Path('stolen.py').write_text('import math, keras\\n' + '\\n'.join(code[1:2]))\n"
        "from stolen import output_size\n"))
    return Submission(notebook, Expected(passing=(), reason="FileNotFoundError"))


@kind
def writes_elsewhere(course):
    root = course.root
    targets = [root / "gradebook.db", root / "submitted" / "good_reference" / ASSIGNMENT /
               f"{ASSIGNMENT}.ipynb", root / "autograded" / "good_reference" / ASSIGNMENT /
               f"{ASSIGNMENT}.ipynb", root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"]
    notebook = _insert_after(course.source, "sizing_setup", (
        f"for target in {[str(target) for target in targets]!r}:\n"
        "    try:\n"
        "        open(target, 'w').write('{}')\n"
        "        print('OVERWROTE', target)\n"
        "    except OSError as error:\n"
        "        print('refused:', type(error).__name__)\n"
        "import shutil\n"
        f"shutil.rmtree({str(root / 'submitted')!r}, ignore_errors=True)\n"))
    # a target under /tmp (the test's course) may land in the sandbox's private /tmp: the test
    # checks the real files, not what the kernel believed
    return Submission(notebook, Expected(passing=ALL_TESTS, reason="refused:"))


@kind
def symlink_outside(course):
    solution = course.root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    notebook = _insert_after(course.source, "sizing_setup", (
        "try:\n"
        "    print(open('answers.json').read()[:50])\n"
        "except OSError as error:\n"
        "    print('link unusable:', type(error).__name__)\n"))
    return Submission(notebook, Expected(passing=ALL_TESTS, reason="it is a symbolic link",
                                         absent=("answers.json",)),
                      symlinks={"answers.json": str(solution)})


@kind
def notebook_is_symlink(course):
    solution = course.root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    symlink_reason = "the submitted notebook is a symbolic link"
    return Submission(None, Expected(passing=(), reason=symlink_reason),
                      symlinks={f"{ASSIGNMENT}.ipynb": str(solution)})


@kind
def shadowing_cnnbook_folder(course):
    fake = b"print('SHADOWED CNNBOOK')\ndef check_written_here(*args, **kwargs):\n    pass\n"
    return Submission(_partial(course), Expected(
        passing=_without(ALL_TESTS, ALEXNET_TEST), reason="would hide the installed module",
        absent=("cnnbook",)),
        files={"cnnbook/__init__.py": fake, "cnnbook/grade.py": fake})


@kind
def shadowing_numpy_file(course):
    return Submission(course.source, Expected(
        passing=ALL_TESTS, reason="would hide the installed module `numpy`", absent=("numpy.py",)),
        files={"numpy.py": b"raise SystemExit('SHADOWED NUMPY')\n"})


@kind
def oversized_file(course):
    return Submission(course.source, Expected(
        passing=ALL_TESTS, reason="limit for submitted files", absent=("weights.bin",)),
        files={"weights.bin": b"\0" * (TEST_LIMITS["max_file_bytes"] + 1)})


# --- Answers not written by the student: source analysis outside the kernel -----------------------

@kind
def patched_keras(course):
    notebook = _insert_after(_partial(course), "alexnet_answers", (
        "keras.layers.Conv2D.compute_output_shape = lambda self, shape: (None, 56, 56, 96)\n"))
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, ALEXNET_TEST),
                                         reason="it changes `keras.layers.Conv2D"))


@kind
def ipython_hook(course):
    notebook = _insert_after(_partial(course), "alexnet_answers", (
        "get_ipython().set_custom_exc((AssertionError,), lambda *args, **kwargs: None)\n"))
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, ALEXNET_TEST),
                                         reason="it uses `get_ipython`"))


@kind
def shell_escape(course):
    notebook = _insert_after(course.release, "sizing_setup",
                             "!cp ../../../solutions/sizing/sizing.ipynb .\n%run sizing.ipynb\n")
    return Submission(notebook, Expected(passing=(), reason="it uses `get_ipython`"))


@kind
def replaces_check_written_here(course):
    body = ("    return cnnbook.sizing.conv_output_size(input_size, kernel_size, stride, padding)")
    notebook = _set_source(course.source, "output_size", (
        "import cnnbook.grade\n"
        "cnnbook.grade.check_written_here = lambda *args, **kwargs: None\n"
        + OWN_OUTPUT_SIZE.format(body=body)))
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, *NEED_OUTPUT_SIZE),
                                         reason="it imports `cnnbook.grade`"))


@kind
def eval_of_reference(course):
    body = ('    return eval("cnnbook.sizing.conv_output_size")'
            '(input_size, kernel_size, stride, padding)')
    notebook = _set_source(course.source, "output_size", OWN_OUTPUT_SIZE.format(body=body))
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, *NEED_OUTPUT_SIZE),
                                         reason="it uses `eval`"))


@kind
def dunder_import(course):
    body = ('    sizing = __import__("cnn" + "book.sizing", fromlist=["x"])\n'
            "    return sizing.conv_output_size(input_size, kernel_size, stride, padding)")
    notebook = _set_source(course.source, "output_size", OWN_OUTPUT_SIZE.format(body=body))
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, *NEED_OUTPUT_SIZE),
                                         reason="it uses `__import__`"))


@kind
def reference_in_default_argument(course):
    notebook = _set_source(course.source, "output_size", (
        "import functools\n"
        "def output_size(input_size, kernel_size, stride=1, padding='valid',\n"
        "                _rule=functools.partial(cnnbook.sizing.conv_output_size)):\n"
        "    return _rule(input_size, kernel_size, stride, padding)\n"))
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, *NEED_OUTPUT_SIZE),
                                         reason="it uses `cnnbook` from cnnbook"))


@kind
def keras_lookup_table(course):
    notebook = _set_source(course.source, "output_size", (
        "_table = {}\n"
        "for _size in range(1, 300):\n"
        "    for _kernel in range(1, 12):\n"
        "        for _stride in range(1, 5):\n"
        "            for _padding in ('valid', 'same'):\n"
        "                if _padding == 'valid' and _kernel > _size:\n"
        "                    continue\n"
        "                _layer = keras.layers.Conv2D(\n"
        "                    1, _kernel, strides=_stride, padding=_padding)\n"
        "                _table[_size, _kernel, _stride, _padding] = _layer.compute_output_shape(\n"
        "                    (None, _size, _size, 1))[1]\n"
        "def output_size(input_size, kernel_size, stride=1, padding='valid'):\n"
        "    return _table[input_size, kernel_size, stride, padding]\n"))
    return Submission(notebook, Expected(passing=_without(ALL_TESTS, *NEED_OUTPUT_SIZE),
                                         reason="`output_size` must not rely on keras"))


def build(root: Path) -> dict[str, Submission]:
    """Every kind of the corpus for the course at ``root`` (its ``solutions/`` and generated
    ``exercises/``)."""
    course = Course(root=Path(root),
                    source=read_notebook(
                        Path(root) / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
                    release=read_notebook(
                        Path(root) / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    return {name: make(course) for name, make in KINDS.items()}


def write(root: Path, corpus: dict[str, Submission]) -> None:
    """Put every submission in ``root/submitted/<kind>/sizing/`` as ``nbgrader collect`` would."""
    for name, submission in corpus.items():
        folder = Path(root) / "submitted" / name / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        notebook = submission.notebook
        if notebook is not None:
            data = (notebook if isinstance(notebook, bytes)
                    else json.dumps(notebook, indent=1).encode())
            (folder / submission.notebook_name).write_bytes(data)
        for relative, content in submission.files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(content)
        for relative, target in submission.symlinks.items():
            (folder / relative).symlink_to(target)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hostile_corpus.py COURSE_ROOT")
    corpus = build(Path(sys.argv[1]))
    write(Path(sys.argv[1]), corpus)
    print(f"wrote {len(corpus)} submissions of {ASSIGNMENT} into {sys.argv[1]}/submitted/")
