"""The package's architecture contract: which part of cnnbook may import which.

Read from the source with ``ast`` (every import, at the top of a module or inside a function),
never by importing, so a violation cannot hide behind a lazy import. The layers, from the bottom
up, are those of ``cnnbook/__init__.py``; grading sits on top and nothing else imports it, and what
students import (``cnnbook.course``) imports nothing but itself and ``cnnbook.checks``.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

from cnnbook.grading.verdicts import STUDENT_MODULES

LAYERS = ("", "course", "counting", "nets", "training", "resnet", "book", "grading")
"""Subpackages from the bottom up ("": ``cnnbook`` itself, ``checks``, ``keras_internals``). A
module may import its own layer and the layers below it."""

ROOT_MODULES = {"cnnbook", "cnnbook.checks", "cnnbook.keras_internals"}


def _layer(module: str) -> str:
    return "" if module in ROOT_MODULES else module.split(".")[1]


def _module_name(path: Path, package_root: Path) -> str:
    relative = path.relative_to(package_root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(source: str) -> set[str]:
    """Every cnnbook module a piece of code imports (``from cnnbook.x import y`` counts ``y``
    when ``cnnbook.x.y`` is a module, else ``cnnbook.x``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cnnbook"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnbook"):
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}")
                found.add(node.module)
    return found


@pytest.fixture(scope="module")
def graph(repo_root) -> dict[str, set[str]]:
    package = repo_root / "cnnbook"
    modules = {_module_name(path, package): path for path in package.rglob("*.py")}
    return {name: {imported for imported in _imported(path.read_text()) if imported in modules
                   and imported != name}
            for name, path in modules.items()}


def test_every_module_sits_in_a_known_layer(graph):
    assert {_layer(module) for module in graph} == set(LAYERS)
    # nothing but the two shared helpers at the top level
    assert {module for module in graph if _layer(module) == ""} == ROOT_MODULES


def test_no_layer_imports_one_above_it(graph):
    upward = sorted(f"{module} imports {imported}" for module, imports in graph.items()
                    for imported in imports
                    if LAYERS.index(_layer(imported)) > LAYERS.index(_layer(module))
                    and _layer(imported) != "")
    assert not upward, upward


def test_only_grading_imports_grading(graph):
    offenders = sorted(f"{module} imports {imported}" for module, imports in graph.items()
                       for imported in imports
                       if _layer(imported) == "grading" and _layer(module) != "grading")
    assert not offenders, offenders


def test_what_students_import_imports_nothing_else(graph, repo_root):
    """cnnbook.course is what a graded student process can import (STUDENT_MODULES): it must not
    need any other part of cnnbook, or a student's honest import fails while grading."""
    allowed = {"cnnbook", "cnnbook.checks"}
    outside = sorted(f"{module} imports {imported}" for module, imports in graph.items()
                     if _layer(module) == "course"
                     for imported in imports if _layer(imported) != "course"
                     and imported not in allowed)
    assert not outside, outside
    visible = {Path(entry).with_suffix("").as_posix() for entry in STUDENT_MODULES}
    assert visible == {"__init__", "checks", "course"}
    assert (repo_root / "cnnbook" / "course" / "__init__.py").is_file()


def test_no_import_cycle(graph):
    """A module never imports (directly or through others) a module that imports it."""
    state: dict[str, str] = {}
    cycles = []

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join([*path[path.index(imported):], imported]))
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def _imports_in_functions(tree: ast.AST):
    """Every ``import``/``from ... import`` inside the body of a function or method (at any
    depth: in a nested function, a class defined in a function, an ``if`` or ``try`` of a body)."""
    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            yield from visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    yield from visit(tree, False)


def _reason_lines(source: str) -> set[int]:
    """The lines that hold a comment giving a reason: a real ``#`` comment (read by the
    tokenizer, so never a ``#`` inside a string) with more in it than a ``noqa`` directive."""
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = re.sub(r"noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?", "", token.string[1:])
            if text.strip(" #"):
                lines.add(token.start[0])
    return lines


def test_every_import_inside_a_function_says_why(repo_root):
    """An import inside a function or method is lazy for a reason (a heavy package that light
    pages and commands must not pay for, an optional dependency, an import cycle, or what a
    grading process may import and when): the reason is a comment on the import's line(s) or on
    the line just above. Anything without a reason belongs at the top of its module."""
    package = repo_root / "cnnbook"
    unexplained = []
    seen = 0
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        reasons = _reason_lines(source)
        for node in _imports_in_functions(ast.parse(source)):
            seen += 1
            if not reasons & set(range(node.lineno - 1, node.end_lineno + 1)):
                unexplained.append(f"{path.relative_to(repo_root)}:{node.lineno}: "
                                   f"{ast.get_source_segment(source, node)}")
    assert seen > 20, "no import inside a function found: the walk is broken"
    assert not unexplained, ("imports inside a function without a comment saying why (move them "
                             "to the top of the module, or give the reason):\n"
                             + "\n".join(unexplained))


def _page_code(path: Path) -> str:
    """The code of a MyST notebook page (its code cells) or of a Jupyter notebook."""
    text = path.read_text()
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"]
                         if cell["cell_type"] == "code")
    cells = []
    for cell in re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, flags=re.S):
        if cell.startswith("---\n"):  # the cell's options, as YAML
            cell = cell.split("\n---\n", 1)[1]
        cells.append("\n".join(line for line in cell.splitlines()
                               if not line.startswith(":")))  # the cell's options, one a line
    return "\n".join(cells)


def test_book_pages_never_import_the_grader(repo_root):
    pages = sorted((repo_root / "book").rglob("*.md"))
    assert len(pages) > 5
    importing = {}
    for page in pages:
        code = "\n".join(line for line in _page_code(page).splitlines()
                         if not line.lstrip().startswith(("%", "!")))
        imported = _imported(code)
        if imported:
            importing[page.name] = imported
    assert len(importing) >= 3, "the chapters import cnnbook: the page parser found no import"
    graders = {name: sorted(found) for name, found in importing.items()
               if any(module.startswith("cnnbook.grading") for module in found)}
    assert not graders, graders


def test_notebooks_import_only_what_students_get_and_the_checks_of_their_tests(repo_root):
    """The assignments' code imports cnnbook.course, training (students train their networks in
    their own kernel) and, in test cells, the in-kernel check: never counting, nets or resnet,
    whose functions compute the answers."""
    allowed_layers = {"", "course", "training"}
    notebooks = sorted((repo_root / "solutions").glob("*/*.ipynb"))
    assert len(notebooks) == 4
    for notebook in notebooks:
        imported = _imported(_page_code(notebook))
        outside = sorted(module for module in imported if _layer(module) not in allowed_layers
                         and not module.startswith("cnnbook.grading.written_here")
                         and module != "cnnbook.grading")
        assert not outside, (notebook.name, outside)


def test_no_test_module_imports_another_test_module(repo_root):
    """Shared test data and helpers live in helper modules (nbgrader_course, hostile_corpus,
    source_rule_cases, hub_client, book_build), never in a test module: importing one runs its
    module-level set-up and ties two test files together."""
    offenders = []
    for path in sorted((repo_root / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}:{node.lineno}: {name}" for name in names
                          if name.split(".")[0].startswith("test_")]
    assert not offenders, offenders
