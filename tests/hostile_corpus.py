"""The hostile corpus: bad and hostile submissions of an assignment (``sizing`` or
``architectures``), generated from the source and released notebooks of a (temporary) course, each
with the outcome that grading must produce. ``tests/test_hostile_corpus.py`` submits them all with
good ones and grades each assignment's batch with ``nbgrader autograde``.

Every kind is a function of the course (root, assignment, source and release notebooks) returning
a :class:`Submission`: the files to put in ``submitted/<kind>/<assignment>/`` and the
:class:`Expected` outcome, written in terms of grade ids; the test turns grade ids into points with
the source notebook's metadata, never with the grader's own output. What differs between
assignments (the grade ids of the tests, the answer cell the bypasses rewrite and the reference
function they reach for, the partly correct answer, where a runaway cell goes) is a small
:class:`Assignment` description in :data:`ASSIGNMENTS`; the kinds themselves are shared.

Run it to write the corpus into a course folder by hand::

    python tests/hostile_corpus.py COURSE_ROOT [ASSIGNMENT]   # default sizing; writes
                                                             # COURSE_ROOT/submitted/<kind>/<id>/
"""

from __future__ import annotations

import ast
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader_course import PARTLY_CORRECT, nbgrader_metadata, read_notebook, source_of
from source_rule_cases import BYPASSES, relies_on


@dataclass(frozen=True)
class Assignment:
    """What the corpus needs to know of one assignment; everything else is shared."""

    name: str
    setup_cell: str
    """The instructor's set-up cell (imports): cells a student adds go right after it."""
    tests: tuple[str, ...]
    """Every autograded test cell, in notebook order."""
    bypassed_cell: str
    """The answer cell the bypass kinds rewrite; it defines :attr:`bypassed_function`."""
    bypassed_function: str
    parameters: str
    """The parameter list of :attr:`bypassed_function` as the notebook writes it."""
    reference_function: str
    """``cnnbook``'s function that computes the same answer (what a bypass reaches for)."""
    keras_answer: str
    """A definition of :attr:`bypassed_function` that reads its answers off Keras layers (the
    tests forbid Keras for it)."""
    need_bypassed: tuple[str, ...]
    """Tests that fail when :attr:`bypassed_cell` defines nothing (refused or broken)."""
    partly_correct: tuple[str, str, str, tuple[str, ...]] | Callable[[], tuple]
    """(answer cell, text replaced, wrong text, tests that then fail), or a function returning
    it (read when the corpus is built)."""
    early_answer_cell: str
    """An answer cell early in the notebook: ``os._exit`` and the output flood go at its end."""
    late_answer_cell: str
    """An answer cell late in the notebook: the infinite loop and the memory and fork bombs go at
    its end."""
    needs_models: tuple[str, ...] = ()
    """Tests that fail on a submission without the trained models the assignment asks for (the
    corpus submits none: the autograder never trains)."""
    left_unanswered: tuple[str, ...] = ()
    """Answer cells that the hostile kinds leave as released (``raise NotImplementedError()``),
    to keep the batch short: their tests fail at the first visible assert, before hidden tests
    that build large networks. The good submissions answer every cell."""
    fail_unanswered: tuple[str, ...] = ()
    """Tests that fail because of :attr:`left_unanswered`."""
    built_with_keras: tuple[str, ...] = ()
    """Tests of networks the student builds with Keras (a student who patches Keras' shape rule
    in their own process breaks them)."""
    honest_answers: dict[str, str] | None = None
    """Answer cells written with the idioms honest students use (decorators, magics, import
    styles, constants shared between cells, a helper named like a hidden one, output on stderr),
    which must score full marks: the ``good_honest_idioms`` kind."""
    judged: bool = False
    """Whether the judge decides its tests outside the student's kernel
    (``c.JudgeOutsideKernel.assignments``): then the kernel's fate (a stop, a refusal) only
    costs the student's feedback, and each test's verdict comes from the student's functions,
    run in processes where cnnbook's reference code and the forbidden packages do not exist."""
    graded_on_sizing_only: tuple[str, ...] = ()
    """Kinds left out of this assignment's batch because their outcome is the grader's alone, the
    same for every assignment (the cell time limit, the sandbox's walls, the checks on submitted
    files): graded in sizing's batch, the cheaper one."""

    @property
    def notebook_name(self) -> str:
        return f"{self.name}.ipynb"

    @property
    def partly_correct_answer(self) -> tuple[str, str, str, tuple[str, ...]]:
        value = self.partly_correct
        cell, old, new, failing = value() if callable(value) else value
        return cell, old, new, tuple(failing)

    @property
    def arguments(self) -> str:
        """:attr:`parameters` as the arguments of a call passing them on."""
        return ", ".join(parameter.split("=")[0].strip()
                         for parameter in self.parameters.split(","))


def _partly_correct_sizing():
    """The partly correct `sizing` submission of tests/test_course.py."""
    return PARTLY_CORRECT["sizing"]


SIZING_OUTPUT_SIZE_TESTS = ("test_output_size_valid", "test_output_size_same",
                            "test_output_size_explicit_padding",
                            "test_output_size_rejects_bad_arguments")
