"""Source analysis of a submitted notebook's answers, done by the grader outside the kernel, where
the student's code cannot switch it off (:func:`cnnbook.grade.check_written_here` runs inside the
kernel and is a second line, not the guard).

:func:`find_violations` reads every cell the student could write (every code cell except the
instructor's locked and test cells) with Python's ``ast`` (IPython magics and shell escapes are
first turned into the calls they stand for) and reports, per cell, what the course forbids:

* importing ``cnnbook`` or a module that reaches into the interpreter (``importlib``, ``sys``,
  ``builtins``, ``inspect``, ``gc``, ``ctypes``, ``IPython``...);
* ``eval``, ``exec``, ``compile``, ``__import__``, ``getattr``/``setattr``, ``globals``/``vars``,
  ``get_ipython`` (magics, shell escapes, IPython hooks), and dunder attributes such as
  ``__globals__`` or ``__code__``;
* using a name that the instructor's cells bound to ``cnnbook`` (``cnnbook``, ``load_cifar10``)
  unless a test lists it in ``may_use=`` of :func:`~cnnbook.grade.check_written_here`;
* patching what the tests rely on: assigning to an attribute of a module (``np.testing.x = ...``,
  ``cnnbook.grade.check_written_here = ...``), rebinding a module, function or class that the
  instructor's cells import or define (``keras = ...``, ``def accuracy``) or defining a function
  or class named like a builtin (``def isinstance``);
* for every function a test checks with ``check_written_here(f, forbid=("keras", ...))``: any
  use of those packages in the cell that defines ``f`` or in the student cells whose top-level
  names it reads (a lookup table precomputed with Keras, a default argument, a closure).

The rules come from the notebook itself: nbgrader's cell metadata (which cells are locked or
tests) and the ``check_written_here`` calls of the test cells; nothing is specific to one
assignment.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Collection

__all__ = ["FORBIDDEN_MODULES", "FORBIDDEN_NAMES", "find_violations", "instructor_cell_ids"]

REFERENCE_PACKAGE = "cnnbook"

FORBIDDEN_MODULES = frozenset({
    REFERENCE_PACKAGE, "importlib", "sys", "builtins", "inspect", "gc", "ctypes", "IPython",
    "ipykernel", "runpy", "marshal", "code", "codeop", "pickle", "types", "traitlets",
})
"""Top-level modules a student cell may not import."""

FORBIDDEN_NAMES = frozenset({
    "eval", "exec", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr",
    "delattr", "breakpoint", "get_ipython", "__builtins__", "__loader__", "__spec__", "open_code",
})
"""Names a student cell may not use at all."""

ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__call__"})
"""Dunder attributes a student cell may read (``super().__init__``)."""

_BUILTIN_NAMES = frozenset(dir(builtins))
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
"""Bindings of the instructor's cells that a student cell may not redefine (modules, helpers and
classes the tests call); plain variables such as loop counters may be reused."""


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _source(cell) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def instructor_cell_ids(notebook) -> set[str]:
    """Grade ids of the instructor's code cells according to the notebook's own metadata: locked
    cells and test cells (graded, not solutions). Autograding passes the ids of the gradebook
    instead, so that metadata a student forged does not count."""
    return {metadata["grade_id"] for cell in notebook["cells"]
            if (metadata := _nbgrader(cell)).get("grade_id")
            and (metadata.get("locked")
                 or (metadata.get("grade") and not metadata.get("solution")))}


def _parse(source: str) -> ast.Module | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None  # the kernel reports the syntax error; that costs the student the cell


def _imports(tree: ast.AST) -> dict[str, str]:
    """Names bound by import statements anywhere in ``tree`` -> the full module they come from
    (``np`` -> ``numpy``, ``load_cifar10`` -> ``cnnbook.data``)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                names[bound] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
    return names


def _top_level_bindings(tree: ast.Module) -> dict[str, ast.AST]:
    """Names a cell binds at module level (assignments, defs, classes, imports, loop and with
    targets, ``global`` declarations in functions) -> the node that binds them."""
    bound: dict[str, ast.AST] = {}

    def targets(node):
        for target in ast.walk(node):
            if isinstance(target, ast.Name):
                bound.setdefault(target.id, node)

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.setdefault(node.name, node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.setdefault(alias.asname or alias.name.split(".")[0], node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                targets(target)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets(node.target)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            targets(node.target)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    targets(item.optional_vars)
        elif isinstance(node, ast.NamedExpr):
            targets(node.target)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                bound.setdefault(name, node)
        elif isinstance(node, ast.NamedExpr):
            targets(node.target)
    return bound


def _loaded_names(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)}


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _checked_functions(trees) -> tuple[dict[str, set[str]], set[str]]:
    """From the instructor's cells: ``{function name: forbidden packages}`` of every
    ``check_written_here(name, forbid=(...))`` call, and the union of their ``may_use`` names
    (a literal, or a name assigned a literal tuple in an instructor cell)."""
    constants = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                    node.targets[0], ast.Name):
                try:
                    constants[node.targets[0].id] = ast.literal_eval(node.value)
                except (ValueError, SyntaxError, TypeError):
                    pass
    checked: dict[str, set[str]] = {}
    may_use: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(
                    node.func, "attr", None)) == "check_written_here" and node.args
                    and isinstance(node.args[0], ast.Name)):
                continue
            forbidden = checked.setdefault(node.args[0].id, set())
            for keyword in node.keywords:
                value = keyword.value
                try:
                    literal = (constants.get(value.id, ()) if isinstance(value, ast.Name)
                               else ast.literal_eval(value))
                except (ValueError, SyntaxError, TypeError):
                    literal = ()
                names = {literal} if isinstance(literal, str) else set(literal)
                if keyword.arg == "forbid":
                    forbidden |= names
                elif keyword.arg == "may_use":
                    may_use |= names
    return checked, may_use


