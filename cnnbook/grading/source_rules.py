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

Each rule is a small function registered in one table, :data:`RULES` (a :class:`Rule`: what it
looks at, when it is broken, the message the student reads, and its docstring). The driver walks
each student cell once and applies the table to every node, to what its imports name
(:class:`ImportedModule`, :class:`ImportedName`) and to every global name it binds
(:class:`Binding`); across cells, to every cell a checked function relies on
(:class:`Reliance`). A new rule is one more function with :func:`_rule`.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["FORBIDDEN_MODULES", "FORBIDDEN_NAMES", "MUTATING_FUNCTIONS", "MUTATING_METHODS",
           "RULES", "Rule", "find_violations", "instructor_cell_ids", "is_installed_module",
           "starts_a_program"]

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
    # IPython takes 0.13 s to import: only parsing a notebook's cells needs it, not the grader
    # steps that import this module for is_installed_module
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
    for node in nodes:
        for name in _bound_names(node):
            bound.setdefault(name, []).append(node)
    return bound


def _bound_names(node: ast.AST) -> list[str]:
    """The names one node binds in its scope (see :func:`_scope_bindings`)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [alias.asname or alias.name.split(".")[0] for alias in node.names
                if alias.name != "*"]
    if isinstance(node, (ast.Assign, ast.Delete)):
        return [name for target in node.targets for name in _target_names(target)]
    if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.NamedExpr)):
        return _target_names(node.target)
    if isinstance(node, ast.withitem) and node.optional_vars is not None:
        return _target_names(node.optional_vars)
    if isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
        return [node.name]
    if isinstance(node, ast.MatchMapping) and node.rest:
        return [node.rest]
    return []


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


def _walk_all(trees) -> Iterator[ast.AST]:
    """Every node of every tree, tree after tree, each in :func:`ast.walk` order."""
    for tree in trees:
        yield from ast.walk(tree)


def _literal_constants(trees) -> dict[str, object]:
    """Names that the instructor's cells assign a literal (``FORBIDDEN = ("keras",)``) -> its
    value (the last assignment wins)."""
    constants = {}
    for node in _walk_all(trees):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, SyntaxError, TypeError):
                pass
    return constants


def _calls_in_loops_over_names(trees) -> dict[int, list[str]]:
    """``for function in (f, g): check_written_here(function, ...)`` checks f and g: the ids of
    the calls inside such a loop whose first argument is its variable -> the names the loop goes
    through."""
    loop_names: dict[int, list[str]] = {}
    for loop in _walk_all(trees):
        if not (isinstance(loop, ast.For) and isinstance(loop.target, ast.Name)
                and isinstance(loop.iter, (ast.Tuple, ast.List))
                and all(isinstance(item, ast.Name) for item in loop.iter.elts)):
            continue
        names = [item.id for item in loop.iter.elts]
        loop_names.update({id(node): names for node in ast.walk(loop)
                           if isinstance(node, ast.Call) and node.args
                           and isinstance(node.args[0], ast.Name)
                           and node.args[0].id == loop.target.id})
    return loop_names


def _is_check_call(node: ast.AST) -> bool:
    """Whether ``node`` is ``check_written_here(name, ...)`` (also called as an attribute)."""
    return (isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check_written_here"
            and bool(node.args) and isinstance(node.args[0], ast.Name))


def _keyword_names(value: ast.AST, constants: dict[str, object]) -> set[str]:
    """The names a keyword argument of ``check_written_here`` gives: a literal string or
    collection, or a name that an instructor cell assigned one (anything else gives none)."""
    try:
        literal = (constants.get(value.id, ()) if isinstance(value, ast.Name)
                   else ast.literal_eval(value))
    except (ValueError, SyntaxError, TypeError):
        literal = ()
    return {literal} if isinstance(literal, str) else set(literal)


def _checked_functions(trees) -> tuple[dict[str, set[str]], set[str]]:
    """From the instructor's cells: ``{function name: forbidden packages}`` of every
    ``check_written_here(name, forbid=(...))`` call, and the union of their ``may_use`` names
    (a literal, or a name assigned a literal tuple in an instructor cell)."""
    constants = _literal_constants(trees)
    loop_names = _calls_in_loops_over_names(trees)
    checked: dict[str, set[str]] = {}
    may_use: set[str] = set()
    for node in filter(_is_check_call, _walk_all(trees)):
        names = {keyword.arg: _keyword_names(keyword.value, constants)
                 for keyword in node.keywords if keyword.arg in ("forbid", "may_use")}
        for function in loop_names.get(id(node), [node.args[0].id]):
            checked.setdefault(function, set()).update(names.get("forbid", ()))
        may_use |= names.get("may_use", set())
    return checked, may_use


# --- The rules: one table, applied to each student cell by one walk ------------------------------

@dataclass(frozen=True)
class ImportedModule:
    """A module that an import statement of a student cell names (``import a.b``: ``a.b``;
    ``from a.b import c``: ``a.b``; a relative import: ``(relative import)``)."""

    module: str


@dataclass(frozen=True)
class ImportedName:
    """A name that ``from module import name`` (absolute) of a student cell imports; ``*``
    for ``import *``."""

    module: str
    name: str


@dataclass(frozen=True)
class Binding:
    """A name that a student cell binds in the notebook's global namespace, with the nodes that
    bind it (:func:`_top_level_bindings`)."""

    name: str
    nodes: tuple[ast.AST, ...]


@dataclass(frozen=True)
class Reliance:
    """A student cell that a function checked with ``check_written_here(f, forbid=...)``
    relies on: the cell that defines it, or one that binds or changes in place a global name
    that such a cell reads, and so on (:func:`_relied_on`)."""

    function: str
    forbidden: frozenset[str]
    """The packages the test forbids the function."""
    loaded: frozenset[str]
    """The names the cell reads."""


@dataclass(frozen=True)
class Context:
    """What the rules know beyond the part of a cell they look at: the notebook's imports and
    set-up, read from all its code cells."""

    origins: dict[str, str]
    """Names bound by imports -> their full module (the instructor's cells first)."""
    protected: frozenset[str]
    """Modules, functions and classes the instructor's cells import or define."""
    may_use: frozenset[str]
    """Names from ``cnnbook`` that a test lets the student use (``may_use=``)."""
    instructor_imports: dict[str, str]
    """Names the instructor's cells import -> their modules (a student cell may import the same
    module under the same name again)."""
    packages: dict[str, set[str]]
    """Every top-level module that any cell imports under a name."""
    checked: dict[str, set[str]]
    """Functions checked by ``check_written_here`` -> the packages forbidden them."""
    attribute_roots: frozenset[int] = frozenset()
    """In one cell: the ids of the nodes that are the value of an attribute (``os`` of
    ``os.name``)."""


@dataclass(frozen=True, repr=False)
class Rule:
    """One rule of the module docstring: what it looks at, when it is broken, and what the
    student reads then. Its docstring is that of :attr:`broken_by`."""

    name: str
    looks_at: tuple[type, ...]
    """The kinds of subject it looks at: AST nodes of a student cell, or :class:`ImportedModule`,
    :class:`ImportedName`, :class:`Binding` or :class:`Reliance`."""
    message: str
    """What the student reads: a ``str.format`` template of the fields that
    :attr:`broken_by` returns."""
    broken_by: Callable[[Any, Context], dict[str, str] | None]
    """``(subject, context) ->`` the fields of :attr:`message` where the subject breaks the rule,
    else None."""

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.broken_by) or ""

    def problem(self, subject, context: Context) -> str | None:
        """The message for ``subject`` if it breaks this rule, else None."""
        if not isinstance(subject, self.looks_at):
            return None
        fields = self.broken_by(subject, context)
        return None if fields is None else self.message.format(**fields)

    def __repr__(self) -> str:
        return f"Rule({self.name!r})"


