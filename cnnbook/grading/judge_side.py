"""The judge: runs the instructor's test cells, hidden tests included, against the student's names.

The grader starts it as ``python -I -m cnnbook.grading.judge_side`` in the sandbox (no student
code ever runs in it) and, for each notebook (one judge serves a whole grading command), sends one
JSON line, ``{"setup": [...], "tests": [{"grade_id": ..., "source": ...}], "folder": ...}``: the
set-up cells the judge runs first (imports, settings, data), then the test cells and, where
``grade_id`` is None, the instructor's locked cells between them (a constant, the cell that loads
the submitted networks), in the notebook's order, in the folder where the grader copied the
submission's files. The judge answers ``{"ready": true}`` (or ``{"setup_failed": reason}``), then
runs each cell in one namespace and writes ``{"verdict": {"grade_id", "passed", "message",
"grader_failure"}}`` for each test.

A name a cell reads that the judge does not define, and an answer cell of the source defines, is
looked up in a student process: a function becomes a :class:`StudentFunction`, whose calls travel
as plain data; a value arrives decoded into built-in types (:mod:`cnnbook.grading.plain_data`).
A function that any test checks with ``check_written_here(f, forbid=("keras", "tensorflow"))``
is called in a student process where those packages cannot be imported at all; values are always
read where every package any test forbids is hidden. A student's block function called on the
judge's Keras input gets an input of the same shape in its process and sends back the layers it
added, which the judge joins to its own input (:class:`~cnnbook.grading.plain_data.KerasGraph`).
The judge writes a request as ``{"request": {...}}`` and reads the grader's relay of the student
process's reply (or ``{"failed": reason}`` when that process died, ran out of time or sent too
much); before it rebuilds a student's network (a returned model, a submitted ``.keras`` file) it
sends ``{"rebuilding": what}``, so that the grader blames the student if that kills it.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import gc
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence

from cnnbook.grading import written_here
from cnnbook.grading.plain_data import KerasGraph, MalformedAnswer, Refused, decode, encode

__all__ = ["StudentFunction", "StudentProcessFailed", "GraderProblem", "check_written_here",
           "declared_forbids", "function_forbid", "value_forbid", "preloaded_modes",
           "free_names", "Judge"]


class StudentProcessFailed(BaseException):  # noqa: N818 (a BaseException: tests' `except
    """The student process could not answer (it died, ran out of time, sent too much or sent
    something malformed). A ``BaseException`` so that no ``except Exception`` in a test swallows
    it: the test fails with this reason."""                       # Exception` must not catch it)


class GraderProblem(BaseException):  # noqa: N818
    """The test asks what the grader cannot do (an argument that is not plain data): the grader's
    failure, never the student's score."""


def declared_forbids(source: str) -> dict[str, set[str]]:
    """What a test cell forbids, per function: ``check_written_here(f, forbid=("keras",))``
    gives ``{"f": {"keras"}}``, and so does a loop ``for g in (f, h): check_written_here(g,
    forbid=...)`` for ``f`` and ``h`` (``may_use`` and calls without ``forbid`` add nothing)."""
    tree = ast.parse(source)
    loops: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.For) and isinstance(node.target, ast.Name)
                and isinstance(node.iter, (ast.Tuple, ast.List))):
            loops[node.target.id] = [item.id for item in node.iter.elts
                                     if isinstance(item, ast.Name)]
    declared: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_written_here":
            target = node.args[0] if node.args else None
            if not isinstance(target, ast.Name):
                continue
            for keyword in node.keywords:
                if keyword.arg == "forbid":
                    for name in loops.get(target.id, [target.id]):
                        declared.setdefault(name, set()).update(
                            ast.literal_eval(keyword.value))
    return declared


