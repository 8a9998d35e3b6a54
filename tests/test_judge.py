"""Verdicts decided outside the student's process (cnnbook.grading).

The plain-data tests are fast. The judging tests run the real judge and student processes under
bubblewrap on variants of the sizing notebook: a hostile notebook gets no point for any test it
attacks, an honest notebook written with the idioms students use gets every point. Expected
outcomes come from what each variant does to which test, never from the judge's own output.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from hostile_corpus import HOOK, SIZING_HONEST
from nbgrader_course import nbgrader_metadata, read_notebook, source_of

from cnnbook.grading import judge_side, plain_data, sandbox, verdicts
from cnnbook.grading.student_side import encode

SIZING_TESTS = ("test_output_size_valid", "test_output_size_same",
                "test_output_size_explicit_padding", "test_output_size_rejects_bad_arguments",
                "test_toy_shape_table", "test_alexnet_first_layer", "test_toy_network_shapes")


# --- plain data --------------------------------------------------------------------------------


def _round_trip(value):
    return plain_data.decode(json.loads(json.dumps(encode(value))))


def test_plain_values_cross_as_exact_builtin_types():
    value = {"shape": (3, (4, 5)), "sizes": [1, 2.5, float("inf")], 7: None, "flag": True,
             "numpy": np.int64(30)}
    decoded = _round_trip(value)
    assert decoded == {"shape": (3, (4, 5)), "sizes": [1, 2.5, float("inf")], 7: None,
                       "flag": True, "numpy": 30}
    assert type(decoded["shape"]) is tuple and type(decoded["numpy"]) is int
    array = np.arange(12, dtype="float32").reshape(3, 4)
    assert np.array_equal(_round_trip(array), array)


def test_a_subclass_crosses_as_the_plain_value_it_holds_and_loses_its_methods():
    """A tuple whose == is always true arrives as a plain tuple: it equals what it holds and
    nothing else. A namedtuple or an OrderedDict (honest idioms) arrive as their plain values."""
    import collections

    class AlwaysEqual(tuple):
        def __eq__(self, other):
            return True

    decoded = _round_trip(AlwaysEqual((1, 2)))
    assert type(decoded) is tuple and decoded == (1, 2) and decoded != (9, 9)
    shape = collections.namedtuple("Shape", "height width channels")(32, 32, 3)
    assert _round_trip({"conv": shape}) == {"conv": (32, 32, 3)}
    ordered = _round_trip(collections.OrderedDict([("b", 1), ("a", 2)]))
    assert type(ordered) is dict and list(ordered) == ["b", "a"]

    class Odd(int):
        def __eq__(self, other):
            return True

    assert _round_trip(Odd(7)) == 7 and _round_trip(Odd(7)) != 8


def test_an_object_that_is_not_plain_data_is_refused_and_equals_nothing():
    decoded = _round_trip(object())
    assert isinstance(decoded, plain_data.Refused)
    assert decoded != decoded and "not plain data" in repr(decoded)


@pytest.mark.parametrize("forged", [
    {"__tuple__": "not a list"}, {"__builtins__": 1}, {"a": 1, "b": 2},
    {"__ndarray__": {"dtype": "object", "shape": [1], "data": ""}},
    {"__ndarray__": {"dtype": "<f4", "shape": [10**9, 10**9], "data": ""}},
    {"__dict__": [[[1, 2], 3]]},
])
def test_forged_data_is_malformed(forged):
    with pytest.raises(plain_data.MalformedAnswer):
        plain_data.decode(forged)


def test_a_model_config_may_name_keras_classes_only():
    forged = {"module": "os", "class_name": "system", "config": "touch /tmp/owned"}
    with pytest.raises(plain_data.MalformedAnswer, match="not part of Keras"):
        plain_data.keras_model_from_config(json.dumps(forged))


def test_a_model_crosses_with_its_weights_and_the_courses_layers_only():
    import keras

    from cnnbook.course.layers import ZeroPadShortcut

    images = keras.Input((8, 8, 4))
    model = keras.Model(images, ZeroPadShortcut(6, 2, name="pad")(
        keras.layers.Conv2D(4, 1, name="mix")(images)))
    model.get_layer("mix").kernel.assign(np.full((1, 1, 4, 4), 0.25, "float32"))
    decoded = _round_trip(model)
    assert type(decoded.get_layer("pad")) is ZeroPadShortcut
    assert np.allclose(decoded.get_layer("mix").kernel.numpy(), 0.25)
    # a student process may not send the judge an input tensor, nor a weight that is no array
    with pytest.raises(plain_data.MalformedAnswer):
        plain_data.decode({"__keras_input__": {"shape": [3], "dtype": "float32"}})
    forged = encode(model)
    forged["__keras_model__"]["weights"] = [1, 2]
    with pytest.raises(plain_data.MalformedAnswer, match="not an array"):
        plain_data.decode(json.loads(json.dumps(forged)))
    # a class of another module, even one that names a course layer's class, is refused
    config = json.loads(model.to_json())
    config["config"]["layers"][-1]["module"] = "cnnbook.grading.verdicts"
    with pytest.raises(plain_data.MalformedAnswer, match="not part of Keras"):
        plain_data.keras_model_from_config(json.dumps(config))


def test_the_judge_reads_forbidden_packages_and_free_names_of_a_test_cell():
    source = ('check_written_here(f, forbid=("keras", "tensorflow"))\n'
              "def helper(x):\n    return g(x) + len(x)\nassert helper(toy) == 3\n")
    # a function forbidden Keras in one cell is judged without Keras in every cell
    declared = judge_side.declared_forbids(source)
    assert declared == {"f": {"keras", "tensorflow"}}
    assert judge_side.function_forbid("f", declared) == ("keras", "tensorflow")
    assert judge_side.function_forbid("h", declared) == ()
    assert judge_side.declared_forbids("assert f(1) == 2") == {}
    # a loop over the functions checked declares each of them, not the loop's variable
    looped = judge_side.declared_forbids(
        "for function in (area, volume):\n    check_written_here(function, forbid=('keras',))\n")
    assert looped == {"area": {"keras"}, "volume": {"keras"}}
    assert judge_side.free_names(source) == ["check_written_here", "f", "helper", "toy", "g", "x"]


def test_every_student_process_a_test_will_ask_for_starts_at_once(repo_root):
    """Values are read where every forbidden package is hidden, a forbidden function where its
    packages are, and a function no test restricts where nothing is: each starts before the
    first request (started at that request, its cells ran after the others' had)."""
    tests = ['check_written_here(f, forbid=("keras",))\nassert f(2) == 4',
             "check_written_here(build)\nassert build().count_params() == TABLE",
             "assert helper(3) == 1"]
    declared = {"f": {"keras"}}
    # build: a function of the student's that a test reads unrestricted; TABLE is a value;
    # helper is read but is not the student's function; g is the student's but no test reads it
    assert judge_side.preloaded_modes(tests, declared, {"f", "build", "g"}) == [("keras",), ()]
    assert judge_side.preloaded_modes(tests[:1], declared, {"f", "build"}) == [("keras",)]
    assert judge_side.preloaded_modes(tests[2:], {}, {"helper"}) == [()]
    # sizing: build_toy_network's test forbids nothing, the cost functions hide Keras and
    # TensorFlow; both processes start at once
    source = read_notebook(repo_root / "solutions" / "sizing" / "sizing.ipynb")
    job = verdicts.notebook_job(source, source)
    test_sources = [source for _, source in job.tests]
    declared = {}
    for test in test_sources:
        for name, packages in judge_side.declared_forbids(test).items():
            declared.setdefault(name, set()).update(packages)
    functions = set().union(*(verdicts._top_level_functions(cell) for cell in job.student_cells))
    assert "build_toy_network" in functions and "build_toy_network" not in declared
    assert judge_side.preloaded_modes(test_sources, declared, functions) == [
        ("keras", "tensorflow"), ()]
    # a cell that does not parse defines nothing, and breaks nothing
    assert verdicts._top_level_functions("def f(:\n") == set()
    assert verdicts._top_level_functions("x = 1\0") == set()
    assert verdicts._top_level_functions("def f(x):\n    return x\ng = f") == {"f"}


def test_the_judge_looks_up_only_what_the_answer_cells_define(repo_root):
    """An instructor's constant and a test's own helper are never read from the student."""
    source = read_notebook(repo_root / "solutions" / "parameters" / "parameters.ipynb")
    job = verdicts.notebook_job(source, source)
    assert {"conv2d_params", "layer_table", "network_totals", "vgg16_total_params"} <= set(
        job.answer_names)
    assert "VGG16_LAYERS" not in job.answer_names and "keras_vgg16" not in job.answer_names
    # the instructor's later cells run in the judge at their place among the tests
    instructor_cells = [source for grade_id, source in job.tests if grade_id is None]
    assert any("VGG16_LAYERS = [" in cell for cell in instructor_cells)
    assert [grade_id for grade_id, _ in job.tests if grade_id is not None] == [
        cell["metadata"]["nbgrader"]["grade_id"] for cell in source["cells"]
        if cell["metadata"].get("nbgrader", {}).get("grade")]


# --- judging the sizing notebook ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sizing_source(repo_root):
    return read_notebook(repo_root / "solutions" / "sizing" / "sizing.ipynb")


def _cell(notebook: dict, grade_id: str) -> dict:
    return next(cell for cell in notebook["cells"] if nbgrader_metadata(cell).get("grade_id")
                == grade_id)


def _variant(source: dict, replace: dict[str, str] | None = None,
             add_after_setup: str | None = None) -> dict:
    """A copy of the sizing source with answer cells replaced and a cell added after set-up."""
    notebook = json.loads(json.dumps(source))
    for grade_id, code in (replace or {}).items():
        _cell(notebook, grade_id)["source"] = code
    if add_after_setup is not None:
        index = notebook["cells"].index(_cell(notebook, "sizing_setup"))
        notebook["cells"].insert(index + 1, {"cell_type": "code", "metadata": {},
                                             "source": add_after_setup, "outputs": [],
                                             "execution_count": None})
    return notebook


DEFAULT_LIMITS = verdicts.Limits()


def _judge(submission: dict, source: dict, limits: verdicts.Limits = DEFAULT_LIMITS
           ) -> dict[str, verdicts.Verdict]:
    try:
        sandbox.require_sandbox()
    except sandbox.SandboxUnavailable as error:
        pytest.fail(f"the judge needs bubblewrap: {error} (make system installs it)")
    job = verdicts.notebook_job(submission, source)
    return {verdict.grade_id: verdict for verdict in verdicts.judge_notebook(
        job.student_cells, job.setup_cells, job.tests, limits=limits,
        setup_count=job.setup_count, answer_names=job.answer_names)}


@pytest.mark.slow
def test_blank_notebook_with_the_hook_that_forged_full_marks_scores_zero(repo_root,
                                                                          sizing_source):
    blank = read_notebook(repo_root / "exercises" / "sizing" / "sizing.ipynb")
    notebook = json.loads(json.dumps(blank))
    index = notebook["cells"].index(_cell(notebook, "sizing_setup"))
    notebook["cells"].insert(index + 1, {"cell_type": "code", "metadata": {}, "outputs": [],
                                         "source": HOOK, "execution_count": None})
    results = _judge(notebook, sizing_source)
    assert set(results) == set(SIZING_TESTS)
    assert all(verdict.passed is False for verdict in results.values()), results


ATTACKS = {
    # Keras by roads the source rules missed: the module table, importlib, builtins' eval
    "output_size": '''
import math, os
def output_size(input_size, kernel_size, stride=1, padding="valid"):
    keras = os.sys.modules.get("keras") or os.sys.modules["importlib"].import_module("keras")
    if isinstance(padding, int):
        padding_layer = keras.layers.ZeroPadding2D(padding)
        shape = padding_layer.compute_output_shape((1, input_size, input_size, 1))
        input_size, padding = shape[1], "valid"
    layer = keras.layers.Conv2D(1, kernel_size, strides=stride, padding=padding)
    return layer.compute_output_shape((1, input_size, input_size, 1))[1]
''',
    # values that lie: every comparison with them is true
    "toy_shapes": '''
class Shape(tuple):
    def __eq__(self, other):
        return True
    __hash__ = tuple.__hash__
class Table(dict):
    def __eq__(self, other):
        return True
def toy_shape_table(image_size=32, filters=12, classes=10):
    names = ["input", "conv", "relu", "pool", "flatten", "fc"]
    return Table({name: Shape() for name in names})
toy_shapes = {"input": (32, 32, 3), "conv": (32, 32, 12), "relu": (32, 32, 12),
              "pool": (16, 16, 12), "flatten": (3072,), "fc": (10,)}
''',
    # reads the hidden test's `expected` from the caller's frame; ends its process on AlexNet
    "alexnet_answers": '''
import os, sys
def valid_conv_numbers(input_size, kernel_size=11, stride=4, filters=96):
    frame = sys._getframe(1)
    expected = frame.f_globals.get("expected_size") or frame.f_locals.get("expected_size")
    if input_size == 227:
        os._exit(0)
    return {"output_shape": (expected, expected, filters), "exact": 0, "keras_size": expected,
            "unused_rows": 0}
alexnet_conv1_shape = (55, 55, 96)
alexnet_224_exact, alexnet_224_keras_size, alexnet_224_unused_rows = 54.25, 54, 1
''',
}


@pytest.mark.slow
def test_attacks_fail_the_tests_they_attack_and_no_other(sizing_source):
    results = _judge(_variant(sizing_source, ATTACKS), sizing_source)
    attacked = {"test_output_size_valid", "test_output_size_same",
                "test_output_size_explicit_padding", "test_output_size_rejects_bad_arguments",
                "test_toy_shape_table", "test_alexnet_first_layer"}
    failed = {grade_id for grade_id, verdict in results.items() if verdict.passed is False}
    assert failed == attacked, results
    # the toy network uses none of the attacked functions: it still passes
    assert results["test_toy_network_shapes"].passed is True
    assert "keras cannot be imported" in results["test_output_size_valid"].message
    # the Table of always-equal Shapes arrives as a dict of empty tuples, and () is not a shape
    assert results["test_toy_shape_table"].message.startswith("AssertionError")
    # the process that ended itself on AlexNet's input was started afresh for the next test
    assert "stopped while it ran valid_conv_numbers" in results["test_alexnet_first_layer"].message
    assert results["test_toy_network_shapes"].passed is True


@pytest.mark.slow
def test_honest_idioms_get_every_point(sizing_source):
    results = _judge(_variant(sizing_source, SIZING_HONEST), sizing_source)
    assert all(verdict.passed is True for verdict in results.values()), results


@pytest.mark.slow
def test_a_statement_that_hangs_or_ends_the_process_loses_only_itself(sizing_source):
    """The kernel would stop at these cells; the student process skips each statement that runs
    past its time or ends the process, and the functions defined before and after still answer.
    The process that exits is started again without that statement."""
    notebook = _variant(sizing_source)
    for grade_id, code in (("toy_shapes", "import os\nos._exit(3)"),
                           ("alexnet_answers", "import time\nwhile True:\n    time.sleep(1)")):
        _cell(notebook, grade_id)["source"] = f"{source_of(_cell(notebook, grade_id))}\n{code}\n"
    results = _judge(notebook, sizing_source, verdicts.Limits(statement_s=3))
    assert all(verdict.passed is True for verdict in results.values()), results


@pytest.mark.slow
def test_a_process_that_cannot_answer_fails_only_its_tests(sizing_source):
    """A call that never returns, and an answer too large to send, fail their tests (the
    student's doing); the others pass."""
    notebook = _variant(sizing_source, {"alexnet_answers": source_of(
        _cell(sizing_source, "alexnet_answers")).replace(
        "    ### BEGIN SOLUTION\n    keras_size",
        "    ### BEGIN SOLUTION\n    while input_size == 32 and kernel_size == 5:\n        pass\n"
        "    keras_size", 1)})
    _cell(notebook, "toy_shapes")["source"] = source_of(_cell(notebook, "toy_shapes")).replace(
        'return {\n        "input"',
        'return {**({"padding": "x" * 30_000_000} if image_size != 32 else {}),\n        "input"')
    results = _judge(notebook, sizing_source, verdicts.Limits(call_s=5, statement_s=5))
    failed = {grade_id for grade_id, verdict in results.items() if verdict.passed is False}
    assert failed == {"test_alexnet_first_layer", "test_toy_shape_table"}, results
    assert "no answer within 5 s" in results["test_alexnet_first_layer"].message
    assert "more than" in results["test_toy_shape_table"].message


@pytest.mark.slow
def test_slow_functions_that_use_up_the_notebooks_time_fail_not_defer(sizing_source):
    """Making every call slow must not turn the tests into manual grading (the grader's time
    ran out, but the student's code spent it): the tests not reached fail."""
    slow = _variant(sizing_source, {"output_size": source_of(
        _cell(sizing_source, "output_size")).replace(
        "    ### BEGIN SOLUTION\n",
        "    ### BEGIN SOLUTION\n    import time\n    time.sleep(0.2)\n", 1)})
    results = _judge(slow, sizing_source, verdicts.Limits(notebook_s=20))
    assert all(verdict.passed is not None for verdict in results.values()), results
    assert "your functions took" in results["test_output_size_valid"].message, results


@pytest.mark.slow
def test_time_the_judge_holds_a_students_network_is_the_students(sizing_source):
    """A network the student's function returns is rebuilt and run in the judge, not in a
    student process: from its rebuilding to the test's verdict the time is the student's. The
    first test holds the student's toy network for 40 s (its sleep stands for a network slow to
    rebuild or run), the next spends the grader's time until the notebook's 70 s are up: the
    student's share is more than half of the time since the judge was ready, so the tests not
    reached fail, not defer (before the held time counted, they went to manual grading)."""
    held = json.loads(json.dumps(sizing_source))
    _cell(held, "test_output_size_valid")["source"] = (
        "import time\n_network = build_toy_network()\ntime.sleep(40)\n"
        f"{source_of(_cell(held, 'test_output_size_valid'))}")
    _cell(held, "test_output_size_same")["source"] = (
        f"import time\ntime.sleep(10_000)\n{source_of(_cell(held, 'test_output_size_same'))}")
    results = _judge(_variant(held), held, verdicts.Limits(notebook_s=70))
    assert results.pop("test_output_size_valid").passed is True
    assert all(verdict.passed is False for verdict in results.values()), results
    message = results["test_output_size_same"].message
    assert "your functions took" in message and "networks they returned" in message, results
    assert int(message.split("took ")[1].split(" s")[0]) >= 40, message


@pytest.mark.slow
def test_tests_that_use_up_the_notebooks_time_go_to_manual_grading(sizing_source):
    """The other side of the same limit: when the instructor's own tests spend the notebook's
    time (the student's functions answer at once), the tests not reached are the grader's
    failure, never the student's zero."""
    slow_tests = json.loads(json.dumps(sizing_source))
    for grade_id in ("test_output_size_valid", "test_output_size_same"):
        _cell(slow_tests, grade_id)["source"] = (
            f"import time\ntime.sleep(12)\n{source_of(_cell(slow_tests, grade_id))}")
    results = _judge(_variant(slow_tests), slow_tests, verdicts.Limits(notebook_s=20))
    not_reached = {grade_id for grade_id, verdict in results.items() if verdict.passed is None}
    assert "test_toy_network_shapes" in not_reached, results
    assert all(verdict.passed is not False for verdict in results.values()), results
    assert "judging the notebook took longer than 20 s" in (
        results["test_toy_network_shapes"].message), results


FORGED_SETUP_FAILURE = """
import json
_dumps = json.dumps
def _forging(message, *args, **kwargs):  # adds an instructor's failure to the process's report
    if isinstance(message, dict) and message.get("loaded"):
        message = {**message, "errors": [{"cell": 0, "type": "RuntimeError", "module": None,
                                          "message": "forged"}]}
    return _dumps(message, *args, **kwargs)
json.dumps = _forging
"""

MODEL_BOMB = """
import json, sys, types
class Bomb:  # poses as a Keras model whose rebuilding needs far more memory than allowed
    def to_json(self):
        start = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                 "config": {"batch_shape": [None, 20000], "dtype": "float32", "name": "in"}}
        dense = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                 "config": {"units": 20000, "kernel_initializer": "ones", "name": "huge"}}
        return json.dumps({"module": "keras", "class_name": "Sequential", "registered_name": None,
                           "config": {"name": "bomb", "layers": [start, dense]}})
    def get_weights(self):
        return []
sys.modules["keras"] = types.SimpleNamespace(Model=Bomb)
def output_size(input_size, kernel_size, stride=1, padding="valid"):
    return Bomb()
"""


@pytest.mark.slow
def test_what_student_code_reports_or_returns_cannot_buy_manual_grading(sizing_source):
    """Two ways a student tried to turn zeros into manual grading: forging an instructor's set-up
    failure in the process's own report (only the report sent before any student statement is
    believed), and returning a model the judge cannot rebuild within its memory (the student's
    model: every test not yet decided fails)."""
    forged = _variant(sizing_source, {"output_size": "def output_size(*args):\n    return 0\n"},
                      add_after_setup=FORGED_SETUP_FAILURE)
    results = _judge(forged, sizing_source)
    assert all(verdict.passed is not None for verdict in results.values()), results
    assert results["test_output_size_valid"].passed is False
    assert results["test_toy_network_shapes"].passed is False  # toy_shapes is gone with it
    bomb = _variant(sizing_source, {"output_size": MODEL_BOMB})
    results = _judge(bomb, sizing_source, verdicts.Limits(memory_bytes=1536 * 2**20))
    assert all(verdict.passed is False for verdict in results.values()), results
    assert "could not be rebuilt" in results["test_output_size_valid"].message


@pytest.mark.slow
def test_a_broken_setup_is_the_graders_failure_not_the_students_zero(sizing_source):
    broken = json.loads(json.dumps(sizing_source))
    _cell(broken, "sizing_setup")["source"] = source_of(_cell(broken, "sizing_setup")) + \
        "\nimport cnnbook.not_a_module\n"
    results = _judge(_variant(sizing_source), broken)
    assert all(verdict.passed is None for verdict in results.values()), results
    assert "set-up" in results["test_output_size_valid"].message


# --- judging networks: blocks on the judge's input, models both ways, submitted files -----------

NETWORK_CELLS = [
    ("setup", "locked", (
        "import os\n\nimport keras\nimport numpy as np\n"
        "from cnnbook.course.inputs import image_input\n"
        "from cnnbook.course.layers import ZeroPadShortcut\n\n"
        "def block_model(shape, build, **hyperparameters):\n"
        "    inputs = keras.Input(shape=shape)\n"
        "    return keras.Model(inputs, build(inputs, **hyperparameters))\n")),
    ("answers", "solution", (
        "def shortcut_block(x, filters, stride=1, name='b'):\n"
        "    y = keras.layers.Conv2D(filters, 3, strides=stride, padding='same',\n"
        "                            name=f'{name}_conv')(x)\n"
        "    s = ZeroPadShortcut(filters, stride, name=f'{name}_shortcut')(x)\n"
        "    return keras.layers.Add(name=f'{name}_add')([y, s])\n\n"
        "def network():\n"
        "    images = image_input()\n"
        "    pooled = keras.layers.GlobalAveragePooling2D()(images)\n"
        "    return keras.Model(images, keras.layers.Dense(3, name='logits')(pooled))\n\n"
        "def copy_of(model):\n"
        "    clone = keras.models.clone_model(model)\n"
        "    clone.set_weights(model.get_weights())\n"
        "    return clone\n\n"
        "def reference_network():\n"
        "    import cnnbook.nets.models\n"
        "    return cnnbook.nets.models.toy_cnn()\n\n"
        "def files_here():\n"
        "    return sorted(os.listdir('.'))\n")),
    ("load", "locked", "trained = keras.models.load_model('net.keras')\n"),
    ("test_block", "test", (
        "block = block_model((8, 8, 4), shortcut_block, filters=6, stride=2, name='s')\n"
        "assert tuple(block.output.shape[1:]) == (4, 4, 6)\n"
        "assert sorted(type(layer).__name__ for layer in block.layers[1:]) == [\n"
        "    'Add', 'Conv2D', 'ZeroPadShortcut']\n"
        "assert block.get_layer('s_conv').count_params() == 9 * 4 * 6 + 6\n")),
    ("test_models_both_ways", "test", (
        "model = network()\n"
        "images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype('float32')\n"
        "assert np.allclose(copy_of(model)(images), model(images), atol=1e-5)\n"
        "model.set_weights([np.full(weight.shape, 0.5, 'float32') for weight in model.weights])\n"
        "copied = copy_of(model)\n"
        "assert np.allclose(copied.get_layer('logits').kernel.numpy(), 0.5)\n")),
    ("test_no_reference_code", "test", "assert reference_network() is not None\n"),
    ("test_submitted_file", "test", "assert trained.count_params() == 4 * 3 + 3\n"),
    ("test_only_named_files", "test", (
        "assert files_here() == ['net.keras'], files_here()\n"
        "assert sorted(os.listdir('.')) == ['net.keras'], os.listdir('.')\n")),
]


def _network_notebook() -> dict:
    cells = []
    for grade_id, kind, source in NETWORK_CELLS:
        metadata = {"grade_id": grade_id, "schema_version": 3, "task": False,
                    "locked": kind != "solution", "solution": kind == "solution",
                    "grade": kind == "test"}
        if kind == "test":
            metadata["points"] = 1
        cells.append({"cell_type": "code", "execution_count": None, "outputs": [],
                      "metadata": {"nbgrader": metadata}, "source": source})
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.slow
def test_networks_cross_as_layers_and_weights_and_files_are_read_only_when_regular(tmp_path):
    """A block called on the judge's Keras input comes back as its layers, joined to that input
    (names and classes kept, the course's ZeroPadShortcut included); a model travels with its
    weights both ways; cnnbook's reference networks are not importable; the instructor's cell
    loads the submitted file, and a link in its place is never followed."""
    import keras

    sandbox.require_sandbox()
    notebook = _network_notebook()
    job = verdicts.notebook_job(notebook, notebook)
    assert [grade_id for grade_id, _ in job.tests] == [
        None, "test_block", "test_models_both_ways", "test_no_reference_code",
        "test_submitted_file", "test_only_named_files"]
    assert job.submitted_files == ["net.keras"]
    files = tmp_path / "submission"
    files.mkdir()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.save(files / "net.keras")
    # what the notebook does not name never reaches a grading process: a matplotlibrc (read by
    # every import of Matplotlib in its folder), other files
    (files / "matplotlibrc").write_text("axes.titlesize: 99\n")
    (files / "notes.txt").write_text("mine\n")

    def judged(folder):
        return {verdict.grade_id: verdict for verdict in verdicts.judge_notebook(
            job.student_cells, job.setup_cells, job.tests, folder,
            setup_count=job.setup_count, answer_names=job.answer_names,
            file_names=job.submitted_files)}

    results = judged(files)
    assert results["test_block"].passed, results["test_block"]
    assert results["test_models_both_ways"].passed, results["test_models_both_ways"]
    assert results["test_submitted_file"].passed, results["test_submitted_file"]
    assert results["test_only_named_files"].passed, results["test_only_named_files"]
    assert results["test_no_reference_code"].passed is False
    assert "No module named 'cnnbook.nets'" in results["test_no_reference_code"].message

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "net.keras").symlink_to(files / "net.keras")
    results = judged(linked)
    verdict = results["test_submitted_file"]
    assert verdict.passed is False, verdict
    assert "NameError" in verdict.message and "has no file 'net.keras'" in verdict.message, verdict
    assert results["test_block"].passed, "the other tests still count"