SIZING_TESTS = (*SIZING_OUTPUT_SIZE_TESTS, "test_toy_shape_table", "test_alexnet_first_layer",
                "test_toy_network_shapes")

SIZING_HONEST = {
    "output_size": """
import functools
import warnings

@functools.lru_cache(maxsize=None)
def output_size(input_size, kernel_size, stride=1, padding="valid"):
    \"\"\"Positions of the window (cached, as a student might).\"\"\"
    if padding == "same":
        return math.ceil(input_size / stride)
    if padding == "valid":
        padding = 0
    if isinstance(padding, str) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"bad padding {padding!r}")
    if kernel_size > input_size + 2 * padding:
        warnings.warn("kernel larger than the padded input")
        raise ValueError("the kernel does not fit")
    return (input_size + 2 * padding - kernel_size) // stride + 1
""",
    "toy_shapes": """
%matplotlib inline
KERNEL = 3

def keras_valid_size(size):  # a name the hidden tests use for their own helper
    return size

def toy_shape_table(image_size=32, filters=12, classes=10):
    conv = output_size(image_size, KERNEL, 1, "same")
    pool = output_size(conv, 2, 2, "valid")
    return {"input": (image_size, image_size, 3), "conv": (conv, conv, filters),
            "relu": (conv, conv, filters), "pool": (pool, pool, filters),
            "flatten": (pool * pool * filters,), "fc": (classes,)}

toy_shapes = toy_shape_table()
toy_shapes
""",
    "build_toy_network": """
import sys
from tensorflow import keras as tf_keras

def build_toy_network():
    print("building", file=sys.stderr)
    x = images = tf_keras.Input(shape=(32, 32, 3))
    for layer in [tf_keras.layers.Conv2D(12, KERNEL, padding="same", name="conv"),
                  tf_keras.layers.ReLU(name="relu"), tf_keras.layers.MaxPooling2D(2, name="pool"),
                  tf_keras.layers.Flatten(name="flatten"), tf_keras.layers.Dense(10, name="fc")]:
        x = layer(x)
    model = tf_keras.Model(images, x)
    assert model.layers[1].__class__.__name__ == "Conv2D"
    return model
""",
}
"""Honest answers of sizing in the idioms students write (see :attr:`Assignment.honest_answers`):
every one of them lost points under the in-kernel source rules."""

SIZING = Assignment(
    name="sizing",
    setup_cell="sizing_setup",
    tests=SIZING_TESTS,
    bypassed_cell="output_size",
    bypassed_function="output_size",
    parameters="input_size, kernel_size, stride=1, padding='valid'",
    reference_function="cnnbook.counting.sizing.conv_output_size",
    keras_answer=(
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
        "    return _table[input_size, kernel_size, stride, padding]\n"),
    # all of them: the toy table and the AlexNet answers are computed with output_size, and the
    # toy network's test compares with the table
    need_bypassed=SIZING_TESTS,
    partly_correct=_partly_correct_sizing,
    early_answer_cell="toy_shapes",
    late_answer_cell="alexnet_answers",
    built_with_keras=("test_toy_network_shapes",),
    honest_answers=SIZING_HONEST,
    judged=True,
)

ARCHITECTURES_TESTS = (
    "test_inception_module", "test_inception_costs", "test_bottleneck_block",
    "test_bottleneck_costs", "test_depthwise_separable_conv", "test_separable_costs",
    "test_squeeze_excitation", "test_se_costs", "test_inverted_residual",
    "test_inverted_residual_costs", "test_experiment_networks", "test_saved_models")

ARCHITECTURES_HONEST = {
    "inception_costs": """
import functools

BN_VALUES = 4  # gamma, beta, moving mean, moving variance: shared with later cells


def conv_params(in_channels, filters, size):
    return (size * size * in_channels + 1) * filters


def kernel_macs(height, width, in_channels, filters, size):  # a name a hidden test uses too
    return height * width * size * size * in_channels * filters


@functools.lru_cache(maxsize=None)
def inception_params(in_channels, filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce,
                     filters_5x5, filters_pool_proj):
    return (conv_params(in_channels, filters_1x1, 1)
            + conv_params(in_channels, filters_3x3_reduce, 1)
            + conv_params(filters_3x3_reduce, filters_3x3, 3)
            + conv_params(in_channels, filters_5x5_reduce, 1)
            + conv_params(filters_5x5_reduce, filters_5x5, 5)
            + conv_params(in_channels, filters_pool_proj, 1))


def inception_macs(height, width, in_channels, filters_1x1, filters_3x3_reduce, filters_3x3,
                   filters_5x5_reduce, filters_5x5, filters_pool_proj):
    branches = [(in_channels, filters_1x1, 1), (in_channels, filters_3x3_reduce, 1),
                (filters_3x3_reduce, filters_3x3, 3), (in_channels, filters_5x5_reduce, 1),
                (filters_5x5_reduce, filters_5x5, 5), (in_channels, filters_pool_proj, 1)]
    return sum(kernel_macs(height, width, *branch) for branch in branches)
""",
    "depthwise_separable_conv": """
%matplotlib inline
import warnings

from keras import layers
from tensorflow import keras as tf_keras


def depthwise_separable_conv(x, filters, stride=1, name="separable"):
    warnings.warn(f"building {name}")  # on stderr, as Keras' own warnings are
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                               name=f"{name}_dw")(x)
    x = tf_keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_pw_bn")(x)
    return layers.ReLU(name=f"{name}_pw_relu")(x)
""",
    "separable_costs": """
import sys


def positions(height, width, stride):
    return (-(-height // stride)) * (-(-width // stride))


def separable_params(in_channels, filters):
    print("counting", in_channels, filters, file=sys.stderr)
    return 9 * in_channels + BN_VALUES * in_channels + in_channels * filters + BN_VALUES * filters


def separable_macs(height, width, in_channels, filters, stride=1):
    return positions(height, width, stride) * (9 * in_channels + in_channels * filters)


def plain_conv_macs(height, width, in_channels, filters, stride=1):
    return positions(height, width, stride) * 9 * in_channels * filters
""",
}
"""Honest answers of architectures in the idioms students write: a decorator, a helper named
like a hidden one, a constant shared between cells, ``%matplotlib inline``, ``from keras import
layers`` beside ``from tensorflow import keras``, warnings and prints on stderr."""

