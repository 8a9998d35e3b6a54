"""Source analysis of a submitted notebook's answers, done by the grader outside the kernel, where
the student's code cannot switch it off (:func:`cnnbook.grading.written_here.check_written_here`
runs inside the
kernel and is a second line, not the guard).

:func:`find_violations` reads every cell the student could write (every code cell except the
instructor's locked and test cells) with Python's ``ast`` (IPython magics and shell escapes are
first turned into the calls they stand for) and reports, per cell, what the course forbids:

* importing ``cnnbook``, a module that reaches into the interpreter (``importlib``, ``sys``,
  ``builtins``, ``inspect``, ``gc``, ``ctypes``, ``IPython``...), one that loads code or objects
  from a file without an import statement (``imp``, ``site``, ``zipimport``, ``pkgutil``,
  ``pickle``, ``shelve``; likewise ``allow_pickle=`` and ``read_pickle``), or one that starts
  other programs (``subprocess``, ``multiprocessing``, ``pty``, ``pydoc``...), and calling the
  functions of ``os`` that start them (``os.system``, ``os.popen``, ``os.exec*``,
  ``os.spawn*``, ``os.fork``...; so no ``from os import *``, and ``os`` only as ``os.name``,
  never as a value). Code that runs elsewhere escapes this analysis. (The sandbox refuses to
  start programs anyway; the rule gives the student the reason before anything runs.)
  ``concurrent.futures.ProcessPoolExecutor`` is not refused here: it forks, which the sandbox
  refuses;
* importing a module that is not installed (neither the standard library nor a package of the
  grader's environment): a module of the student's own, shipped beside the notebook or written
  by it (the grading kernel does not import from its folder either);
* ``eval``, ``exec``, ``compile``, ``__import__``, ``getattr``/``setattr`` (and
  ``operator.attrgetter``/``methodcaller``, which do the same; ``operator`` only as
  ``operator.name``), ``globals``/``vars``,
  ``get_ipython`` (magics, shell escapes, IPython hooks), and dunder attributes such as
  ``__globals__`` or ``__code__``;
* using a name that the instructor's cells bound to ``cnnbook`` (``cnnbook``, ``load_cifar10``)
  unless a test lists it in ``may_use=`` of
  :func:`~cnnbook.grading.written_here.check_written_here`;
* patching what the tests rely on: assigning to an attribute of a module (``np.testing.x = ...``,
  ``cnnbook.grading.written_here.check_written_here = ...``), rebinding a module, function or class
  that the
  instructor's cells import or define (``keras = ...``, ``def accuracy``) or defining a function
  or class named like a builtin (``def isinstance``);
* for every function a test checks with ``check_written_here(f, forbid=("keras", ...))``: any
  use of those packages in the cell that defines ``f`` or in the student cells that bind, or
  change in place, a global name that it reads, and so on (a lookup table precomputed with Keras
  or filled by ``table[k] = ...`` or ``table.update(...)`` in another cell, a default argument,
  a closure). Only real bindings count (Python's scoping rules: ``x.attr = ...`` and
  ``x[i] = ...`` bind no name, and a name bound inside a function is its own), so a cell that
  merely sets an attribute or item is not taken for one that redefines a name.

The rules come from the notebook itself: nbgrader's cell metadata (which cells are locked or
tests) and the ``check_written_here`` calls of the test cells; nothing is specific to one
assignment.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import sys
from collections.abc import Collection

__all__ = ["FORBIDDEN_MODULES", "FORBIDDEN_NAMES", "MUTATING_FUNCTIONS", "MUTATING_METHODS",
           "find_violations", "instructor_cell_ids", "is_installed_module", "starts_a_program"]

REFERENCE_PACKAGE = "cnnbook"

FORBIDDEN_MODULES = frozenset({
    REFERENCE_PACKAGE, "importlib", "sys", "builtins", "inspect", "gc", "ctypes", "IPython",
    "ipykernel", "runpy", "marshal", "code", "codeop", "pickle", "types", "traitlets",
    # other programs (the sandbox refuses to start them; refused here with a clearer reason)
    "subprocess", "multiprocessing", "pty", "posix", "_posixsubprocess", "pydoc", "webbrowser",
    "distutils", "setuptools",
    # loading code from a file without an import statement, or objects from a pickle
    "imp", "site", "zipimport", "pkgutil", "shelve", "copyreg", "dill", "cloudpickle", "joblib",
})
"""Top-level modules a student cell may not import."""

PROGRAM_STARTING_MODULES = frozenset({"os"})
"""Modules whose functions :func:`starts_a_program` names."""

ATTRIBUTE_BY_NAME = {module: frozenset({"attrgetter", "methodcaller"})
                     for module in ("operator", "_operator")}
"""Functions that read an attribute named by a string, as ``getattr`` does."""

FORBIDDEN_FUNCTION_MODULES = PROGRAM_STARTING_MODULES | set(ATTRIBUTE_BY_NAME)
"""Modules a student cell may import and use as ``module.function``, except the functions above;
not as a value (``o = os``), and not with ``import *``."""

FORBIDDEN_ATTRIBUTES = frozenset({"create_subprocess_exec", "create_subprocess_shell",
                                  "read_pickle"})
"""Attributes a student cell may not use on anything (``asyncio.create_subprocess_shell``,
``pandas.read_pickle``)."""

FORBIDDEN_KEYWORDS = frozenset({"allow_pickle"})
"""Keyword arguments a student cell may not pass (``numpy.load(..., allow_pickle=True)`` returns
any object a shipped file names, a reference function included)."""

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


def starts_a_program(function: str) -> bool:
    """Whether ``os.<function>`` starts another program or process (``system``, ``popen``,
    ``execv``, ``spawnl``, ``posix_spawn``, ``fork``, ``forkpty``)."""
    return function in ("system", "popen") or function.startswith(
        ("exec", "spawn", "posix_spawn", "fork"))


def _forbidden_function(module: str, function: str) -> str | None:
    """Why the course forbids ``module.function`` in a student cell, or None."""
    if module in PROGRAM_STARTING_MODULES and starts_a_program(function):
        return "which starts another program"
    if function in ATTRIBUTE_BY_NAME.get(module, ()):
        return "which reads attributes by name, as `getattr` does"
    return None


def is_installed_module(name: str) -> bool:
    """Whether the top-level module ``name`` is in the standard library or installed where the
    grader runs (found on its ``sys.path``, which holds no submission's folder): ``numpy`` and
    ``collections`` are, a student's ``my_shapes.py`` is not."""
    module = name.split(".")[0]
    if not module.isidentifier():
        return False
    if module in sys.stdlib_module_names or module in sys.builtin_module_names:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _parse(source: str) -> ast.Module | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None  # the kernel reports the syntax error; that costs the student the cell


def _import_bindings(tree: ast.AST) -> list[tuple[str, str]]:
    """Every ``(name, module)`` that an import statement anywhere in ``tree`` binds, in order:
    the full module the name comes from (``np`` -> ``numpy``, ``load_cifar10`` ->
    ``cnnbook.course.data``)."""
    bindings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                bindings.append((bound, alias.name if alias.asname else alias.name.split(".")[0]))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            bindings += [(alias.asname or alias.name, node.module) for alias in node.names]
    return bindings


def _imports(tree: ast.AST) -> dict[str, str]:
    """Names bound by import statements anywhere in ``tree`` -> the full module they come from
    (the last import of a name wins; :func:`_import_bindings` has them all)."""
    return dict(_import_bindings(tree))


_NEW_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _run_where_defined(node: ast.AST) -> list[ast.AST]:
    """The parts of a ``def``, ``lambda`` or ``class`` that run in the scope that defines it:
    decorators, default values and annotations of a function; decorators, bases and keywords of a
    class. (Their bodies run in a namespace of their own.)"""
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *(keyword.value for keyword in node.keywords)]
    arguments = node.args
    parts = [*arguments.defaults, *(value for value in arguments.kw_defaults if value is not None)]
    if not isinstance(node, ast.Lambda):
        parts += node.decorator_list
        parts += [argument.annotation for argument in _arguments(node)
                  if argument.annotation is not None]
        parts += [node.returns] if node.returns is not None else []
    return parts