GRAPH_BOMB = """
import json

_to_json = keras.Model.to_json

def _huge(self, **options):  # every convolution the judge rebuilds gets 60 million filters
    config = json.loads(_to_json(self, **options))
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Conv2D":
            layer["config"]["filters"] = 60_000_000
            layer["config"]["kernel_initializer"] = {
                "module": "keras.initializers", "class_name": "Zeros", "config": {},
                "registered_name": None}
    return json.dumps(config)

keras.Model.to_json = _huge
"""


@pytest.mark.slow
def test_layers_that_kill_the_judge_fail_the_student_and_a_lambda_is_refused(tmp_path):
    """A block whose layers, as sent, need more memory than the judge has: the tests still open
    fail (the student's network killed the judge), never go to manual grading. A Lambda layer
    (its output shape is what its config declares) is refused."""
    notebook = _network_notebook()
    answers = notebook["cells"][1]
    lambda_notebook = json.loads(json.dumps(notebook))
    answers["source"] += GRAPH_BOMB
    job = verdicts.notebook_job(notebook, _network_notebook())
    results = {verdict.grade_id: verdict for verdict in verdicts.judge_notebook(
        job.student_cells, job.setup_cells, job.tests, None,
        verdicts.Limits(memory_bytes=2**30), setup_count=job.setup_count,
        answer_names=job.answer_names)}
    assert all(verdict.passed is False for verdict in results.values()), results
    assert "could not be rebuilt or run" in results["test_block"].message, results["test_block"]
    lambda_notebook["cells"][1]["source"] = lambda_notebook["cells"][1]["source"].replace(
        "return keras.layers.Add(name=f'{name}_add')([y, s])",
        "return keras.layers.Lambda(keras.ops.relu, output_shape=(4, 4, 6))(\n"
        "        keras.layers.Add(name=f'{name}_add')([y, s]))")
    job = verdicts.notebook_job(lambda_notebook, _network_notebook())
    verdict = verdicts.judge_notebook(job.student_cells, job.setup_cells, job.tests[:2], None,
                                      setup_count=job.setup_count,
                                      answer_names=job.answer_names)[0]
    assert verdict.passed is False and "Lambda layer" in verdict.message, verdict


