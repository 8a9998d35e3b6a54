"""Source analysis of answers outside the kernel (cnnbook.answers) and the feedback step that strips
hidden tests (cnnbook.autograde.StripHiddenTests), on the committed `sizing` notebook with one
answer cell replaced. Every bypass of ``check_written_here`` that the course has seen must be
refused; the reference answers and honest variations must pass."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbgrader_course import nbgrader_metadata, read_notebook, source_of

from cnnbook import answers
from cnnbook.autograde import StripHiddenTests


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
    "math from the set-up": (
        "def output_size(input_size, kernel_size, stride=1, padding='valid'):\n"
        "    if padding == 'same':\n        return math.ceil(input_size / stride)\n"
        "    pad = 0 if padding == 'valid' else padding\n"
        "    return math.floor((input_size - kernel_size + 2 * pad) / stride) + 1\n"),
}


@pytest.mark.parametrize("answer", sorted(HONEST))
def test_honest_answers_are_accepted(sizing, answer):
    notebook, _ = _with_cell(sizing, "output_size", HONEST[answer])
    assert answers.find_violations(notebook) == {}


SIGNATURE = "def output_size(input_size, kernel_size, stride=1, padding='valid'):\n"
BYPASSES = {
    # the bypasses of check_written_here listed in issue 10, each with the rule that catches it
    "eval": (SIGNATURE + "    return eval('cnnbook.sizing.conv_output_size')(input_size, "
             "kernel_size, stride, padding)\n", "uses `eval`"),
    "__import__": (SIGNATURE + "    module = __import__('cnnbook.sizing', fromlist=['x'])\n"
                   "    return module.conv_output_size(input_size, kernel_size, stride, padding)\n",
                   "uses `__import__`"),
    "functools.partial": ("import functools\nreference = functools.partial("
                          "cnnbook.sizing.conv_output_size)\n" + SIGNATURE
                          + "    return reference(input_size, kernel_size, stride, padding)\n",
                          "uses `cnnbook` from cnnbook"),
    "default argument": ("def output_size(input_size, kernel_size, stride=1, padding='valid', "
                         "rule=cnnbook.sizing.conv_output_size):\n"
                         "    return rule(input_size, kernel_size, stride, padding)\n",
                         "uses `cnnbook` from cnnbook"),
    "closure": ("def make():\n    rule = cnnbook.sizing.conv_output_size\n"
                "    def output_size(input_size, kernel_size, stride=1, padding='valid'):\n"
                "        return rule(input_size, kernel_size, stride, padding)\n"
                "    return output_size\noutput_size = make()\n",
                "uses `cnnbook` from cnnbook"),
    "table precomputed with cnnbook": (
        "TABLE = {(w, k, s): cnnbook.sizing.conv_output_size(w, k, s) for w in range(1, 64) "
        "for k in range(1, 8) for s in (1, 2) if k <= w}\n" + SIGNATURE
        + "    return TABLE[input_size, kernel_size, stride]\n", "uses `cnnbook` from cnnbook"),
    "table precomputed with Keras": (
        "TABLE = {(w, k, s): keras.layers.Conv2D(1, k, strides=s).compute_output_shape("
        "(1, w, w, 1))[1] for w in range(1, 64) for k in range(1, 8) for s in (1, 2) if k <= w}\n"
        + SIGNATURE + "    return TABLE[input_size, kernel_size, stride]\n",
        "`output_size` must not rely on keras"),
    "check_written_here replaced": (
        "import cnnbook.grade\ncnnbook.grade.check_written_here = lambda *args, **kwargs: None\n"
        + SIGNATURE + "    return 0\n", "imports `cnnbook.grade`"),
    "importlib": ("import importlib\nsizing = importlib.import_module('cnnbook.sizing')\n"
                  + SIGNATURE + "    return sizing.conv_output_size(input_size, kernel_size)\n",
                  "imports `importlib`"),
    "sys.modules": ("import sys\n" + SIGNATURE + "    return sys.modules['cnnbook.sizing']"
                    ".conv_output_size(input_size, kernel_size)\n", "imports `sys`"),
    "dunder walk": (SIGNATURE + "    return output_size.__globals__['cnnbook'].sizing"
                    ".conv_output_size(input_size, kernel_size)\n",
                    "reads the attribute `__globals__`"),
    "patched Keras": (HONEST["math from the set-up"]
                      + "keras.layers.Conv2D.compute_output_shape = lambda self, shape: shape\n",
                      "changes `keras.layers.Conv2D.compute_output_shape`"),
    "set-up name rebound": (HONEST["math from the set-up"] + "import numpy as keras\n",
                            "redefines `keras`"),
    "IPython hook": (HONEST["math from the set-up"]
                     + "get_ipython().events.register('post_run_cell', print)\n",
                     "uses `get_ipython`"),
    "magic": (HONEST["math from the set-up"] + "%run ../../../solutions/sizing/sizing.ipynb\n",
              "uses `get_ipython`"),
    "builtin redefined": (HONEST["math from the set-up"]
                          + "def isinstance(value, kind):\n    return True\n",
                          "redefines the built-in `isinstance`"),
}


@pytest.mark.parametrize("bypass", sorted(BYPASSES))
def test_every_known_bypass_is_refused_in_the_answer_cell(sizing, bypass):
    source, rule = BYPASSES[bypass]
    notebook, index = _with_cell(sizing, "output_size", source)
    problems = answers.find_violations(notebook)
    assert list(problems) == [index], problems
    assert any(rule in problem for problem in problems[index]), problems[index]


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
    notebook, index = _added_cell(sizing, "import cnnbook.grade\n")
    notebook["cells"][index]["metadata"] = {"nbgrader": {"locked": True, "grade_id": "forged"}}
    instructor = answers.instructor_cell_ids(sizing)
    problems = answers.find_violations(notebook, instructor)
    assert list(problems) == [index] and "it imports `cnnbook.grade`" in problems[index]


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
    from cnnbook import grade

    cells = _notebook_functions(
        "import functools, cnnbook.sizing\n"
        "def by_default(w, k, rule=cnnbook.sizing.conv_output_size): return rule(w, k)\n"
        "def by_keyword(w, k, *, rule=cnnbook.sizing.conv_output_size): return rule(w, k)\n"
        "def make():\n"
        "    rule = cnnbook.sizing.conv_output_size\n"
        "    def by_closure(w, k): return rule(w, k)\n"
        "    return by_closure\n"
        "by_closure = make()\n"
        "partial_rule = functools.partial(cnnbook.sizing.conv_output_size, stride=1)\n"
        "def by_partial(w, k): return partial_rule(w, k)\n"
        "def own(w, k, stride=1, table=None): return (w - k) // stride + 1\n"
    )
    grade.check_written_here(cells["own"])
    for name in ("by_default", "by_keyword", "by_closure", "by_partial"):
        with pytest.raises(AssertionError, match="cnnbook"):
            grade.check_written_here(cells[name])
