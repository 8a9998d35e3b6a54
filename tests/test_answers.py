"""Source analysis of answers outside the kernel (cnnbook.grading.source_rules) and the feedback
step that strips
hidden tests (cnnbook.grading.nbgrader_steps.StripHiddenTests), on the committed `sizing` notebook
with one
answer cell replaced. Every bypass of ``check_written_here`` that the course has seen must be
refused; the reference answers and honest variations must pass."""

from __future__ import annotations

import ast
import json
import symtable
import sys

import nbformat
import pytest
from nbgrader_course import nbgrader_metadata, read_notebook, source_of
from source_rule_cases import BYPASSES, MATH_FROM_SET_UP, SIGNATURE

from cnnbook.grading import source_rules as answers
from cnnbook.grading import written_here
from cnnbook.grading.nbgrader_steps import StripHiddenTests


@pytest.fixture(scope="module")
def sizing(repo_root):
    return read_notebook(repo_root / "solutions" / "sizing" / "sizing.ipynb")


def _with_cell(notebook: dict, grade_id: str, source: str) -> tuple[dict, int]:
    notebook = json.loads(json.dumps(notebook))
    for index, cell in enumerate(notebook["cells"]):
        if nbgrader_metadata(cell).get("grade_id") == grade_id:
            cell["source"] = source
            return notebook, index
    raise ValueError(grade_id)


def _added_cell(notebook: dict, source: str) -> tuple[dict, int]:
    notebook = json.loads(json.dumps(notebook))
    notebook["cells"].insert(2, {"cell_type": "code", "metadata": {}, "outputs": [],
                                 "execution_count": None, "source": source})
    return notebook, 2


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_reference_and_released_notebooks_break_no_rule(repo_root, folder):
    notebooks = sorted((repo_root / folder).glob("*/*.ipynb"))
    assert len(notebooks) >= 3
    for path in notebooks:
        assert answers.find_violations(read_notebook(path)) == {}, path


HONEST = {
    "loop and helper": (
        "def _floor_div(a, b):\n    return a // b\n\n"
        "def output_size(input_size, kernel_size, stride=1, padding='valid'):\n"
        "    if padding == 'same':\n        return -(-input_size // stride)\n"
        "    pad = 0 if padding == 'valid' else padding\n"
        "    return _floor_div(input_size - kernel_size + 2 * pad, stride) + 1\n"
        "for name in ('valid', 'same'):\n    print(name, output_size(32, 3, 1, name))\n"),
    "math from the set-up": MATH_FROM_SET_UP,
}


HONEST["standard library and installed packages"] = (
    "import collections\nfrom functools import lru_cache\nimport numpy\nimport os\n"
    "from operator import mul\nimport operator\nimport os.path as osp\n"
    "HOME = os.environ.get('HOME', osp.sep)\nPRODUCT = operator.mul(2, 3)\n"
    "WHERE = os.path.join(os.getcwd(), 'notes')\n"
    "@lru_cache\n" + HONEST["math from the set-up"])


@pytest.mark.parametrize("answer", sorted(HONEST))
def test_honest_answers_are_accepted(sizing, answer):
    ast.parse(HONEST[answer])  # a syntax error would be accepted here and refused by the kernel
    notebook, _ = _with_cell(sizing, "output_size", HONEST[answer])
    assert answers.find_violations(notebook) == {}


@pytest.mark.parametrize("bypass", sorted(BYPASSES))
def test_every_known_bypass_is_refused_in_the_answer_cell(sizing, bypass):
    source, rule = BYPASSES[bypass]
    notebook, index = _with_cell(sizing, "output_size", source)
    problems = answers.find_violations(notebook)
    assert list(problems) == [index], problems
    assert any(rule in problem for problem in problems[index]), problems[index]


# --- The table of rules: each rule refuses its case with its own message --------------------------

KERAS_ANSWER = (SIGNATURE + "    return keras.layers.Conv2D(1, kernel_size).compute_output_shape("
                "(1, input_size, input_size, 1))[1]\n")