@pytest.mark.slow
def test_an_instructor_cell_the_grader_cannot_run_defers_the_failing_tests():
    """A locked cell of the instructor's that passes the student's function something the grader
    cannot send is the grader's failure: the tests that fail after it go to manual grading, and
    those that pass keep their points."""
    notebook = _network_notebook()
    notebook["cells"][2]["source"] = "trained = copy_of(object())\n"
    job = verdicts.notebook_job(notebook, notebook)
    results = {verdict.grade_id: verdict for verdict in verdicts.judge_notebook(
        job.student_cells, job.setup_cells, job.tests, None, setup_count=job.setup_count,
        answer_names=job.answer_names)}
    assert results["test_block"].passed is True, results["test_block"]
    deferred = results["test_submitted_file"]
    assert deferred.passed is None and "cannot send" in deferred.message, deferred


def test_a_judged_assignment_is_not_graded_without_the_sandbox(tmp_path):
    """Judging hides the reference code and Keras with the sandbox's mounts: with the sandbox
    turned off, autograde stops and says what to do, instead of grading without those walls."""
    import nbformat
    from traitlets.config import Config

    from cnnbook.grading import nbgrader_steps as autograde

    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.GradingSandbox.enabled = False
    resources = {"nbgrader": {"student": "ann", "assignment": "sizing", "notebook": "sizing"}}
    with pytest.raises(SystemExit, match="needs the grading sandbox"):
        autograde.JudgeOutsideKernel(config=config).preprocess(nbformat.v4.new_notebook(),
                                                               resources)
    # an assignment the kernel grades is left alone
    config.JudgeOutsideKernel.assignments = ["sizing"]
    other = {"nbgrader": {**resources["nbgrader"], "assignment": "resnet"}}
    notebook = nbformat.v4.new_notebook()
    assert autograde.JudgeOutsideKernel(config=config).preprocess(notebook, other)[0] is notebook