def _arguments(function: ast.AST) -> list[ast.arg]:
    if isinstance(function, ast.ClassDef):
        return []
    arguments = function.args
    return [argument for argument in (*arguments.posonlyargs, *arguments.args, arguments.vararg,
                                      *arguments.kwonlyargs, arguments.kwarg)
            if argument is not None]


def _scope_nodes(scope: ast.AST) -> list[ast.AST]:
    """Every node of ``scope`` (a module, function, lambda or class) that runs in the scope's own
    namespace, in source order: its body with all nested statements and expressions (``if``,
    loops, ``try``, ``with``, ``match`` and comprehensions included), but of a nested ``def``,
    ``lambda`` or ``class`` only the node itself and :func:`_run_where_defined`."""
    body = [scope.body] if isinstance(scope, ast.Lambda) else scope.body
    nodes, pending = [], list(reversed(body))
    while pending:
        node = pending.pop()
        nodes.append(node)
        inner = (_run_where_defined(node) if isinstance(node, _NEW_SCOPES)
                 else list(ast.iter_child_nodes(node)))
        pending += reversed(inner)
    return nodes


def _target_names(target: ast.AST) -> list[str]:
    """Names an assignment target binds: ``x``, and every name of ``x, *rest = ...`` or
    ``[x, (y, z)] = ...``. An attribute or subscript target (``x.size = ...``, ``x[i] = ...``)
    binds no name: it changes the object ``x`` holds."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    return []


def _scope_bindings(nodes: list[ast.AST]) -> dict[str, list[ast.AST]]:
    """Names that the nodes of one scope (:func:`_scope_nodes`) bind in it -> the binding nodes,
    by Python's rules: assignment targets that are names (also unpacked, augmented or annotated),
    ``for`` and ``with ... as`` targets, ``:=``, ``except ... as``, ``match`` captures, ``del``,
    imports, ``def`` and ``class``. Comprehension variables stay in the comprehension."""
    bound: dict[str, list[ast.AST]] = {}

    def bind(names, node):
        for name in names:
            bound.setdefault(name, []).append(node)

    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind([node.name], node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bind([alias.asname or alias.name.split(".")[0] for alias in node.names
                  if alias.name != "*"], node)
        elif isinstance(node, (ast.Assign, ast.Delete)):
            bind([name for target in node.targets for name in _target_names(target)], node)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor,
                               ast.NamedExpr)):
            bind(_target_names(node.target), node)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            bind(_target_names(node.optional_vars), node)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bind([node.name], node)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bind([node.rest], node)
    return bound


def _top_level_bindings(tree: ast.Module) -> dict[str, list[ast.AST]]:
    """Names a cell binds in the notebook's global namespace -> the nodes that bind them: every
    binding of :func:`_scope_bindings` that runs at module level (also inside ``if``, loops,
    ``try`` and ``with``, and ``:=`` in a comprehension or a default value), and every ``global``
    declaration in a function. ``x.attr = ...`` and ``x[i] = ...`` bind nothing (see
    :func:`_changed_globals`)."""
    bound = _scope_bindings(_scope_nodes(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            for name in node.names:
                bound.setdefault(name, []).append(node)
    return bound


MUTATING_METHODS = frozenset({
    # list, dict, set, bytearray, collections.deque
    "append", "appendleft", "extend", "extendleft", "insert", "remove", "pop", "popleft",
    "popitem", "clear", "sort", "reverse", "rotate", "update", "setdefault", "add", "discard",
    "difference_update", "intersection_update", "symmetric_difference_update",
    # NumPy arrays
    "fill", "put", "resize", "partition", "itemset", "setfield",
})
"""Methods that change their object in place (``table.update(...)``, ``sizes.append(...)``):
a cell calling one on a global changes that global for every function that reads it."""

MUTATING_FUNCTIONS = frozenset({
    "copyto", "place", "putmask", "put", "fill_diagonal", "shuffle", "setitem", "delitem",
})
"""Functions of NumPy, ``random`` and ``operator`` that write into their first argument
(``np.copyto(table, ...)``, ``setitem(table, key, value)``)."""


def _changed_roots(node: ast.AST, imported: Collection[str]) -> list[str]:
    """The names whose object ``node`` changes in place: the root of an assigned, augmented or
    deleted attribute or subscript (``x`` of ``x.a[i] = v``), the receiver of a mutating method
    (``x`` of ``x[k].append(v)``), and the first argument of a mutating method called through a
    builtin type (``dict.update(x, ...)``) or of a mutating function (``np.copyto(x, ...)``,
    ``setitem(x, k, v)``). ``imported``: names bound by imports (library objects, whose
    ``add`` or ``update`` is no method of the notebook's data)."""
    if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx,
                                                                       (ast.Store, ast.Del)):
        return [root] if (root := _root_name(node)) else []
    if not isinstance(node, ast.Call):
        return []
    function, changed = node.func, []
    first_argument = _root_name(node.args[0]) if node.args else None
    if isinstance(function, ast.Attribute):
        receiver = _root_name(function.value)
        if receiver in imported:
            changed = [first_argument] if function.attr in MUTATING_FUNCTIONS else []
        elif receiver in ("list", "dict", "set", "bytearray"):  # list.append(x, value)
            changed = [first_argument] if function.attr in MUTATING_METHODS else []
        elif function.attr in MUTATING_METHODS:
            changed = [receiver]
    elif isinstance(function, ast.Name) and function.id in MUTATING_FUNCTIONS:
        changed = [first_argument]
    return [name for name in changed if name is not None]