RULE_CASES = {
    # rule name: (a cell that breaks it, the exact message, an honest near miss in the same idiom)
    "program_starting_function": ("import os\nos.system('ls')\n",
                                  "it uses `os.system`, which starts another program",
                                  "import os\nprint(os.getcwd())\n"),
    "attribute_reader": ("import operator\nread = operator.attrgetter('real')\n",
                         "it uses `operator.attrgetter`, which reads attributes by name, as "
                         "`getattr` does",
                         "import operator\nfirst = operator.itemgetter(0)\n"),
    "forbidden_attribute": ("import asyncio\nasyncio.create_subprocess_exec('ls')\n",
                            "it uses `asyncio.create_subprocess_exec`",
                            "import asyncio\nloop = asyncio.new_event_loop()\n"),
    "module_as_value": ("import os\ntools = os\n",
                        "it uses the module `os` (os) as a value; call its functions directly "
                        "(`os.name`)",
                        "import os\nseparator = os.sep\n"),
    "forbidden_keyword": ("import numpy\nweights = numpy.load('w.npy', allow_pickle=False)\n",
                          "it passes `allow_pickle=`",
                          "import numpy\nweights = numpy.load('w.npy', mmap_mode='r')\n"),
    "forbidden_name": ("size = getattr(math, 'floor')(2.5)\n", "it uses `getattr`",
                       "size = math.floor(2.5)\n"),
    "reference_name": ("rules = cnnbook.counting\n",
                       "it uses `cnnbook` from cnnbook, the reference code",
                       "print(math.pi)\n"),
    "dunder_attribute": ("print(output_size.__code__)\n", "it reads the attribute `__code__`",
                         "print(output_size.__name__)\n"),
    "changes_set_up": ("math.tau = 6\n",
                       "it changes `math.tau`, which belongs to a module or to the notebook's "
                       "set-up",
                       "layer = keras.layers.Dense(1)\nlayer.trainable = False\n"),
    "forbidden_module": ("import inspect\n", "it imports `inspect`", "import functools\n"),
    "uninstalled_module": ("import shape_rules_of_mine\n",
                           "it imports `shape_rules_of_mine`, which is not an installed module "
                           "(only the standard library and the course's packages may be "
                           "imported)",
                           "import numpy\n"),
    "star_import_of_forbidden_functions": (
        "from operator import *\n",
        "it imports everything from `operator`, which holds functions the course forbids",
        "from math import *\n"),
    "program_starting_import": ("from os import popen\n",
                                "it imports `popen` from `os`, which starts another program",
                                "from os import getcwd\n"),
    "attribute_reader_import": ("from operator import methodcaller\n",
                                "it imports `methodcaller` from `operator`, which reads "
                                "attributes by name, as `getattr` does",
                                "from operator import itemgetter\n"),
    "forbidden_attribute_import": ("from asyncio import create_subprocess_shell\n",
                                   "it imports `create_subprocess_shell` from `asyncio`",
                                   "from asyncio import run\n"),
    "set_up_redefined": ("keras = None\n",
                         "it redefines `keras`, which the notebook's set-up or tests use",
                         "import keras\n"),
    "builtin_redefined": ("class list:\n    pass\n", "it redefines the built-in `list`",
                          "sum = 0\nfor size in (1, 2):\n    sum += size\n"),
    "relies_on_forbidden_package": (
        KERAS_ANSWER,
        "`output_size` must not rely on keras or tensorflow, but this cell uses `keras`",
        "layer = keras.layers.Conv2D(1, 3)\nprint(layer.compute_output_shape((1, 32, 32, 1)))\n"),
}