RULES: list[Rule] = []
"""Every rule, in the order their messages are listed for one part of a cell; each is a function
of this module registered by :func:`_rule`."""


def _rule(*looks_at: type, message: str):
    """Register the decorated function as a :class:`Rule` of :data:`RULES` (named as the
    function, without its leading underscore)."""
    def register(broken_by):
        RULES.append(Rule(broken_by.__name__.lstrip("_"), looks_at, message, broken_by))
        return broken_by
    return register


def _is_forbidden_module(module: str) -> bool:
    return module.split(".")[0] in FORBIDDEN_MODULES or module == "(relative import)"


def _owner_modules(attribute: ast.Attribute, context: Context) -> set[str]:
    """The top-level modules whose attribute ``attribute`` may be: those its root name is
    imported from in any cell (``os`` of ``system_tools.popen``), or ``os`` where a module
    reaches it (``shutil.os.system``)."""
    value = attribute.value
    if isinstance(value, ast.Name):
        return context.packages.get(value.id, set())
    if isinstance(value, ast.Attribute) and value.attr in ("os", "_os"):
        return {"os"}
    return set()


def _redefines_set_up(binding: Binding, context: Context) -> bool:
    """Whether ``binding`` rebinds a name of the set-up; importing again the module the set-up
    imports under that name (``import os``) is harmless."""
    same_import = all(isinstance(node, (ast.Import, ast.ImportFrom))
                      and binding.name in context.instructor_imports
                      and (dict(_import_bindings(node)).get(binding.name)
                           == context.instructor_imports[binding.name])
                      for node in binding.nodes)
    return binding.name in context.protected and not same_import