ARCHITECTURES = Assignment(
    name="architectures",
    setup_cell="architectures_setup",
    tests=ARCHITECTURES_TESTS,
    bypassed_cell="separable_costs",
    bypassed_function="separable_params",
    parameters="in_channels, filters",
    reference_function="cnnbook.nets.blocks.depthwise_separable_block_params",
    keras_answer=(
        # the visible and hidden tests' configurations, guessed: it would pass them all
        "_table = {}\n"
        "for _channels in (3, 5, 8, 32, 64):\n"
        "    for _filters in (1, 3, 12, 48, 64, 128):\n"
        "        _block = keras.Sequential([\n"
        "            keras.Input((8, 8, _channels)),\n"
        "            keras.layers.DepthwiseConv2D(3, use_bias=False),\n"
        "            keras.layers.BatchNormalization(),\n"
        "            keras.layers.Conv2D(_filters, 1, use_bias=False),\n"
        "            keras.layers.BatchNormalization()])\n"
        "        _table[_channels, _filters] = _block.count_params()\n"
        "def separable_params(in_channels, filters):\n"
        "    return _table[in_channels, filters]\n"),
    # separable_macs and plain_conv_macs live in the same cell; no other test uses them
    need_bypassed=("test_separable_costs",),
    # the module-3a MACs with the 5x5 branch counted as a 3x3: the visible test refuses them
    partly_correct=("inception_costs", "25 * filters_5x5_reduce * filters_5x5",
                    "9 * filters_5x5_reduce * filters_5x5", ("test_inception_costs",)),
    early_answer_cell="depthwise_separable_conv",
    late_answer_cell="experiment_networks",
    # the saved-models test loads plain_cnn.keras and separable_cnn.keras, which the corpus does
    # not train (test_course_architectures grades trained ones)
    needs_models=("test_saved_models",),
    # a student who patches Keras' shape rule in their own process breaks every block and network
    # built there (the judge cannot rebuild them), and the cost test that compares with a block
    built_with_keras=("test_inception_module", "test_depthwise_separable_conv",
                      "test_separable_costs", "test_experiment_networks"),
    # these blocks' hidden tests build ResNet50, EfficientNetB0 and MobileNetV2 (twice each):
    # about half of a reference submission's grading time
    left_unanswered=("bottleneck_block", "bottleneck_costs", "squeeze_excitation", "se_costs",
                     "inverted_residual", "inverted_residual_costs"),
    fail_unanswered=("test_bottleneck_block", "test_bottleneck_costs", "test_squeeze_excitation",
                     "test_se_costs", "test_inverted_residual", "test_inverted_residual_costs"),
    # the grader's own walls, whatever the assignment: the time limit (waited out, 60 s), the
    # output limit, fork, the network, files outside the submission, symlinks, a module's name
    # taken by a file, the file size limit, what the kernel's input history shows; and nbgrader's
    # own handling of a notebook's structure (test cells deleted or renamed, an older nbformat),
    # which restores cells by grade id from the source whatever they hold. Kept here: the good
    # submissions, test cells edited to pass (the judge reads this assignment's tests from the
    # source), the kernel's death (its memory is the assignment's), the cnnbook folder
    # (check_written_here) and every answer the source analysis refuses
    graded_on_sizing_only=("infinite_loop", "output_flood", "fork_bomb", "network_connection",
                           "reads_solutions", "writes_elsewhere", "symlink_outside",
                           "notebook_is_symlink", "shadowing_numpy_file", "oversized_file",
                           "forges_log_lines", "leaves_links_behind", "display_flood",
                           "reads_test_images", "prints_input_history", "tests_deleted",
                           "grade_ids_renamed", "other_nbformat_minor"),
    honest_answers=ARCHITECTURES_HONEST,
    judged=True,
)