def test_every_rule_has_a_case_a_message_and_a_docstring():
    names = [rule.name for rule in answers.RULES]
    assert len(names) == len(set(names)), names
    assert set(names) == set(RULE_CASES)
    for rule in answers.RULES:
        assert rule.message and len(rule.doc) > 20, rule


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_rule_refuses_its_case_with_its_own_message(sizing, monkeypatch, rule):
    """The cell breaks the rule and gets its message; without the rule in the table the message
    is gone (the case tests that rule, not another)."""
    breaks, message, _ = RULE_CASES[rule]
    ast.parse(breaks)
    notebook, index = _added_cell(sizing, breaks)
    assert message in answers.find_violations(notebook).get(index, [])
    monkeypatch.setattr(answers, "RULES", [other for other in answers.RULES if other.name != rule])
    assert message not in answers.find_violations(notebook).get(index, [])


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_rule_accepts_its_honest_near_miss(sizing, rule):
    honest = RULE_CASES[rule][2]
    ast.parse(honest)  # a syntax error would be accepted here and refused by the kernel
    notebook, _ = _added_cell(sizing, honest)
    assert answers.find_violations(notebook) == {}


def test_installed_modules_are_the_standard_library_and_the_environments_packages(tmp_path):
    import importlib.metadata

    installed = importlib.metadata.packages_distributions()  # an oracle apart from find_spec
    for name in ("numpy", "keras", "matplotlib", "tensorflow"):
        assert name in installed and answers.is_installed_module(name), name
    for name in ("collections", "math", "os", "json", "functools"):
        assert name in sys.stdlib_module_names and answers.is_installed_module(name), name
    assert answers.is_installed_module("numpy.linalg")
    for name in ("my_shape_rules", "shape_rules_cnn", "not-a-name", ""):
        assert name not in installed and not answers.is_installed_module(name), name


@pytest.mark.parametrize("function, starts", [
    ("system", True), ("popen", True), ("execv", True), ("execlpe", True), ("spawnv", True),
    ("posix_spawnp", True), ("fork", True), ("forkpty", True),
    ("getcwd", False), ("environ", False), ("path", False), ("listdir", False), ("walk", False)])
def test_the_os_functions_that_start_programs(function, starts):
    import os

    assert hasattr(os, function)
    assert answers.starts_a_program(function) is starts


# --- What binds a name: Python's own symbol table is the oracle ---------------------------------

BINDING_SOURCES = {
    # attributes and items are changed, not bound: none of these binds a name
    "attribute": "layer.trainable = False\n",
    "item with a set-up name in the index": "counts[math.floor(3.5)] = keras\n",
    "swapped items": "table[i], table[j] = table[j], table[i]\n",
    "augmented attribute": "layer.units += 1\n",
    "annotated attribute": "config.size: int = 3\n",
    "deleted item": "del cache[key]\n",
    "attribute as loop target": "for row.value in pairs:\n    pass\n",
    "local of a function": "def f(v):\n    total = v\n    (last := total)\n    table[0] = total\n",
    "comprehension variable": "squares = [k * k for k in range(3)]\n",
    "class attribute": "class Config:\n    size = 3\n",
    "walrus in a lambda": "g = lambda x: (y := x)\n",
    # real bindings at module level, also nested in compound statements
    "unpacking": "a, *rest = [1, 2]\n[b, (c, d)] = [1, (2, 3)]\n",
    "augmented and annotated": "n = 0\nn += 1\nm: int = 3\nonly_annotated: int\n",
    "loop and with": "for i, j in []:\n    pass\nwith open('f') as (h, k):\n    pass\n",
    "imports": "import os.path\nimport numpy as np\nfrom math import floor as fl, ceil\n"
               "from math import *\n",
    "def and class": "def f():\n    pass\nasync def g():\n    pass\nclass C:\n    pass\n",
    "walrus": "if (n := 3):\n    pass\nvalues = [last := v for v in range(3)]\n"
              "def h(x=(default := 1)):\n    pass\n",
    "nested in if, try, while": "if True:\n    import numpy as keras\nelse:\n    x = 1\n"
                                "try:\n    y = 1\nexcept ValueError as error:\n    pass\n"
                                "while False:\n    z = 1\n",
    "global in a function": "def f():\n    global g\n    g = 1\n    def inner():\n"
                            "        global h\n",
    "del": "del old\n",
    "match": "match v:\n    case [first, *others]:\n        pass\n"
             "    case {'k': value, **rest}:\n        pass\n    case str() as text:\n"
             "        pass\n",
}