@_rule(ast.Attribute, message="it uses `{expression}`, which starts another program")
def _program_starting_function(node: ast.Attribute, context: Context):
    """``os.system``, ``os.popen``, ``os.exec*``, ``os.spawn*``, ``os.fork*``
    (:func:`starts_a_program`), whatever name ``os`` is imported under, also reached through
    another module (``shutil.os.system``): code that runs elsewhere escapes this analysis."""
    if (_owner_modules(node, context) & PROGRAM_STARTING_MODULES
            and starts_a_program(node.attr)):
        return {"expression": ast.unparse(node)}
    return None


@_rule(ast.Attribute,
       message="it uses `{expression}`, which reads attributes by name, as `getattr` does")
def _attribute_reader(node: ast.Attribute, context: Context):
    """``operator.attrgetter`` and ``operator.methodcaller`` (also of ``_operator``, whatever
    name it is imported under): they reach any attribute, as ``getattr`` does."""
    if any(node.attr in ATTRIBUTE_BY_NAME.get(module, ())
           for module in _owner_modules(node, context)):
        return {"expression": ast.unparse(node)}
    return None


@_rule(ast.Attribute, message="it uses `{expression}`")
def _forbidden_attribute(node: ast.Attribute, context: Context):
    """An attribute of :data:`FORBIDDEN_ATTRIBUTES` on anything
    (``asyncio.create_subprocess_shell``, ``pandas.read_pickle``)."""
    return {"expression": ast.unparse(node)} if node.attr in FORBIDDEN_ATTRIBUTES else None


@_rule(ast.Name, message="it uses the module `{name}` ({module}) as a value; call its functions "
                         "directly (`{name}.name`)")
def _module_as_value(node: ast.Name, context: Context):
    """A module of :data:`FORBIDDEN_FUNCTION_MODULES` (``os``, ``operator``) used other than as
    ``module.name`` (``tools = [operator][0]``): its forbidden functions would escape the
    rules above."""
    if not isinstance(node.ctx, ast.Load) or id(node) in context.attribute_roots:
        return None
    owners = sorted(context.packages.get(node.id, set()) & FORBIDDEN_FUNCTION_MODULES)
    return {"name": node.id, "module": owners[0]} if owners else None


@_rule(ast.keyword, message="it passes `{keyword}=`")
def _forbidden_keyword(node: ast.keyword, context: Context):
    """A keyword argument of :data:`FORBIDDEN_KEYWORDS` (``numpy.load(...,
    allow_pickle=True)`` returns any object a shipped file names)."""
    return {"keyword": node.arg} if node.arg in FORBIDDEN_KEYWORDS else None