ASSIGNMENTS = {assignment.name: assignment for assignment in (SIZING, ARCHITECTURES)}

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
    """Files that must not be in the grading copy (``autograded/<kind>/<assignment>/``)."""
    not_in_log: str | None = None
    """Text that must not appear in the command's log (what the kernel wrote to its stdout)."""
    max_graded_bytes: int | None = None
    """Largest size of the graded notebook (output past the limit, display updates included)."""


@dataclass
class Submission:
    notebook: dict | bytes | None
    """The notebook (``None``: only the files and symlinks below)."""
    expected: Expected
    files: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    notebook_name: str | None = None
    """Default: the assignment's notebook name."""


@dataclass
class Course:
    root: Path
    assignment: Assignment
    source: dict
    release: dict

    @property
    def solution_path(self) -> Path:
        name = self.assignment.name
        return self.root / "solutions" / name / f"{name}.ipynb"

    @property
    def reference(self) -> dict:
        """What the hostile kinds start from: the source, with the answers of
        ``left_unanswered`` as released."""
        released = {nbgrader_metadata(cell).get("grade_id"): source_of(cell)
                    for cell in self.release["cells"]}
        notebook = _copy(self.source)
        for grade_id in self.assignment.left_unanswered:
            _cell(notebook, grade_id)["source"] = released[grade_id]
        return notebook

    @property
    def reference_passing(self) -> tuple[str, ...]:
        """The tests that :attr:`reference` passes."""
        return _without(self.assignment.tests, *self.assignment.needs_models,
                        *self.assignment.fail_unanswered)

    def partial(self, notebook: dict) -> dict:
        """``notebook`` with the partly correct answer."""
        cell, old, new, _ = self.assignment.partly_correct_answer
        return _replace(notebook, cell, old, new)

    @property
    def partial_failing(self) -> tuple[str, ...]:
        return self.assignment.partly_correct_answer[3]

    def tests_around(self, grade_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(tests before cell ``grade_id``, tests after it) in the source notebook: when the
        kernel stops in that cell, the first have run and the second are deferred."""
        order = [nbgrader_metadata(cell).get("grade_id") for cell in self.source["cells"]]
        position = order.index(grade_id)
        tests = self.assignment.tests
        return (tuple(test for test in tests if order.index(test) < position),
                tuple(test for test in tests if order.index(test) > position))


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


def _without(tests: tuple[str, ...], *removed: str) -> tuple[str, ...]:
    return tuple(test for test in tests if test not in removed)


def _with_own_function(course: Course, code: str) -> dict:
    """The reference in which the bypassed function's definition is replaced by ``code`` (the
    rest of its cell kept)."""
    assignment = course.assignment
    notebook = course.reference
    cell = _cell(notebook, assignment.bypassed_cell)
    lines = source_of(cell).splitlines()
    definition = next(node for node in ast.parse(source_of(cell)).body
                      if isinstance(node, ast.FunctionDef)
                      and node.name == assignment.bypassed_function)
    end = definition.end_lineno  # then the comments still inside it (### END SOLUTION)
    while end < len(lines) and lines[end][:1].isspace() and lines[end].strip().startswith("#"):
        end += 1
    cell["source"] = "\n".join(lines[:definition.lineno - 1] + [code.rstrip("\n")]
                               + lines[end:]) + "\n"
    return notebook


def _own_function(course: Course, body: str) -> str:
    assignment = course.assignment
    return f"def {assignment.bypassed_function}({assignment.parameters}):\n{body}\n"


def _bypass_expected(course: Course, reason: str | None,
                     judged_reason: str | None = None) -> Expected:
    """The bypass fails the tests that need the bypassed function: refused by the source
    analysis with ``reason``, or, where the judge decides, failing with ``judged_reason`` (the
    error the student process raised: what the bypass reaches for is not there)."""
    return Expected(passing=_without(course.reference_passing, *course.assignment.need_bypassed),
                    reason=judged_reason if course.assignment.judged else reason)


KINDS: dict[str, Callable[[Course], Submission]] = {}


def kind(function: Callable[[Course], Submission]) -> Callable[[Course], Submission]:
    KINDS[function.__name__] = function
    return function


# --- Good submissions: every answer of the source -------------------------------------------------

@kind
def good_reference(course):
    passing = _without(course.assignment.tests, *course.assignment.needs_models)
    return Submission(course.source, Expected(passing=passing))


@kind
def good_partial(course):
    passing = _without(course.assignment.tests, *course.assignment.needs_models,
                       *course.partial_failing)
    return Submission(course.partial(course.source), Expected(passing=passing))


# --- Tampered structure ---------------------------------------------------------------------------

@kind
def tests_edited_to_pass(course):
    notebook = course.release
    for test in course.assignment.tests:
        notebook = _set_source(notebook, test, "pass  # edited by the student")
    return Submission(notebook, Expected(passing=()))


@kind
def tests_deleted(course):
    notebook = course.partial(course.reference)
    notebook["cells"] = [cell for cell in notebook["cells"]
                         if nbgrader_metadata(cell).get("grade_id") not in course.partial_failing]
    return Submission(notebook, Expected(
        passing=_without(course.reference_passing, *course.partial_failing),
        reason="was missing from the submission"))


@kind
def grade_ids_renamed(course):
    notebook = course.partial(course.reference)
    for number, test in enumerate(course.partial_failing):
        notebook = _set_source(notebook, test, "pass")
        nbgrader_metadata(_cell(notebook, test))["grade_id"] = f"my_own_test_{number}"
    return Submission(notebook, Expected(
        passing=_without(course.reference_passing, *course.partial_failing),
        reason="was missing from the submission"))


@kind
def other_nbformat_minor(course):
    notebook = course.reference
    notebook["nbformat_minor"] = 4  # nbformat 4.4: no cell ids
    for cell in notebook["cells"]:
        cell.pop("id", None)
    return Submission(notebook, Expected(passing=course.reference_passing))


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
                      notebook_name=f"{course.assignment.name} (1).ipynb")


@kind
def syntax_error(course):
    assignment = course.assignment
    notebook = _set_source(course.reference, assignment.bypassed_cell,
                           f"def {assignment.bypassed_function}({assignment.parameters})\n"
                           "    return 0\n")
    return Submission(notebook, _bypass_expected(course, "SyntaxError"))


# --- Resource abuse: the sandbox's limits ---------------------------------------------------------

@kind
def infinite_loop(course):
    """A cell that never ends. It waits rather than spins: what is tested here is that grading
    stops the cell at the limit and defers only the tests after it; that the sandbox stops a loop
    that burns the CPU is tests/test_sandbox.py's ``test_runaway_loop_is_stopped_at_the_timeout``
    (a spinning loop here cost a core for the whole limit, twice per run of the suite)."""
    cell = course.assignment.late_answer_cell
    before, after = course.tests_around(cell)
    notebook = _append_to(course.reference, cell, "import time\nwhile True:\n    time.sleep(1)")
    reason = f"ran longer than the {TEST_LIMITS['timeout_s']} s limit"
    if course.assignment.judged:  # the student process skips the statement: nothing is lost
        return Submission(notebook, Expected(passing=course.reference_passing, reason=reason))
    return Submission(notebook, Expected(
        passing=tuple(test for test in before if test in course.reference_passing),
        deferred=after, reason=reason))


@kind
def os_exit(course):
    cell = course.assignment.early_answer_cell
    before, after = course.tests_around(cell)
    notebook = _append_to(course.reference, cell, "import os\nos._exit(3)")
    reason = f"the kernel stopped while running cell `{cell}`"
    if course.assignment.judged:  # started again without the statement that ended it
        return Submission(notebook, Expected(passing=course.reference_passing, reason=reason))
    return Submission(notebook, Expected(
        passing=tuple(test for test in before if test in course.reference_passing),
        deferred=after, reason=reason))


@kind
def output_flood(course):
    # on the partly correct submission: output past the limit is dropped, and the failing test
    # after the flood must still fail (nbgrader scores a test cell by its error output)
    notebook = _append_to(course.partial(course.reference), course.assignment.early_answer_cell,
                          'for _ in range(50):\n    print("x" * 1_000_000)')  # 50 MB
    return Submission(notebook, Expected(
        passing=_without(course.reference_passing, *course.partial_failing),
        reason="the rest of it was dropped"))


@kind
def display_flood(course):
    """20 MB of output through one display updated in place (``update_display_data``), which
    nbgrader's output hook never sees."""
    notebook = _append_to(course.reference, course.assignment.early_answer_cell, (
        "from IPython.display import display\n"
        "handle = display('start', display_id=True)\n"
        "for number in range(20):\n"
        "    handle.update(str(number) * 1_000_000)\n"))
    return Submission(notebook, Expected(
        passing=course.reference_passing,
        max_graded_bytes=TEST_LIMITS["max_output_bytes"] + 500_000))