def python_global_bindings(source: str) -> set[str]:
    """Names that ``source`` binds in the global namespace according to the compiler's symbol
    table: assigned (``del`` included) or imported in the module's table, and declared
    ``global`` in any of its scopes."""
    module = symtable.symtable(source, "<cell>", "exec")
    names = {symbol.get_name() for symbol in module.get_symbols()
             if symbol.is_assigned() or symbol.is_imported()}
    scopes = [module]
    while scopes:
        scope = scopes.pop()
        names |= {symbol.get_name() for symbol in scope.get_symbols()
                  if symbol.is_declared_global()}
        scopes += scope.get_children()
    return names


@pytest.mark.parametrize("case", sorted(BINDING_SOURCES))
def test_a_cell_binds_the_names_pythons_symbol_table_says_it_binds(case):
    source = BINDING_SOURCES[case]
    bound = set(answers._top_level_bindings(ast.parse(source)))
    assert bound == python_global_bindings(source), case


def test_setting_attributes_and_items_with_set_up_names_in_the_index_is_accepted(sizing):
    """The false positive of issue 15: `counts[math.floor(...)] = ...` and `layer.trainable = ...`
    were read as rebinding `math` and `layer`, so this honest comparison with Keras was refused
    (`math` belongs to the set-up) and, since the answer reads `math`, charged to the answer as
    relying on Keras."""
    notebook, _ = _with_cell(sizing, "output_size", HONEST["math from the set-up"])
    notebook, _ = _added_cell(notebook, (
        "keras_sizes = {}\n"
        "keras_sizes[math.ceil(32 / 2)] = keras.layers.Conv2D(1, 3, strides=2, padding='same')"
        ".compute_output_shape((1, 32, 32, 1))[1]\n"
        "layer = keras.layers.Conv2D(1, 3)\n"
        "layer.trainable = False\n"
        "layer.name_scope_note: str = 'frozen'\n"
        "del keras_sizes[math.ceil(32 / 2)]\n"))
    assert answers.find_violations(notebook) == {}
    # the answer cell itself may set an attribute of its own function
    notebook, _ = _with_cell(sizing, "output_size", HONEST["math from the set-up"]
                             + "output_size.source = 'He et al. 2016'\n")
    assert answers.find_violations(notebook) == {}


REBINDINGS = {
    "nested in if": "if True:\n    import numpy as keras\n",
    "in try": "try:\n    keras = None\nexcept ValueError:\n    pass\n",
    "except as": "try:\n    pass\nexcept ValueError as keras:\n    pass\n",
    "loop target": "for keras in [None]:\n    pass\n",
    "with as": "import contextlib\nwith contextlib.nullcontext() as keras:\n    pass\n",
    "unpacking": "keras, _ = None, None\n",
    "starred": "*keras, _ = [1, 2]\n",
    "augmented": "keras += 1\n",
    "annotated": "keras: object = None\n",
    "walrus": "print(keras := None)\n",
    "walrus in a comprehension": "[keras := v for v in range(2)]\n",
    "global in a function": "def forget():\n    global keras\n    keras = None\nforget()\n",
    "del": "del keras\n",
    "match capture": "match 1:\n    case keras:\n        pass\n",
    "class": "class keras:\n    pass\n",
}


@pytest.mark.parametrize("rebinding", sorted(REBINDINGS))
def test_every_real_rebinding_of_a_set_up_name_is_refused(sizing, rebinding):
    notebook, index = _with_cell(sizing, "output_size", HONEST["math from the set-up"]
                                 + REBINDINGS[rebinding])
    problems = answers.find_violations(notebook)
    assert list(problems) == [index], problems
    assert "it redefines `keras`, which the notebook's set-up or tests use" in problems[index]


@pytest.mark.parametrize("source", [
    "if True:\n    def isinstance(value, kind):\n        return True\n",
    "def patch():\n    global isinstance\n    isinstance = lambda value, kind: True\n",
], ids=["def inside if", "global in a function"])
def test_a_builtin_redefined_out_of_sight_is_refused(sizing, source):
    notebook, index = _with_cell(sizing, "output_size", HONEST["math from the set-up"] + source)
    problems = answers.find_violations(notebook)
    assert problems == {index: ["it redefines the built-in `isinstance`"]}