@_rule(ast.Name, message="it uses `{name}`")
def _forbidden_name(node: ast.Name, context: Context):
    """A name of :data:`FORBIDDEN_NAMES`, read or bound (``eval``, ``exec``, ``__import__``,
    ``getattr``, ``globals``, ``get_ipython``, which magics and shell escapes become...)."""
    return {"name": node.id} if node.id in FORBIDDEN_NAMES else None


@_rule(ast.Name, message=f"it uses `{{name}}` from {REFERENCE_PACKAGE}, the reference code")
def _reference_name(node: ast.Name, context: Context):
    """Reading a name that an import binds to ``cnnbook`` (``cnnbook``, ``load_cifar10``),
    unless a test lists it in ``may_use=``."""
    if (isinstance(node.ctx, ast.Load)
            and context.origins.get(node.id, "").split(".")[0] == REFERENCE_PACKAGE
            and node.id not in context.may_use):
        return {"name": node.id}
    return None


@_rule(ast.Attribute, message="it reads the attribute `{attribute}`")
def _dunder_attribute(node: ast.Attribute, context: Context):
    """A dunder attribute other than :data:`ALLOWED_DUNDERS` (``__globals__``, ``__code__``,
    ``__dict__``): the road from a function to the module that holds the reference code."""
    if (node.attr.startswith("__") and node.attr.endswith("__")
            and node.attr not in ALLOWED_DUNDERS):
        return {"attribute": node.attr}
    return None


@_rule(ast.Attribute, ast.Subscript,
       message="it changes `{expression}`, which belongs to a module or to the notebook's set-up")
def _changes_set_up(node: ast.Attribute | ast.Subscript, context: Context):
    """An attribute or item assigned, augmented or deleted (any target: ``=``, ``+=``,
    ``del``, ``for ... in``, ``with ... as``) on a module or on what the set-up defines
    (``keras.layers.Conv2D.compute_output_shape = ...``). One only read inside a target (the
    ``math.floor`` of ``counts[math.floor(v)] = 1``) changes nothing."""
    root = _root_name(node)
    if (isinstance(node.ctx, (ast.Store, ast.Del))
            and (root in context.origins or root in context.protected)):
        return {"expression": ast.unparse(node)}
    return None


@_rule(ImportedModule, message="it imports `{module}`")
def _forbidden_module(imported: ImportedModule, context: Context):
    """Importing ``cnnbook`` or another module of :data:`FORBIDDEN_MODULES` (modules that reach
    into the interpreter, load code or objects from a file, or start other programs), or a
    relative import."""
    return {"module": imported.module} if _is_forbidden_module(imported.module) else None


@_rule(ImportedModule, message="it imports `{module}`, which is not an installed module (only "
                               "the standard library and the course's packages may be imported)")
def _uninstalled_module(imported: ImportedModule, context: Context):
    """Importing a module that is neither in the standard library nor installed where the grader
    runs (:func:`is_installed_module`): a module of the student's own, shipped beside the
    notebook or written by it."""
    if _is_forbidden_module(imported.module) or is_installed_module(imported.module):
        return None
    return {"module": imported.module}


@_rule(ImportedName,
       message="it imports everything from `{module}`, which holds functions the course forbids")
def _star_import_of_forbidden_functions(imported: ImportedName, context: Context):
    """``from os import *`` or ``from operator import *``: the names it binds escape the rules
    on ``module.function``."""
    if imported.name == "*" and imported.module in FORBIDDEN_FUNCTION_MODULES:
        return {"module": imported.module}
    return None


@_rule(ImportedName,
       message="it imports `{name}` from `{module}`, which starts another program")
def _program_starting_import(imported: ImportedName, context: Context):
    """``from os import system`` (and the other functions of :func:`starts_a_program`)."""
    if imported.module in PROGRAM_STARTING_MODULES and starts_a_program(imported.name):
        return {"name": imported.name, "module": imported.module}
    return None


@_rule(ImportedName, message="it imports `{name}` from `{module}`, which reads attributes by "
                             "name, as `getattr` does")