def function_forbid(name: str, declared: dict[str, set[str]]) -> tuple[str, ...]:
    """Where the student's function ``name`` is called: with the packages any test forbids it
    (``declared``, from :func:`declared_forbids` over every test cell) hidden. A function
    written without Keras for one test is written without it for every test; one that no test
    restricts runs where Keras is."""
    return tuple(sorted(declared.get(name, ())))


def value_forbid(declared: dict[str, set[str]]) -> tuple[str, ...]:
    """Where the student's values are read: with every package any test forbids hidden."""
    return tuple(sorted(set().union(*declared.values()))) if declared else ()


def preloaded_modes(test_sources: Sequence[str], declared: dict[str, set[str]],
                    student_functions: Iterable[str]) -> list[tuple[str, ...]]:
    """The student processes (by the packages each hides) to start before the judge asks: the
    one values are read in, one per function a test forbids packages to, and, for a function
    of the student's (``student_functions``: defined with ``def``) that a test reads without
    restricting it, the process that hides nothing. Each one the judge would otherwise start at
    its first request, after the others, so that a notebook's cells ran one process after
    another (and a statement past the time limit cost that limit once per process)."""
    read = {name for source in test_sources for name in free_names(source)}
    unrestricted = sorted(read.intersection(student_functions) - set(declared))
    modes = [value_forbid(declared), *(function_forbid(name, declared) for name in declared),
             *(function_forbid(name, declared) for name in unrestricted)]
    return list(dict.fromkeys(modes))


def free_names(source: str) -> list[str]:
    """Every name the cell reads (anywhere, in order of first appearance), builtins left out."""
    names: dict[str, None] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            names.setdefault(node.id)
    return [name for name in names if not hasattr(builtins, name)]