KERAS_SIZE = "keras.layers.Conv2D(1, 3).compute_output_shape((1, w, w, 1))[1]"
FILLED_ELSEWHERE = {
    # TABLE is bound without Keras in one cell and filled with Keras in another
    "item assigned": f"for w in range(8, 40):\n    TABLE[w] = {KERAS_SIZE}\n",
    "method call": f"TABLE.update({{w: {KERAS_SIZE} for w in range(8, 40)}})\n",
    "through a builtin": f"dict.update(TABLE, {{w: {KERAS_SIZE} for w in range(8, 40)}})\n",
    "in a function": (f"def fill():\n    for w in range(8, 40):\n        TABLE[w] = {KERAS_SIZE}\n"
                      "fill()\n"),
    "declared global": (f"def fill():\n    global TABLE\n    TABLE = {{w: {KERAS_SIZE} "
                        "for w in range(8, 40)}\nfill()\n"),
}


@pytest.mark.parametrize("way", sorted(FILLED_ELSEWHERE))
def test_a_table_filled_with_keras_in_another_cell_is_traced(sizing, way):
    notebook, _ = _added_cell(sizing, FILLED_ELSEWHERE[way])
    notebook, table_index = _added_cell(notebook, "TABLE = {}\n")  # inserted before it
    fill_index = table_index + 1
    notebook, _ = _with_cell(notebook, "output_size", SIGNATURE
                             + "    return TABLE[input_size - kernel_size + 3]\n")
    problems = answers.find_violations(notebook)
    assert list(problems) == [fill_index], problems
    assert "`output_size` must not rely on keras" in problems[fill_index][0]


def test_a_name_imported_from_keras_in_one_cell_and_numpy_in_another_is_traced(sizing):
    """The kernel runs the cells in order, so `backend` is Keras when the answer runs, although
    the first import of the name is NumPy's."""
    notebook, _ = _added_cell(sizing, "import keras as backend\n")
    notebook, _ = _added_cell(notebook, "import numpy as backend\n")
    notebook, answer_index = _with_cell(notebook, "output_size", SIGNATURE + (
        "    return backend.layers.Conv2D(1, kernel_size, strides=stride, padding=padding)"
        ".compute_output_shape((1, input_size, input_size, 1))[1]\n"))
    problems = answers.find_violations(notebook)
    assert list(problems) == [answer_index], problems
    assert ("`output_size` must not rely on keras or tensorflow, but this cell uses `backend`"
            in problems[answer_index])


def test_a_local_table_of_the_same_name_is_not_the_global_one(sizing):
    notebook, _ = _added_cell(sizing, "TABLE = {w: w - 2 for w in range(8, 40)}\n")
    notebook, _ = _added_cell(notebook, (
        "def compare(TABLE=None):\n    TABLE = {}\n"
        f"    for w in range(8, 40):\n        TABLE[w] = {KERAS_SIZE}\n    return TABLE\n"
        "def compare_again(sizes):\n    sizes[8] = keras.layers.Conv2D(1, 3)\n"
        "print(compare() == TABLE)\n"))
    notebook, _ = _with_cell(notebook, "output_size", SIGNATURE
                             + "    return TABLE[input_size - kernel_size + 3]\n")
    assert answers.find_violations(notebook) == {}


def test_a_keras_table_in_another_cell_is_traced_through_the_name_the_answer_reads(sizing):
    notebook, table_index = _added_cell(sizing, (
        "TABLE = {(w, k): keras.layers.Conv2D(1, k).compute_output_shape((1, w, w, 1))[1] "
        "for w in range(8, 40) for k in (1, 3, 5)}\n"))
    notebook, answer_index = _with_cell(notebook, "output_size", SIGNATURE
                                        + "    return TABLE[input_size, kernel_size]\n")
    problems = answers.find_violations(notebook)
    assert list(problems) == [table_index]
    assert "`output_size` must not rely on keras" in problems[table_index][0]
    assert answer_index != table_index