def _attribute_reader_import(imported: ImportedName, context: Context):
    """``from operator import attrgetter`` or ``methodcaller``."""
    if imported.name in ATTRIBUTE_BY_NAME.get(imported.module, ()):
        return {"name": imported.name, "module": imported.module}
    return None


@_rule(ImportedName, message="it imports `{name}` from `{module}`")
def _forbidden_attribute_import(imported: ImportedName, context: Context):
    """Importing by name an attribute of :data:`FORBIDDEN_ATTRIBUTES` (``from asyncio import
    create_subprocess_shell``)."""
    if imported.name in FORBIDDEN_ATTRIBUTES:
        return {"name": imported.name, "module": imported.module}
    return None


@_rule(Binding, message="it redefines `{name}`, which the notebook's set-up or tests use")
def _set_up_redefined(binding: Binding, context: Context):
    """Rebinding, in any way Python binds a name, a module, function or class that the
    instructor's cells import or define (``keras = ...``, ``import numpy as keras``,
    ``def accuracy``); importing the same module under the same name again is allowed."""
    return {"name": binding.name} if _redefines_set_up(binding, context) else None


@_rule(Binding, message="it redefines the built-in `{name}`")
def _builtin_redefined(binding: Binding, context: Context):
    """Defining a function or class, importing, or declaring ``global``, a name of a builtin
    (``def isinstance``); a plain variable such as ``max = 3`` is allowed."""
    if (binding.name in _BUILTIN_NAMES and not _redefines_set_up(binding, context)
            and any(isinstance(node, (*_DEFINITIONS, ast.Global)) for node in binding.nodes)):
        return {"name": binding.name}
    return None


@_rule(Reliance, message="`{function}` must not rely on {packages}, but this cell uses {names}")
def _relies_on_forbidden_package(reliance: Reliance, context: Context):
    """A function checked with ``check_written_here(f, forbid=("keras", ...))``: any use of
    those packages in its cell or in the student cells it relies on (:class:`Reliance`)."""
    uses = sorted(name for name in reliance.loaded
                  if context.packages.get(name, set()) & reliance.forbidden)
    if not uses:
        return None
    return {"function": reliance.function, "packages": " or ".join(sorted(reliance.forbidden)),
            "names": ", ".join(f"`{name}`" for name in uses)}


def _problems(subject, context: Context) -> list[str]:
    """The messages of every rule of :data:`RULES` that ``subject`` breaks, in table order."""
    return [problem for rule in RULES if (problem := rule.problem(subject, context)) is not None]


def _import_subjects(node: ast.AST) -> list[ImportedModule | ImportedName]:
    """What an import statement names: its modules, then (``from ... import``) its names."""
    if isinstance(node, ast.Import):
        return [ImportedModule(alias.name) for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        return [ImportedModule("(relative import)")]
    module = node.module or ""
    return [ImportedModule(module), *(ImportedName(module, alias.name) for alias in node.names)]


def _cell_problems(tree: ast.Module, context: Context) -> list[str]:
    """The rules of :data:`RULES` that one student cell breaks, in words, each once: every node
    of one walk of the cell (and what its imports name), then every name it binds globally."""
    context = replace(context, attribute_roots=frozenset(
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)))
    problems = []
    for node in ast.walk(tree):
        for subject in (node, *_import_subjects(node)):
            problems += _problems(subject, context)
    for name, nodes in _top_level_bindings(tree).items():
        problems += _problems(Binding(name, tuple(nodes)), context)
    return list(dict.fromkeys(problems))


def _split_cells(notebook, instructor_ids: Collection[str]
                 ) -> tuple[list[ast.Module], dict[int, ast.Module]]:
    """The parsed instructor's code cells, and ``{index: parsed cell}`` of the student's (cells
    that do not parse are left out: the kernel reports their syntax error)."""
    instructor_trees, student = [], {}
    for index, cell in enumerate(notebook["cells"]):
        if cell.get("cell_type") != "code" or (tree := _parse(_source(cell))) is None:
            continue
        metadata = _nbgrader(cell)
        if metadata.get("grade_id") in instructor_ids and not metadata.get("solution"):
            instructor_trees.append(tree)
        else:
            student[index] = tree
    return instructor_trees, student