def _changed_globals(tree: ast.Module, imported: Collection[str]) -> set[str]:
    """Global names whose object code of the cell ``tree`` changes in place (see
    :func:`_changed_roots`; ``imported``: names bound by imports, which are library objects) at
    top level or in the functions and classes it defines, wherever the name is global there: not
    a parameter or a name bound in that function or an enclosing one, unless declared ``global``.
    Another name for the same object (``alias = table``) is not followed."""
    changed: set[str] = set()

    def visit(scope: ast.AST, enclosing_locals: frozenset[str]) -> None:
        nodes = _scope_nodes(scope)
        declared_global = {name for node in nodes if isinstance(node, ast.Global)
                           for name in node.names}
        local = set() if isinstance(scope, ast.Module) else (
            set(_scope_bindings(nodes)) | {argument.arg for argument in _arguments(scope)})
        not_global = frozenset((local | enclosing_locals) - declared_global)
        for node in nodes:
            changed.update(root for root in _changed_roots(node, imported)
                           if root not in not_global)
        # A function's locals are seen by the functions nested in it; a class's are not.
        inner = not_global if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.Lambda)) else enclosing_locals
        for node in nodes:
            if isinstance(node, _NEW_SCOPES):
                visit(node, inner)

    visit(tree, frozenset())
    return changed


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
    # `for function in (f, g): check_written_here(function, ...)` checks f and g: the calls
    # inside such a loop whose argument is its variable -> the names the loop goes through
    loop_names: dict[int, list[str]] = {}
    for tree in trees:
        for loop in ast.walk(tree):
            if (isinstance(loop, ast.For) and isinstance(loop.target, ast.Name)
                    and isinstance(loop.iter, (ast.Tuple, ast.List))
                    and all(isinstance(item, ast.Name) for item in loop.iter.elts)):
                for node in ast.walk(loop):
                    if (isinstance(node, ast.Call) and node.args
                            and isinstance(node.args[0], ast.Name)
                            and node.args[0].id == loop.target.id):
                        loop_names[id(node)] = [item.id for item in loop.iter.elts]
    checked: dict[str, set[str]] = {}
    may_use: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(
                    node.func, "attr", None)) == "check_written_here" and node.args
                    and isinstance(node.args[0], ast.Name)):
                continue
            forbidden: set[str] = set()
            for function in loop_names.get(id(node), [node.args[0].id]):
                checked.setdefault(function, set())
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
            for function in loop_names.get(id(node), [node.args[0].id]):
                checked[function] |= forbidden
    return checked, may_use