def test_forged_locked_metadata_does_not_exempt_a_cell(sizing):
    notebook, index = _added_cell(sizing, "import cnnbook.grading.accuracy\n")
    notebook["cells"][index]["metadata"] = {"nbgrader": {"locked": True, "grade_id": "forged"}}
    instructor = answers.instructor_cell_ids(sizing)
    problems = answers.find_violations(notebook, instructor)
    assert list(problems) == [index] and "it imports `cnnbook.grading.accuracy`" in problems[index]


def _hidden_only_lines(notebook: dict) -> set[str]:
    """Lines that appear only inside hidden-test regions (not in answers, not in visible tests)."""
    hidden, elsewhere = set(), set()
    for cell in notebook["cells"]:
        inside = False
        for line in source_of(cell).splitlines():
            if line.strip() == "### BEGIN HIDDEN TESTS":
                inside = True
            elif line.strip() == "### END HIDDEN TESTS":
                inside = False
            else:
                (hidden if inside else elsewhere).add(line.strip())
    return {line for line in hidden - elsewhere if len(line) >= 8}


def test_feedback_step_strips_every_hidden_test_line_and_test_tracebacks(sizing):
    notebook = nbformat.reads(json.dumps(sizing), as_version=4)
    for cell in notebook.cells:
        if nbgrader_metadata(cell).get("grade") and cell.cell_type == "code":
            hidden_line = next((line for line in cell.source.splitlines()[::-1]
                                if line.strip() and "###" not in line), "")
            cell.outputs = [nbformat.v4.new_output(
                "error", ename="AssertionError", evalue="wrong size",
                traceback=["Traceback", f"----> 9 {hidden_line}", "AssertionError: wrong size"])]
    hidden = _hidden_only_lines(sizing)
    assert len(hidden) > 10
    stripped, _ = StripHiddenTests().preprocess(notebook, {})
    text = json.dumps(stripped.dict())
    shown = {line.strip() for cell in stripped.cells for line in cell.source.splitlines()}
    assert not hidden & shown
    assert "BEGIN HIDDEN TESTS" not in text
    for cell in stripped.cells:
        for output in cell.get("outputs", []):
            assert output["traceback"] == ["AssertionError: wrong size"]
    visible = {line.strip() for cell in sizing["cells"] for line in
               source_of(cell).split("### BEGIN HIDDEN TESTS")[0].splitlines() if line.strip()}
    assert visible <= shown | {""}, "visible tests and answers stay in the feedback"


def _notebook_functions(code: str) -> dict:
    """Run ``code`` as a notebook would (module ``__main__``) and return its namespace."""
    namespace = {"__name__": "__main__"}
    exec(compile(code, "<notebook>", "exec"), namespace)
    return namespace


def test_check_written_here_follows_defaults_closures_and_partials():

    cells = _notebook_functions(
        "import functools, cnnbook.counting.sizing\n"
        "def by_default(w, k, rule=cnnbook.counting.sizing.conv_output_size): return rule(w, k)\n"
        "def by_keyword(w, k, *, rule=cnnbook.counting.sizing.conv_output_size):\n"
        "    return rule(w, k)\n"
        "def make():\n"
        "    rule = cnnbook.counting.sizing.conv_output_size\n"
        "    def by_closure(w, k): return rule(w, k)\n"
        "    return by_closure\n"
        "by_closure = make()\n"
        "partial_rule = functools.partial(cnnbook.counting.sizing.conv_output_size, stride=1)\n"
        "def by_partial(w, k): return partial_rule(w, k)\n"
        "def own(w, k, stride=1, table=None): return (w - k) // stride + 1\n"
    )
    written_here.check_written_here(cells["own"])
    for name in ("by_default", "by_keyword", "by_closure", "by_partial"):
        with pytest.raises(AssertionError, match="cnnbook"):
            written_here.check_written_here(cells[name])