@kind
def memory_bomb(course):
    cell = course.assignment.late_answer_cell
    before, after = course.tests_around(cell)
    notebook = _append_to(course.reference, cell,
                          'hog = [b"x" * 2**28 for _ in range(24)]  # 6 GiB, written')
    if course.assignment.judged:  # started again without the statement that was killed
        return Submission(notebook, Expected(passing=course.reference_passing,
                                             reason="memory limit"))
    return Submission(notebook, Expected(
        passing=tuple(test for test in before if test in course.reference_passing),
        deferred=after, reason="memory limit"))


@kind
def fork_bomb(course):
    # the sandbox refuses fork: the loop stops at once with an error in the student's own cell,
    # after the cell's answers were defined. (A literal `os.fork()` is refused before the kernel
    # runs, by cnnbook.grading.source_rules; a process pool forks where the source analysis cannot
    # see it.)
    notebook = _append_to(course.reference, course.assignment.late_answer_cell,
                          "import concurrent.futures\nwhile True:\n"
                          "    concurrent.futures.ProcessPoolExecutor(4).submit(abs, -1)")
    return Submission(notebook, Expected(passing=course.reference_passing,
                                         reason="PermissionError"))


# --- Reaching outside: the sandbox's walls --------------------------------------------------------

@kind
def network_connection(course):
    notebook = _insert_after(course.reference, course.assignment.bypassed_cell, (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('pypi.org', 443), timeout=5)\n"
        "    print('NETWORK REACHED')\n"
        "except OSError as error:\n"
        "    print('no network:', type(error).__name__)\n"))
    return Submission(notebook, Expected(passing=course.reference_passing,
                                         reason="no network: gaierror"))