def test_a_kernel_stopped_before_its_first_cell_notes_it_on_a_code_cell(tmp_path):
    """For a judged assignment a kernel that cannot run (here: the data folder is missing) costs
    only feedback; the note goes on the first code cell, never on a markdown cell (which has no
    outputs: writing there failed the whole submission)."""
    import nbformat
    from traitlets.config import Config

    from cnnbook.grading import nbgrader_steps as autograde

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("intro"),
                                               nbformat.v4.new_code_cell("x = 1")])
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.GradingSandbox.readonly_paths = [str(tmp_path / "missing-data")]
    resources = {"nbgrader": {"student": "ann", "assignment": "sizing", "notebook": "sizing"},
                 "metadata": {"path": str(tmp_path)}}
    autograde.SandboxedExecute(config=config)._execute(notebook, resources, None, judged=True)
    note = notebook.cells[1].outputs[0]["text"]
    assert "your notebook stopped here" in note and "missing-data" in note
    assert not resources.get(autograde.DEFERRED_KEY), "judged: the kernel's stop defers nothing"


def test_a_judge_whose_memory_grew_much_is_not_reused():
    """TensorFlow keeps what a notebook's networks took: a judge that grew by more than a quarter
    of the memory limit since it was new would start the next notebook that much nearer the limit
    than a fresh judge, and an honest network would push it over. Its size alone does not count:
    TensorFlow's own 600 MiB is in every judge."""
    limits = verdicts.Limits(memory_bytes=1536 * 2**20)  # the hostile corpus' limit
    tensorflow_loaded = 600 * 2**20
    judge = SimpleNamespace(process=SimpleNamespace(poll=lambda: None), new_bytes=tensorflow_loaded,
                            watchdog=SimpleNamespace(peak_memory_bytes=0))
    judge.watchdog.peak_memory_bytes = tensorflow_loaded + int(0.2 * limits.memory_bytes)
    assert verdicts._reusable(judge, limits)  # 907 MiB: more than a quarter, but mostly TF
    judge.watchdog.peak_memory_bytes = tensorflow_loaded + int(0.3 * limits.memory_bytes)
    assert not verdicts._reusable(judge, limits)
    judge.watchdog.peak_memory_bytes = tensorflow_loaded
    judge.new_bytes = None  # its set-up never finished: nothing to measure growth from
    assert not verdicts._reusable(judge, limits)
    judge.new_bytes = tensorflow_loaded
    judge.process = SimpleNamespace(poll=lambda: 1)  # it ended
    assert not verdicts._reusable(judge, limits)