def test_output_past_the_limit_keeps_what_fails_a_test_cell():
    """A student cell that floods output before the tests must not pass them: past
    c.GradingSandbox.max_output_bytes the grader drops output, but a test cell's error, stderr
    and result (cut short) stay, and nbgrader's own determine_grade scores it from them (the
    hostile corpus's output_flood found failing tests passing after a flood)."""
    from nbgrader.utils import determine_grade

    from cnnbook.grading.nbgrader_steps import SandboxedExecute
    from cnnbook.grading.settings import GradingSandbox

    executor = SandboxedExecute()
    executor._settings = GradingSandbox(max_output_bytes=1_000)
    executor._output_bytes, executor._output_dropped = 0, False

    def message(msg_type, **content):
        return {"msg_type": msg_type, "header": {"msg_type": msg_type}, "parent_header": {},
                "content": content}

    def test_cell():
        return nbformat.v4.new_code_cell("assert answer() == 1", metadata={"nbgrader": {
            "grade": True, "solution": False, "locked": True, "grade_id": "test_answer",
            "points": 2}})

    flood = nbformat.v4.new_code_cell("print('x' * 5000)")
    executor.output(flood.outputs, message("stream", name="stdout", text="x" * 5_000), None, 0)
    assert "the rest of it was dropped" in flood.outputs[-1]["text"]
    passing, failing, warning, partial = test_cell(), test_cell(), test_cell(), test_cell()
    executor.output(passing.outputs, message("stream", name="stdout", text="ok " * 500), None, 1)
    for _ in range(3):
        executor.output(failing.outputs, message(
            "error", ename="AssertionError", evalue="wrong " * 10_000,
            traceback=["a long traceback"] * 1_000), None, 2)
        executor.output(warning.outputs, message("stream", name="stderr", text="w" * 9_000),
                        None, 3)
    executor.output(partial.outputs, message(
        "execute_result", data={"text/plain": "1"}, metadata={}, execution_count=4), None, 4)
    assert determine_grade(passing) == (2, 2)
    assert determine_grade(failing) == (0, 2) and determine_grade(warning) == (0, 2)
    assert determine_grade(partial) == (1, 2)
    assert failing.outputs[0]["ename"] == "AssertionError"
    for cell in (failing, warning):
        assert len(cell.outputs) == 1 and len(json.dumps(cell.outputs)) < 1_200


def _appended_to(notebook: dict, grade_id: str, code: str) -> tuple[dict, int]:
    notebook = json.loads(json.dumps(notebook))
    for index, cell in enumerate(notebook["cells"]):
        if nbgrader_metadata(cell).get("grade_id") == grade_id:
            cell["source"] = source_of(cell) + "\n\n" + code
            return notebook, index
    raise ValueError(grade_id)


@pytest.fixture(scope="module")
def architectures(repo_root):
    return read_notebook(repo_root / "solutions" / "architectures" / "architectures.ipynb")


@pytest.mark.parametrize("function", ["separable_params", "separable_macs", "plain_conv_macs"])
def test_functions_checked_in_a_loop_keep_their_forbidden_packages(architectures, function):
    """test_separable_costs checks its three functions with
    ``for function in (...): check_written_here(function, forbid=("keras",))``: each must be
    refused when it reads Keras (the hostile corpus's keras_lookup_table on architectures ran)."""
    table = ("_layer = keras.layers.DepthwiseConv2D(3, use_bias=False)\n"
             "_layer.build((None, 8, 8, 4))\n"
             f"def {function}(*arguments):\n    return _layer.count_params()\n")
    notebook, index = _added_cell(architectures, table)
    assert f"`{function}` must not rely on keras" in " ".join(
        answers.find_violations(notebook).get(index, []))


def test_importing_a_set_up_module_again_is_not_a_redefinition(architectures):
    """The set-up imports os and numpy as np: a student cell may import them again under the
    same names, but not bind those names to something else (the corpus's os_exit and fork_bomb
    lost their answer cell to `import os`)."""
    for code in ("import os", "import numpy as np", "import os, math"):
        notebook, _ = _appended_to(architectures, "experiment_networks", code)
        assert answers.find_violations(notebook) == {}, code
    for code in ("import numpy as os", "from numpy import block_model", "np = 3"):
        notebook, index = _appended_to(architectures, "experiment_networks", code)
        assert any("redefines" in problem
                   for problem in answers.find_violations(notebook).get(index, [])), code