def _holds_a_model(data, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if isinstance(data, dict):
        return ("__keras_model__" in data or "__keras_graph__" in data
                or any(_holds_a_model(value, depth + 1) for value in data.values()))
    if isinstance(data, list):
        return any(_holds_a_model(value, depth + 1) for value in data)
    return False


class _Channel:
    def __init__(self, incoming, outgoing):
        self.incoming, self.outgoing = incoming, outgoing

    def send(self, message) -> None:
        self.outgoing.write(json.dumps(message).encode() + b"\n")
        self.outgoing.flush()

    def receive(self):
        line = self.incoming.readline()
        if not line:
            raise SystemExit("the grader closed the judge's channel")
        return json.loads(line)


class StudentFunction:
    """A function of the student's notebook, called in a student process: arguments go as plain
    data, the result comes back decoded, an exception comes back as the same built-in exception
    class (a student's own class as its nearest built-in base)."""

    def __init__(self, judge: Judge, name: str, forbid: tuple[str, ...]):
        self._judge, self.__name__, self._forbid = judge, name, forbid

    def __repr__(self):
        return f"<your function {self.__name__}>"

    def __call__(self, *args, **kwargs):
        arguments = [encode(argument) for argument in args]
        keywords = {key: encode(value) for key, value in kwargs.items()}
        for value in [*arguments, *keywords.values()]:
            if isinstance(value, dict) and "__refused__" in value:
                raise GraderProblem(f"the test passes {value['__refused__']} to "
                                    f"{self.__name__}, which the grader cannot send")
        reply = self._judge.ask({"op": "call", "name": self.__name__, "args": arguments,
                                 "kwargs": keywords}, self._forbid)
        if "value" in reply:
            result = self._judge.decoded(reply["value"], f"{self.__name__}'s result")
            if isinstance(result, Refused):
                raise StudentProcessFailed(f"{self.__name__} returned {result.reason}")
            if isinstance(result, KerasGraph):
                tensors = _keras_tensors([*args, *kwargs.values()])
                if not tensors:
                    raise StudentProcessFailed(f"{self.__name__} returned Keras layers without "
                                               "being given an input tensor")
                try:
                    return result.on(tensors if len(tensors) > 1 else tensors[0])
                except (ValueError, TypeError) as error:
                    raise StudentProcessFailed(f"{self.__name__}'s layers could not be joined to "
                                               f"the test's input: {error}") from None
            return result
        raised = reply.get("raised")
        if isinstance(raised, dict):
            builtin = getattr(builtins, str(raised.get("builtin")), None)
            message = str(raised.get("message", ""))[:500]
            kind = str(raised.get("type", ""))[:80]
            if isinstance(builtin, type) and issubclass(builtin, Exception):
                if kind != builtin.__name__:
                    message = f"{kind}: {message}"
                raise builtin(message or f"{self.__name__} raised {kind} (not written yet?)")
            raise StudentProcessFailed(f"{self.__name__} raised {kind}: {message}")
        raise StudentProcessFailed(f"calling {self.__name__}: {self._judge.failure(reply)}")


def _keras_tensors(values, depth: int = 0) -> list:
    """The Keras tensors among ``values``, in the order the student process makes its inputs
    (items in order, a dict's key before its value)."""
    keras = sys.modules.get("keras")
    found: list = []
    if keras is None or depth > 20:
        return found
    for value in values:
        if isinstance(value, keras.KerasTensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += _keras_tensors(value, depth + 1)
        elif isinstance(value, dict):
            found += _keras_tensors([item for pair in value.items() for item in pair], depth + 1)
    return found


def check_written_here(function, forbid=(), may_use=()):
    """The judge's version of the tests' check: the name must be a function of the student's
    notebook. That it uses no ``cnnbook`` reference code and none of ``forbid`` needs no check
    here: none of them can be imported where it runs."""
    if not isinstance(function, StudentFunction):
        raise AssertionError(f"{getattr(function, '__name__', function)!r} must be a function "
                             "written in your notebook")


class Judge:
    """One notebook's judge: the namespace of the test cells and the channel to the grader."""

    def __init__(self, channel: _Channel):
        self.channel = channel
        self.namespace: dict = {"__name__": "__judge__", "__builtins__": builtins}
        self.student_names: set[str] = set()
        self.value_forbid: tuple[str, ...] = ()
        self.declared: dict[str, set[str]] = {}
        """What the tests forbid each function (:func:`declared_forbids` over every test)."""
        self.answer_names: set[str] | None = None
        self.instructor_failures: list[str] = []
        self.instructor_grader_problem: str | None = None
        """Set when a locked cell of the instructor's asked what the grader cannot do: the tests
        that then fail go to manual grading."""
        self.instructor_names: list[str] = []
        """Names the instructor's cells read: bound for every test (a helper the instructor
        defined looks up the student's function when a test calls it)."""
        """The names the source notebook's answer cells define: the only ones looked up in a
        student process (None: every name the judge lacks)."""

    def failure(self, reply) -> str:
        if isinstance(reply, dict) and isinstance(reply.get("failed"), str):
            return reply["failed"][:500]
        return "the student process sent an answer the grader cannot read"

    def ask(self, request: dict, forbid: tuple[str, ...]) -> dict:
        self.channel.send({"request": {**request, "forbid": list(forbid)}})
        reply = self.channel.receive()
        if not isinstance(reply, dict):
            raise StudentProcessFailed("the student process sent an answer the grader cannot "
                                       "read")
        if "failed" in reply:
            raise StudentProcessFailed(self.failure(reply))
        return reply

    def decoded(self, data, what: str):
        if _holds_a_model(data):  # the grader blames the student if rebuilding it kills us
            self.channel.send({"rebuilding": what[:100]})
        try:
            return decode(data)
        except MalformedAnswer as error:
            raise StudentProcessFailed(f"{what} could not be read: {error}") from None
        except (ValueError, TypeError) as error:  # a model config Keras refuses
            raise StudentProcessFailed(f"{what} could not be rebuilt: {error}") from None

    def run_setup(self, cells: list[str]) -> None:
        # test cells import the check from cnnbook.grading.written_here: here it is the judge's
        written_here.check_written_here = check_written_here
        _guard_model_loading(self.channel)
        for source in cells:
            self.instructor_names += free_names(source)
            exec(compile(source, "<set-up cell>", "exec"), self.namespace)
        self.namespace["check_written_here"] = check_written_here

    def _bind_student_names(self, source: str) -> None:
        """Bind every name the cell (or a cell of the instructor's) reads that the judge lacks
        and the answer cells define: a function to a proxy called where what any test forbids
        it is hidden (:func:`function_forbid`); a value from the process where everything any
        test forbids is hidden (:attr:`value_forbid`), so that no value smuggles in what a
        function may not use (a table of Keras' answers). A name missing there but a function
        elsewhere is still a function; a value that exists only where Keras does is missing."""
        for name in self.student_names:
            self.namespace.pop(name, None)
        self.student_names.clear()
        # a helper of the instructor's (block_model) may call a student's function by name
        for name in dict.fromkeys([*free_names(source), *self.instructor_names]):
            if name in self.namespace or (self.answer_names is not None
                                          and name not in self.answer_names):
                continue
            forbid = function_forbid(name, self.declared)
            reply = self.ask({"op": "lookup", "name": name}, self.value_forbid)
            if reply.get("kind") == "missing" and forbid != self.value_forbid:
                elsewhere = self.ask({"op": "lookup", "name": name}, forbid)
                if elsewhere.get("kind") == "function":
                    reply = elsewhere
            kind = reply.get("kind")
            if kind == "function":
                self.namespace[name] = StudentFunction(self, name, forbid)
            elif kind == "value":
                self.namespace[name] = self.decoded(reply.get("value"), name)
            elif "raised" in reply:
                raise StudentProcessFailed(f"reading {name} raised "
                                           f"{str(reply['raised'].get('message'))[:300]}")
            else:
                continue  # missing: the test's NameError says so
            self.student_names.add(name)

    def run_instructor_cell(self, label: str, source: str) -> None:
        """Run a locked cell of the instructor's that comes after the first answer (it loads the
        submitted networks, or names the student's builders), with the student's names bound as
        for a test. Its failure is the submission's (a missing or broken model file, a builder
        that raises): the tests after it fail with a note that says so; a :class:`GraderProblem`
        there is the grader's, and the tests that then fail go to manual grading."""
        self.instructor_names += free_names(source)
        try:
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                self._bind_student_names(source)
                exec(compile(source, f"<cell {label}>", "exec"), self.namespace)
        except GraderProblem as problem:  # the grader's doing: later failures are not zeros
            self.instructor_grader_problem = (f"the notebook's locked cell {label}: "
                                              f"{problem}"[:500])
        except (Exception, StudentProcessFailed) as error:
            self.instructor_failures.append(f"the notebook's locked cell {label} failed: "
                                            f"{type(error).__name__}: {error}"[:500])

    def run_test(self, grade_id: str, source: str) -> dict:
        verdict = {"grade_id": grade_id, "passed": False, "message": "",
                   "grader_failure": False}
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                self._bind_student_names(source)
                exec(compile(source, f"<test {grade_id}>", "exec"), self.namespace)
            verdict["passed"] = True
        except StudentProcessFailed as failure:
            verdict["message"] = str(failure)
        except GraderProblem as problem:
            verdict.update(grader_failure=True, message=str(problem))
        except Exception as error:
            verdict["message"] = f"{type(error).__name__}: {error}"[:1000]
        if not verdict["passed"] and self.instructor_grader_problem:
            verdict.update(grader_failure=True, message=self.instructor_grader_problem)
        elif not verdict["passed"] and self.instructor_failures:
            verdict["message"] = (f"{verdict['message']} (earlier, "
                                  f"{'; '.join(self.instructor_failures)})")[:1500]
        return verdict


MAX_MODEL_FILE_BYTES = 200 * 2**20
"""Largest submitted ``.keras`` file the judge opens."""


def _guard_model_loading(channel: _Channel) -> None:
    """Make ``keras.models.load_model`` in the judge open only regular files of the submission
    (no link, nothing above :data:`MAX_MODEL_FILE_BYTES`) with ``safe_mode``, and tell the grader
    first that a file of the student's is being rebuilt (if that kills the judge, the student's
    tests fail, not the grader)."""
    # not at the top: the grader imports this module (verdicts) and must not pay for Keras; in
    # the judge, main() has imported it already, before the submission's folder was entered
    import keras

    original = getattr(keras.models.load_model, "__wrapped__", keras.models.load_model)

    def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002
        path = os.fspath(filepath)
        if os.path.islink(path) or not os.path.isfile(path):
            raise FileNotFoundError(f"the submission has no file {path!r}")
        if os.path.getsize(path) > MAX_MODEL_FILE_BYTES:
            raise ValueError(f"{path} is larger than {MAX_MODEL_FILE_BYTES // 2**20} MiB")
        channel.send({"rebuilding": f"the file {os.path.basename(path)[:80]}"})
        return original(path, custom_objects=custom_objects, compile=compile, safe_mode=True)

    load_model.__wrapped__ = original
    keras.models.load_model = keras.saving.load_model = load_model


def judge_one(channel: _Channel, job: dict) -> None:
    """Judge one notebook: set-up, then the instructor's later cells and the tests in the
    notebook's order (a ``tests`` entry whose ``grade_id`` is None is an instructor's cell), each
    verdict sent as it is reached. With ``folder`` (the copy of the submission's files the grader
    made in the judge's home), the notebook runs there."""
    judge = Judge(channel)
    home = os.getcwd()
    if job.get("answer_names") is not None:
        judge.answer_names = set(job["answer_names"])
    try:
        if job.get("folder"):
            os.chdir(job["folder"])
        judge.run_setup(job["setup"])
    except Exception as error:
        os.chdir(home)
        channel.send({"setup_failed": f"{type(error).__name__}: {error}"[:1000]})
        return
    channel.send({"ready": True})
    declared: dict[str, set[str]] = {}
    for test in job["tests"]:
        for name, packages in declared_forbids(test["source"]).items():
            declared.setdefault(name, set()).update(packages)
    judge.declared, judge.value_forbid = declared, value_forbid(declared)
    try:
        for number, test in enumerate(job["tests"]):
            if test.get("grade_id") is None:
                following = next((later["grade_id"] for later in job["tests"][number:]
                                  if later.get("grade_id")), None)
                judge.run_instructor_cell(f"before {following}" if following else "at the end",
                                          test["source"])
            else:
                channel.send({"verdict": judge.run_test(test["grade_id"], test["source"])})
            sys.stdout.seek(0)
            sys.stdout.truncate()
    finally:
        os.chdir(home)
    channel.send({"done": True})


def _forget() -> None:
    """What one notebook's judging left in this process: Keras' global state (layer name
    counters, the graph of every model built) and its objects."""
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.backend.clear_session()
    gc.collect()


def main() -> None:
    """Judge notebooks one after the other, as the grader sends them (one judge serves a whole
    ``nbgrader autograde`` command: its imports are paid once); each notebook gets a fresh
    namespace and Keras' global state cleared."""
    incoming = os.fdopen(os.dup(0), "rb")
    outgoing = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(devnull, descriptor)
    sys.stdout = sys.stderr = io.StringIO()
    channel = _Channel(incoming, outgoing)
    # read every configuration file now, before a submission's folder is the working directory
    # (the first import of Matplotlib reads a matplotlibrc found there)
    import keras  # noqa: F401
    import matplotlib  # noqa: F401 (as Keras: before any submission's folder is entered)

    while True:
        try:
            job = channel.receive()
        except SystemExit:  # the grader is done
            return
        judge_one(channel, job)
        _forget()


if __name__ == "__main__":
    main()