@pytest.mark.slow
def test_one_judge_serves_a_batch_of_small_notebooks():
    """Under the hostile corpus' limits (1.5 GiB), notebooks judged one after another share one
    judge: the grader pays TensorFlow's import once per command, not once per notebook."""
    try:
        sandbox.require_sandbox()
    except sandbox.SandboxUnavailable as error:
        pytest.fail(f"the judge needs bubblewrap: {error} (make system installs it)")
    limits = verdicts.Limits(memory_bytes=1536 * 2**20)
    verdicts.close_idle_judges()
    setup = ["import keras"]
    tests = [("test_size", "assert size(5) == 3")]
    pids = []
    for _ in range(3):
        assert verdicts.judge_notebook(["def size(n):\n    return n - 2"], setup, tests,
                                       limits=limits) == [verdicts.Verdict("test_size", True, "")]
        (judge,) = verdicts._IDLE_JUDGES[limits]
        pids.append(judge.process.pid)
        assert judge.new_bytes > 300 * 2**20  # measured after the set-up: Keras imported
    assert len(set(pids)) == 1, pids
    verdicts.close_idle_judges()


def test_a_reused_judge_that_blames_the_student_is_checked_by_a_fresh_one(monkeypatch):
    """A judge that served other notebooks and passes a limit while it holds this student's
    network is not believed: a fresh judge decides (and its verdicts stand either way)."""
    too_big = verdicts.Verdict("test_block", False, "the Keras network in block's result could "
                               "not be rebuilt or run within the grader's limits (memory)")
    calls = []

    def judge_once(*arguments, fresh):
        calls.append(fresh)
        if not fresh:
            return [too_big], True
        return [verdicts.Verdict("test_block", True, "")], False

    monkeypatch.setattr(verdicts, "_judge_notebook", judge_once)
    assert verdicts.judge_notebook([], [], [("test_block", "")]) == [
        verdicts.Verdict("test_block", True, "")]
    assert calls == [False, True]
    # a fresh judge's own verdict is final, and a reused judge's other verdicts are not retried
    calls.clear()
    monkeypatch.setattr(verdicts, "_judge_notebook",
                        lambda *arguments, fresh: (calls.append(fresh) or [too_big], False))
    assert verdicts.judge_notebook([], [], [("test_block", "")]) == [too_big]
    assert calls == [False]