def _context(instructor_trees: list[ast.Module], student_trees: list[ast.Module]) -> Context:
    """The :class:`Context` of a notebook's cells."""
    instructor_imports: dict[str, str] = {}
    for tree in instructor_trees:
        instructor_imports.update(_imports(tree))
    origins = dict(instructor_imports)
    for tree in student_trees:
        for name, module in _imports(tree).items():
            origins.setdefault(name, module)
    protected = {name for tree in instructor_trees
                 for name, nodes in _top_level_bindings(tree).items()
                 if any(isinstance(node, _DEFINITIONS) for node in nodes)}
    # every package a name is imported from in any cell: `import numpy as backend` in one cell
    # does not hide `import keras as backend` in another
    packages: dict[str, set[str]] = {}
    for tree in (*instructor_trees, *student_trees):
        for name, module in _import_bindings(tree):
            packages.setdefault(name, set()).add(module.split(".")[0])
    checked, may_use = _checked_functions(instructor_trees)
    return Context(origins=origins,
                   # a test may bind the name it checks (a placeholder)
                   protected=frozenset(protected - set(checked)), may_use=frozenset(may_use),
                   instructor_imports=instructor_imports, packages=packages, checked=checked)


def _relied_on(function: str, changes: dict[int, set[str]], loaded: dict[int, set[str]]
               ) -> list[int]:
    """The student cells ``function`` relies on: those that bind or change in place its name,
    then those that bind or change a global name that a cell already found reads, and so on.
    ``changes``/``loaded``: ``{index: names}`` a cell binds or changes, and reads."""
    to_visit = [index for index, changed in changes.items() if function in changed]
    seen: dict[int, None] = {}
    while to_visit:
        index = to_visit.pop()
        if index in seen:
            continue
        seen[index] = None
        to_visit += [other for other, changed in changes.items()
                     if other not in seen and loaded[index] & changed]
    return list(seen)


def _reliances(student: dict[int, ast.Module], context: Context
               ) -> Iterator[tuple[int, Reliance]]:
    """For every function checked with ``forbid=(...)``, in name order: each student cell it
    relies on, as ``(index, reliance)``."""
    checked = {function: forbidden for function, forbidden in context.checked.items()
               if forbidden}
    if not checked:
        return
    changes = {index: set(_top_level_bindings(tree)) | _changed_globals(tree, context.origins)
               for index, tree in student.items()}
    loaded = {index: _loaded_names(tree) for index, tree in student.items()}
    for function, forbidden in sorted(checked.items()):
        for index in _relied_on(function, changes, loaded):
            yield index, Reliance(function, frozenset(forbidden), frozenset(loaded[index]))


def find_violations(notebook, instructor_ids: Collection[str] | None = None
                    ) -> dict[int, list[str]]:
    """``{cell index: [problem, ...]}`` for every student code cell of ``notebook`` (a dict or
    ``NotebookNode`` in nbformat 4) that breaks a rule of the module docstring (:data:`RULES`);
    an empty dict for an acceptable submission.

    ``instructor_ids``: grade ids of the instructor's code cells (locked and test cells), whose
    source the grader restored; default :func:`instructor_cell_ids` of the notebook. Every other
    code cell, including cells a student added and cells whose metadata names an unknown grade
    id, is the student's."""
    if instructor_ids is None:
        instructor_ids = instructor_cell_ids(notebook)
    instructor_trees, student = _split_cells(notebook, instructor_ids)
    context = _context(instructor_trees, list(student.values()))
    problems: dict[int, list[str]] = {}
    for index, tree in student.items():
        if found := _cell_problems(tree, context):
            problems[index] = found
    # functions checked with forbid=(...): their cell and the cells that bind or change in place
    # the globals they read, and so on
    for index, reliance in _reliances(student, context):
        if found := _problems(reliance, context):
            problems.setdefault(index, []).extend(found)
    return problems