def _cell_rules(tree: ast.Module, origins: dict[str, str], protected: Collection[str],
                allowed_reference: Collection[str], instructor_imports: dict[str, str],
                packages: dict[str, set[str]]) -> list[str]:
    """The rules of the module docstring that one student cell breaks, in words.
    ``instructor_imports``: names the instructor's cells import -> their modules (a student
    cell may import the same module under the same name again). ``packages``: every top-level
    module that any cell imports under a name."""
    problems = []
    attribute_roots = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
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
            elif not is_installed_module(module):
                problems.append(f"it imports `{module}`, which is not an installed module (only "
                                "the standard library and the course's packages may be imported)")
        if isinstance(node, ast.ImportFrom) and not node.level:
            for alias in node.names:
                if alias.name == "*" and node.module in FORBIDDEN_FUNCTION_MODULES:
                    problems.append(f"it imports everything from `{node.module}`, which holds "
                                    f"functions the course forbids")
                elif why := _forbidden_function(node.module or "", alias.name):
                    problems.append(f"it imports `{alias.name}` from `{node.module}`, {why}")
                elif alias.name in FORBIDDEN_ATTRIBUTES:
                    problems.append(f"it imports `{alias.name}` from `{node.module}`")
        if isinstance(node, ast.Attribute):
            value = node.value  # `os.system`, or `shutil.os.system`
            owners = (packages.get(value.id, set()) if isinstance(value, ast.Name)
                      else {"os"} if isinstance(value, ast.Attribute)
                      and value.attr in ("os", "_os") else set())
            for module in sorted(owners):
                if why := _forbidden_function(module, node.attr):
                    problems.append(f"it uses `{ast.unparse(node)}`, {why}")
            if node.attr in FORBIDDEN_ATTRIBUTES:
                problems.append(f"it uses `{ast.unparse(node)}`")
        if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                and id(node) not in attribute_roots
                and (owners := sorted(packages.get(node.id, set())
                                      & FORBIDDEN_FUNCTION_MODULES))):
            problems.append(f"it uses the module `{node.id}` ({owners[0]}) as a value; call its "
                            f"functions directly (`{node.id}.name`)")
        if isinstance(node, ast.keyword) and node.arg in FORBIDDEN_KEYWORDS:
            problems.append(f"it passes `{node.arg}=`")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            problems.append(f"it uses `{node.id}`")
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and (
                origins.get(node.id, "").split(".")[0] == REFERENCE_PACKAGE
                and node.id not in allowed_reference):
            problems.append(f"it uses `{node.id}` from {REFERENCE_PACKAGE}, the reference code")
        if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith(
                "__") and node.attr not in ALLOWED_DUNDERS:
            problems.append(f"it reads the attribute `{node.attr}`")
        # an attribute or subscript assigned, augmented or deleted (any target: `=`, `+=`,
        # `del`, `for ... in`, `with ... as`); one only read inside a target (the `math.floor`
        # of `counts[math.floor(v)] = 1`) changes nothing
        if (isinstance(node, (ast.Attribute, ast.Subscript))
                and isinstance(node.ctx, (ast.Store, ast.Del))
                and (_root_name(node) in origins or _root_name(node) in protected)):
            problems.append(f"it changes `{ast.unparse(node)}`, which belongs to a module or to "
                            "the notebook's set-up")
    for name, nodes in _top_level_bindings(tree).items():
        # importing again the module the set-up imports under that name (`import os`) is harmless
        same_import = all(isinstance(node, (ast.Import, ast.ImportFrom))
                          and name in instructor_imports
                          and dict(_import_bindings(node)).get(name) == instructor_imports[name]
                          for node in nodes)
        if name in protected and not same_import:
            problems.append(f"it redefines `{name}`, which the notebook's set-up or tests use")
        elif name in _BUILTIN_NAMES and any(isinstance(node, (*_DEFINITIONS, ast.Global))
                                            for node in nodes):
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
    instructor_imports = dict(origins)
    for tree in instructor_trees:
        protected |= {name for name, nodes in _top_level_bindings(tree).items()
                      if any(isinstance(node, _DEFINITIONS) for node in nodes)}
    for tree in student.values():
        for name, module in _imports(tree).items():
            origins.setdefault(name, module)
    # every package a name is imported from in any cell: `import numpy as backend` in one cell
    # does not hide `import keras as backend` in another
    packages: dict[str, set[str]] = {}
    for tree in (*instructor_trees, *student.values()):
        for name, module in _import_bindings(tree):
            packages.setdefault(name, set()).add(module.split(".")[0])
    checked, may_use = _checked_functions(instructor_trees)
    protected -= set(checked)  # a test may bind the name it checks (a placeholder)

    problems: dict[int, list[str]] = {}
    for index, tree in student.items():
        found = _cell_rules(tree, origins, protected, may_use, instructor_imports, packages)
        if found:
            problems[index] = found

    # functions checked with forbid=(...): their cell and the cells that bind or change in place
    # the globals they read, and so on
    changes = {index: set(_top_level_bindings(tree)) | _changed_globals(tree, origins)
               for index, tree in student.items()}
    for function, forbidden in sorted(checked.items()):
        if not forbidden:
            continue
        to_visit = [index for index, changed in changes.items() if function in changed]
        seen: set[int] = set()
        while to_visit:
            index = to_visit.pop()
            if index in seen:
                continue
            seen.add(index)
            loaded = _loaded_names(student[index])
            uses = sorted(name for name in loaded if packages.get(name, set()) & forbidden)
            if uses:
                problems.setdefault(index, []).append(
                    f"`{function}` must not rely on {' or '.join(sorted(forbidden))}, but this "
                    f"cell uses {', '.join(f'`{name}`' for name in uses)}")
            to_visit += [other for other, changed in changes.items()
                         if other not in seen and loaded & changed]
    return problems