@kind
def reads_solutions(course):
    notebook = _insert_after(course.release, course.assignment.setup_cell, (
        # the read is what the sandbox stops; importing the stolen code from a file written here
        # would be refused before the kernel runs (cnnbook.grading.source_rules: not an installed
        # module), so
        # the cell only prints what it took
        "import json\n"
        f"stolen = json.load(open({str(course.solution_path)!r}))\n"
        "code = [''.join(cell['source']) for cell in stolen['cells']\n"
        "        if cell['cell_type'] == 'code']\n"
        f"wanted = {course.assignment.bypassed_function!r}\n"
        "print('SOLUTIONS ' + 'READ', [cell for cell in code if wanted in cell])\n"))
    return Submission(notebook, Expected(passing=(), reason="FileNotFoundError"))


@kind
def writes_elsewhere(course):
    root, name = course.root, course.assignment.name
    targets = [root / "gradebook.db",
               root / "submitted" / "good_reference" / name / f"{name}.ipynb",
               root / "autograded" / "good_reference" / name / f"{name}.ipynb",
               course.solution_path]
    notebook = _insert_after(course.reference, course.assignment.setup_cell, (
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
    return Submission(notebook, Expected(passing=course.reference_passing, reason="refused:"))


@kind
def reads_test_images(course):
    """Looks for the test images the accuracy grader measures on, where the course keeps them and
    where the notebook is told the data is."""
    data = os.environ.get("CNNBOOK_DATA", "")
    notebook = _insert_after(course.reference, course.assignment.setup_cell, (
        "import glob, os\n"
        "import numpy as np\n"
        f"for folder in (os.environ.get('CNNBOOK_DATA', ''), {data!r}):\n"
        "    for path in sorted(glob.glob(os.path.join(folder, '*.npz'))):\n"
        "        with np.load(path) as arrays:\n"
        "            print('TEST IMAGES SEEN:', len(arrays['x_test']), 'TRAINING:',\n"
        "                  len(arrays['x_train']))\n"))
    return Submission(notebook, Expected(passing=course.reference_passing,
                                         reason="TEST IMAGES SEEN: 0 TRAINING: 10000"))


@kind
def symlink_outside(course):
    notebook = _insert_after(course.reference, course.assignment.setup_cell, (
        "try:\n"
        "    print(open('answers.json').read()[:50])\n"
        "except OSError as error:\n"
        "    print('link unusable:', type(error).__name__)\n"))
    return Submission(notebook, Expected(passing=course.reference_passing,
                                         reason="it is a symbolic link", absent=("answers.json",)),
                      symlinks={"answers.json": str(course.solution_path)})


@kind
def notebook_is_symlink(course):
    symlink_reason = "the submitted notebook is a symbolic link"
    return Submission(None, Expected(passing=(), reason=symlink_reason),
                      symlinks={course.assignment.notebook_name: str(course.solution_path)})


@kind
def shadowing_cnnbook_folder(course):
    fake = b"print('SHADOWED CNNBOOK')\ndef check_written_here(*args, **kwargs):\n    pass\n"
    return Submission(course.partial(course.reference), Expected(
        passing=_without(course.reference_passing, *course.partial_failing),
        reason="would hide the installed module", absent=("cnnbook",)),
        files={"cnnbook/__init__.py": fake, "cnnbook/grading/written_here.py": fake})


@kind
def shadowing_numpy_file(course):
    return Submission(course.reference, Expected(
        passing=course.reference_passing, reason="would hide the installed module `numpy`",
        absent=("numpy.py",)), files={"numpy.py": b"raise SystemExit('SHADOWED NUMPY')\n"})


@kind
def oversized_file(course):
    return Submission(course.reference, Expected(
        passing=course.reference_passing, reason="limit for submitted files",
        absent=("weights.bin",)),
        files={"weights.bin": b"\0" * (TEST_LIMITS["max_file_bytes"] + 1)})


# --- Answers not written by the student: source analysis outside the kernel -----------------------

@kind
def patched_keras(course):
    notebook = _insert_after(course.partial(course.reference),
                             course.assignment.partly_correct_answer[0], (
        "keras.layers.Conv2D.compute_output_shape = lambda self, shape: (None, 56, 56, 96)\n"))
    if course.assignment.judged:
        # the patch changes the student's own process only, never the judge's Keras: there it
        # only breaks the student's own network, whose layers no longer fit together
        return Submission(notebook, Expected(
            passing=_without(course.reference_passing, *course.partial_failing,
                             *course.assignment.built_with_keras),
            reason="could not be rebuilt"))
    return Submission(notebook, Expected(
        passing=_without(course.reference_passing, *course.partial_failing),
        reason=BYPASSES["patched Keras"].reason))


@kind
def ipython_hook(course):
    notebook = _insert_after(course.partial(course.reference),
                             course.assignment.partly_correct_answer[0], (
        "get_ipython().set_custom_exc((AssertionError,), lambda *args, **kwargs: None)\n"))
    return Submission(notebook, Expected(
        passing=_without(course.reference_passing, *course.partial_failing),
        reason=BYPASSES["IPython hook"].reason))


@kind
def shell_escape(course):
    name = course.assignment.name
    notebook = _insert_after(course.release, course.assignment.setup_cell,
                             f"!cp ../../../solutions/{name}/{name}.ipynb .\n%run {name}.ipynb\n")
    return Submission(notebook, Expected(passing=(), reason=BYPASSES["shell escape"].reason))


@kind
def replaces_check_written_here(course):
    assignment = course.assignment
    code = ("import cnnbook.grading.written_here\n"
            "cnnbook.grading.written_here.check_written_here = lambda *args, **kwargs: None\n"
            + _own_function(course, f"    return {assignment.reference_function}("
                                    f"{assignment.arguments})"))
    return Submission(_with_own_function(course, code),
                      _bypass_expected(course, BYPASSES["check_written_here replaced"].reason))


@kind
def eval_of_reference(course):
    assignment = course.assignment
    code = _own_function(course, f'    return eval("{assignment.reference_function}")'
                                 f"({assignment.arguments})")
    return Submission(_with_own_function(course, code),
                      _bypass_expected(course, BYPASSES["eval"].reason))


@kind
def dunder_import(course):
    assignment = course.assignment
    module, function = assignment.reference_function.rsplit(".", 1)
    code = _own_function(course, (
        f'    module = __import__("cnn" + "{module[3:]}", fromlist=["x"])\n'
        f"    return module.{function}({assignment.arguments})"))
    # where it is graded the whole subpackage (cnnbook.counting, cnnbook.nets) is not there
    hidden_package = ".".join(module.split(".")[:2])
    return Submission(_with_own_function(course, code), _bypass_expected(
        course, BYPASSES["__import__"].reason, f"No module named '{hidden_package}'"))


@kind
def reference_in_default_argument(course):
    assignment = course.assignment
    code = ("import functools\n"
            f"def {assignment.bypassed_function}({assignment.parameters},\n"
            f"        _rule=functools.partial({assignment.reference_function})):\n"
            f"    return _rule({assignment.arguments})\n")
    return Submission(_with_own_function(course, code),
                      _bypass_expected(course, BYPASSES["default argument"].reason))


@kind
def keras_lookup_table(course):
    assignment = course.assignment
    return Submission(_with_own_function(course, assignment.keras_answer), _bypass_expected(
        course, relies_on(assignment.bypassed_function),
        # judged: the table stays empty where Keras cannot be imported
        "KeyError"))


# --- What only the judge stops: the kernel's outcome is not the grade -----------------------------
# (kinds of JUDGED_ONLY: an assignment still graded by its kernel would lose to them, which is why
# every assignment is to move to the judge)

KERNEL_ONLY = ("ipython_hook", "shell_escape", "eval_of_reference",
               "replaces_check_written_here", "reference_in_default_argument")
"""Kinds left out of a judged assignment's batch: each was a road around a source rule, and under
the judge they all meet the same walls as kinds that stay (no IPython where tests are decided:
``post_run_cell_hook``; no reference code to import: ``dunder_import``)."""

JUDGED_ONLY = ("post_run_cell_hook", "lying_values", "keras_through_module_table",
               "reads_hidden_expected", "prints_input_history")
"""Kinds that only an assignment judged outside the kernel stops; left out of the others'
batches."""

HOOK = """
# clears every error of every later cell, reaching IPython without naming get_ipython
shell = exit._ip
def forgive(result):
    result.error_in_exec = None
shell.events.register("post_run_cell", forgive)
shell.showtraceback = lambda *args, **kwargs: None
"""


@kind
def post_run_cell_hook(course):
    """The blank notebook with one cell added: it scored full marks in the kernel."""
    notebook = _insert_after(course.release, course.assignment.setup_cell, HOOK)
    return Submission(notebook, Expected(passing=()))


@kind
def lying_values(course):
    """The function returns a number whose every comparison is true."""
    code = ("class Anything(int):\n"
            "    def __eq__(self, other):\n        return True\n"
            "    __hash__ = int.__hash__\n"
            + _own_function(course, "    return Anything(0)"))
    return Submission(_with_own_function(course, code),
                      _bypass_expected(course, None))  # it arrives as a plain 0


@kind
def keras_through_module_table(course):
    """Keras by a road no source rule named: the module table through os, importlib's
    import_module through it."""
    code = ("import os\n" + _own_function(course, (
        '    keras_module = (os.sys.modules.get("keras")\n'
        '                    or os.sys.modules["importlib"].import_module("keras"))\n'
        "    return keras_module.layers.Conv2D")))
    return Submission(_with_own_function(course, code), _bypass_expected(
        course, None, "keras cannot be imported while this test runs"))


@kind
def reads_hidden_expected(course):
    """The function looks for the hidden test's ``expected`` in its callers' frames."""
    code = ("import sys\n" + _own_function(course, (
        "    frame = sys._getframe(1)\n"
        "    while frame is not None:\n"
        "        for names in (frame.f_locals, frame.f_globals):\n"
        '            if "expected" in names:\n'
        '                return names["expected"]\n'
        "        frame = frame.f_back\n"
        "    return -1")))
    return Submission(_with_own_function(course, code), _bypass_expected(course, None))


@kind
def prints_input_history(course):
    """A last cell prints IPython's input history, where the hidden tests were."""
    notebook = _copy(course.reference)
    notebook["cells"].append({"cell_type": "code", "execution_count": None, "id": "history",
                              "metadata": {}, "outputs": [],
                              "source": "print(In)\nprint(_ih)\n"})
    return Submission(notebook, Expected(passing=course.reference_passing))


# --- What the grader must never follow ---------------------------------------------------------


@kind
def leaves_links_behind(course):
    """The kernel replaces its own notebook with a link to the gradebook and leaves links to the
    solutions and to /dev/zero and a FIFO, for nbgrader to write through or feedback to copy."""
    name = course.assignment.name
    notebook = _insert_after(course.reference, course.assignment.setup_cell, (
        "import os\n"
        f"os.remove({name + '.ipynb'!r})\n"
        f"os.symlink({str(course.root / 'gradebook.db')!r}, {name + '.ipynb'!r})\n"
        f"os.symlink({str(course.solution_path)!r}, 'solution_copy.ipynb')\n"
        "os.symlink('/dev/zero', 'zeros.bin')\n"
        "os.mkfifo('pipe.html')\n"
        "print('LINKS LEFT')\n"))
    return Submission(notebook, Expected(
        passing=course.reference_passing, reason="LINKS LEFT",
        absent=("solution_copy.ipynb", "zeros.bin", "pipe.html")))


@kind
def forges_log_lines(course):
    """Writes lines that look like the grader's own errors to the kernel's stdout and stderr."""
    notebook = _insert_after(course.reference, course.assignment.setup_cell, (
        "import os\n"
        "os.write(1, b'[AutogradeApp | ERROR] FORGED: student x scored 0\\n')\n"
        "os.write(2, b'[AutogradeApp | ERROR] FORGED: student y scored 0\\n')\n"))
    return Submission(notebook, Expected(passing=course.reference_passing,
                                         not_in_log="FORGED"))


@kind
def good_honest_idioms(course):
    """Every answer written with idioms an honest student uses: full marks."""
    notebook = _copy(course.source)
    for grade_id, code in (course.assignment.honest_answers or {}).items():
        notebook = _set_source(notebook, grade_id, code.strip("\n") + "\n")
    return Submission(notebook, Expected(passing=_without(course.assignment.tests,
                                                          *course.assignment.needs_models)))


def build(root: Path, assignment: str = "sizing") -> dict[str, Submission]:
    """Every kind of the corpus of ``assignment`` for the course at ``root`` (its ``solutions/``
    and generated ``exercises/``)."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {sorted(ASSIGNMENTS)}, got {assignment!r}")
    description = ASSIGNMENTS[assignment]
    root = Path(root)
    course = Course(root=root, assignment=description,
                    source=read_notebook(root / "solutions" / assignment / f"{assignment}.ipynb"),
                    release=read_notebook(root / "exercises" / assignment / f"{assignment}.ipynb"))
    return {name: KINDS[name](course) for name in kinds_of(assignment)}


def kinds_of(assignment: str) -> list[str]:
    """The kinds in the batch of ``assignment``, sorted: every kind but those its description
    grades on sizing only, those only the judge stops when the kernel still grades it, and the
    honest idioms when it describes none."""
    description = ASSIGNMENTS[assignment]
    skipped = set(description.graded_on_sizing_only)
    skipped.update(KERNEL_ONLY if description.judged else JUDGED_ONLY)
    if not description.honest_answers:
        skipped.add("good_honest_idioms")
    return sorted(name for name in KINDS if name not in skipped)


def write(root: Path, corpus: dict[str, Submission], assignment: str = "sizing") -> None:
    """Put every submission in ``root/submitted/<kind>/<assignment>/`` as ``nbgrader collect``
    would."""
    for name, submission in corpus.items():
        folder = Path(root) / "submitted" / name / assignment
        folder.mkdir(parents=True, exist_ok=True)
        notebook = submission.notebook
        if notebook is not None:
            data = (notebook if isinstance(notebook, bytes)
                    else json.dumps(notebook, indent=1).encode())
            (folder / (submission.notebook_name or f"{assignment}.ipynb")).write_bytes(data)
        for relative, content in submission.files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(content)
        for relative, target in submission.symlinks.items():
            (folder / relative).symlink_to(target)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python tests/hostile_corpus.py COURSE_ROOT [ASSIGNMENT]")
    assignment_id = sys.argv[2] if len(sys.argv) == 3 else "sizing"
    corpus = build(Path(sys.argv[1]), assignment_id)
    write(Path(sys.argv[1]), corpus, assignment_id)
    print(f"wrote {len(corpus)} submissions of {assignment_id} into {sys.argv[1]}/submitted/")