def _cell_rules(tree: ast.Module, origins: dict[str, str], protected: Collection[str],
                allowed_reference: Collection[str]) -> list[str]:
    """The rules of the module docstring that one student cell breaks, in words."""
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] if not node.level else ["(relative import)"]
        else:
            modules = []
        for module in modules:
            if module.split(".")[0] in FORBIDDEN_MODULES or module == "(relative import)":
                problems.append(f"it imports `{module}`")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            problems.append(f"it uses `{node.id}`")
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and (
                origins.get(node.id, "").split(".")[0] == REFERENCE_PACKAGE
                and node.id not in allowed_reference):
            problems.append(f"it uses `{node.id}` from {REFERENCE_PACKAGE}, the reference code")
        if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith(
                "__") and node.attr not in ALLOWED_DUNDERS:
            problems.append(f"it reads the attribute `{node.attr}`")
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete))
                       else [node.target])
            for target in targets:
                for part in ast.walk(target):
                    if isinstance(part, (ast.Attribute, ast.Subscript)):
                        root = _root_name(part)
                        if root in origins or root in protected:
                            problems.append(f"it changes `{ast.unparse(part)}`, which belongs "
                                            "to a module or to the notebook's set-up")
                            break
    for name, node in _top_level_bindings(tree).items():
        if name in protected:
            problems.append(f"it redefines `{name}`, which the notebook's set-up or tests use")
        elif name in _BUILTIN_NAMES and isinstance(node, (*_DEFINITIONS, ast.Global,
                                                           ast.Nonlocal)):
            problems.append(f"it redefines the built-in `{name}`")
    return list(dict.fromkeys(problems))


def find_violations(notebook, instructor_ids: Collection[str] | None = None
                    ) -> dict[int, list[str]]:
    """``{cell index: [problem, ...]}`` for every student code cell of ``notebook`` (a dict or
    ``NotebookNode`` in nbformat 4) that breaks a rule of the module docstring; an empty dict for
    an acceptable submission.

    ``instructor_ids``: grade ids of the instructor's code cells (locked and test cells), whose
    source the grader restored; default :func:`instructor_cell_ids` of the notebook. Every other
    code cell, including cells a student added and cells whose metadata names an unknown grade
    id, is the student's."""
    if instructor_ids is None:
        instructor_ids = instructor_cell_ids(notebook)
    instructor_trees, student = [], {}
    for index, cell in enumerate(notebook["cells"]):
        if cell.get("cell_type") != "code":
            continue
        metadata = _nbgrader(cell)
        tree = _parse(_source(cell))
        is_instructor = (metadata.get("grade_id") in instructor_ids
                         and not metadata.get("solution"))
        if is_instructor:
            if tree is not None:
                instructor_trees.append(tree)
        elif tree is not None:
            student[index] = tree

    origins: dict[str, str] = {}
    protected: set[str] = set()
    for tree in instructor_trees:
        origins.update(_imports(tree))
        protected |= {name for name, node in _top_level_bindings(tree).items()
                      if isinstance(node, _DEFINITIONS)}
    for tree in student.values():
        for name, module in _imports(tree).items():
            origins.setdefault(name, module)
    checked, may_use = _checked_functions(instructor_trees)
    protected -= set(checked)  # a test may bind the name it checks (a placeholder)

    problems: dict[int, list[str]] = {}
    for index, tree in student.items():
        found = _cell_rules(tree, origins, protected, may_use)
        if found:
            problems[index] = found

    # functions checked with forbid=(...): their cell and the cells of the globals they read
    bindings = {index: _top_level_bindings(tree) for index, tree in student.items()}
    for function, forbidden in sorted(checked.items()):
        if not forbidden:
            continue
        to_visit = [index for index, bound in bindings.items() if function in bound]
        seen: set[int] = set()
        while to_visit:
            index = to_visit.pop()
            if index in seen:
                continue
            seen.add(index)
            loaded = _loaded_names(student[index])
            uses = sorted(name for name in loaded
                          if origins.get(name, "").split(".")[0] in forbidden)
            if uses:
                problems.setdefault(index, []).append(
                    f"`{function}` must not rely on {' or '.join(sorted(forbidden))}, but this "
                    f"cell uses {', '.join(f'`{name}`' for name in uses)}")
            to_visit += [other for other, bound in bindings.items()
                         if other not in seen and loaded & set(bound)]
    return problems
