"""The known bypasses of ``check_written_here`` and the source rule that refuses each, shared by
the unit tests of the source analysis (``tests/test_answers.py``, which submits each in the
answer cell of ``sizing``) and the hostile corpus (``tests/hostile_corpus.py``, which expects the
same reason in the graded notebook of its kinds that take the same road). A plain module: no
tests here, and it imports no test module.

Each reason is a fragment of the message :mod:`cnnbook.grading.source_rules` gives the student;
the test asserts that the refused cell's problems contain it."""

from __future__ import annotations

from typing import NamedTuple


class Bypass(NamedTuple):
    """One way around ``check_written_here``, as an answer cell of ``sizing``."""

    source: str
    """The answer cell (it defines ``output_size`` or tries to)."""
    reason: str
    """A fragment of the message of the rule that refuses it."""


def relies_on(function: str, packages: str = "keras") -> str:
    """The reason given to a cell that ``function``, checked with ``forbid=(...)``, relies on
    while it uses ``packages``."""
    return f"`{function}` must not rely on {packages}"


SIGNATURE = "def output_size(input_size, kernel_size, stride=1, padding='valid'):\n"
"""The signature of the answer the bypasses rewrite (``sizing``'s ``output_size``)."""

MATH_FROM_SET_UP = (
    SIGNATURE + "    if padding == 'same':\n        return math.ceil(input_size / stride)\n"
    "    pad = 0 if padding == 'valid' else padding\n"
    "    return math.floor((input_size - kernel_size + 2 * pad) / stride) + 1\n")
"""An honest answer with ``math``, which the set-up imports; the bypasses that add a line to an
honest answer add it to this one."""

REFERENCE_CODE = "it uses `cnnbook` from cnnbook"

BYPASSES = {
    # the bypasses of check_written_here listed in issue 10, each with the rule that catches it
    "eval": Bypass(SIGNATURE + "    return eval('cnnbook.counting.sizing.conv_output_size')("
                   "input_size, kernel_size, stride, padding)\n", "it uses `eval`"),
    "__import__": Bypass(SIGNATURE
                         + "    module = __import__('cnnbook.counting.sizing', fromlist=['x'])\n"
                         "    return module.conv_output_size(input_size, kernel_size, stride, "
                         "padding)\n", "it uses `__import__`"),
    "functools.partial": Bypass("import functools\nreference = functools.partial("
                                "cnnbook.counting.sizing.conv_output_size)\n" + SIGNATURE
                                + "    return reference(input_size, kernel_size, stride, "
                                "padding)\n", REFERENCE_CODE),
    "default argument": Bypass("def output_size(input_size, kernel_size, stride=1, "
                               "padding='valid', rule=cnnbook.counting.sizing.conv_output_size):\n"
                               "    return rule(input_size, kernel_size, stride, padding)\n",
                               REFERENCE_CODE),
    "closure": Bypass("def make():\n    rule = cnnbook.counting.sizing.conv_output_size\n"
                      "    def output_size(input_size, kernel_size, stride=1, padding='valid'):\n"
                      "        return rule(input_size, kernel_size, stride, padding)\n"
                      "    return output_size\noutput_size = make()\n", REFERENCE_CODE),
    "table precomputed with cnnbook": Bypass(
        "TABLE = {(w, k, s): cnnbook.counting.sizing.conv_output_size(w, k, s) "
        "for w in range(1, 64) for k in range(1, 8) for s in (1, 2) if k <= w}\n" + SIGNATURE
        + "    return TABLE[input_size, kernel_size, stride]\n", REFERENCE_CODE),
    "table precomputed with Keras": Bypass(
        "TABLE = {(w, k, s): keras.layers.Conv2D(1, k, strides=s).compute_output_shape("
        "(1, w, w, 1))[1] for w in range(1, 64) for k in range(1, 8) for s in (1, 2) if k <= w}\n"
        + SIGNATURE + "    return TABLE[input_size, kernel_size, stride]\n",
        relies_on("output_size")),
    "check_written_here replaced": Bypass(
        "import cnnbook.grading.written_here\n"
        "cnnbook.grading.written_here.check_written_here = lambda *args, **kwargs: None\n"
        + SIGNATURE + "    return 0\n", "it imports `cnnbook.grading.written_here`"),
    "importlib": Bypass("import importlib\n"
                        "sizing = importlib.import_module('cnnbook.counting.sizing')\n"
                        + SIGNATURE
                        + "    return sizing.conv_output_size(input_size, kernel_size)\n",
                        "it imports `importlib`"),
    "sys.modules": Bypass("import sys\n" + SIGNATURE
                          + "    return sys.modules['cnnbook.counting.sizing']"
                          ".conv_output_size(input_size, kernel_size)\n", "it imports `sys`"),
    "dunder walk": Bypass(SIGNATURE + "    return output_size.__globals__['cnnbook'].sizing"
                          ".conv_output_size(input_size, kernel_size)\n",
                          "it reads the attribute `__globals__`"),
    "patched Keras": Bypass(MATH_FROM_SET_UP
                            + "keras.layers.Conv2D.compute_output_shape = lambda self, shape: "
                            "shape\n", "it changes `keras.layers.Conv2D.compute_output_shape`"),
    "set-up name rebound": Bypass(MATH_FROM_SET_UP + "import numpy as keras\n",
                                  "it redefines `keras`"),
    "IPython hook": Bypass(MATH_FROM_SET_UP
                           + "get_ipython().events.register('post_run_cell', print)\n",
                           "it uses `get_ipython`"),
    "magic": Bypass(MATH_FROM_SET_UP + "%run ../../../solutions/sizing/sizing.ipynb\n",
                    "it uses `get_ipython`"),
    "shell escape": Bypass(MATH_FROM_SET_UP + "!cp ../../../solutions/sizing/sizing.ipynb .\n",
                           "it uses `get_ipython`"),
    "builtin redefined": Bypass(MATH_FROM_SET_UP
                                + "def isinstance(value, kind):\n    return True\n",
                                "it redefines the built-in `isinstance`"),
    # code the analysis never sees: a module of one's own, another program
    "module shipped beside the notebook": Bypass(
        "import my_shape_rules\n" + SIGNATURE
        + "    return my_shape_rules.output_size(input_size, kernel_size, stride, padding)\n",
        "it imports `my_shape_rules`, which is not an installed module"),
    "module the notebook writes": Bypass(
        "with open('shape_rules_cnn.py', 'w') as file:\n"
        "    file.write('import keras\\ndef rule(w, k, s): ...\\n')\n"
        "from shape_rules_cnn import rule\n" + SIGNATURE
        + "    return rule(input_size, kernel_size, stride)\n",
        "it imports `shape_rules_cnn`, which is not an installed module"),
    "subprocess": Bypass("import subprocess\n" + SIGNATURE
                         + "    return int(subprocess.check_output(['python', '-c', "
                         "'import keras']))\n", "it imports `subprocess`"),
    "os.popen": Bypass("import os as system_tools\n" + SIGNATURE
                       + "    return int(system_tools.popen('python -c \"import keras\"')"
                       ".read())\n",
                       "it uses `system_tools.popen`, which starts another program"),
    "everything from os": Bypass("from os import *\n" + SIGNATURE
                                 + "    return int(popen('python rules.py').read())\n",
                                 "it imports everything from `os`"),
    "attrgetter": Bypass("import operator\n" + SIGNATURE
                         + "    walk = operator.attrgetter('__globals__')\n"
                         "    return walk(output_size)['cnnbook'].sizing.conv_output_size("
                         "input_size, kernel_size)\n",
                         "it uses `operator.attrgetter`, which reads attributes by name"),
    "methodcaller imported by name": Bypass(
        "from operator import methodcaller\n" + SIGNATURE
        + "    return methodcaller('conv_output_size', input_size, kernel_size)(rules)\n",
        "it imports `methodcaller` from `operator`, which reads attributes by name"),
    "operator as a value": Bypass("import operator\ntools = [operator][0]\n" + SIGNATURE
                                  + "    return tools.attrgetter('__globals__')(output_size)\n",
                                  "it uses the module `operator` (operator) as a value"),
    "the C operator module": Bypass("import _operator\n" + SIGNATURE
                                    + "    return _operator.methodcaller('x')(output_size)\n",
                                    "it uses `_operator.methodcaller`, which reads attributes "
                                    "by name"),
    "a name bound to two modules": Bypass("import operator as o\ndef unused():\n"
                                          "    import math as o\n" + SIGNATURE
                                          + "    return o.attrgetter('x')(output_size)\n",
                                          "it uses `o.attrgetter`, which reads attributes by "
                                          "name"),
    "os reached through another module": Bypass(
        "import shutil\n" + SIGNATURE + "    shutil.os.system('python rules.py')\n"
        "    return 0\n", "it uses `shutil.os.system`, which starts another program"),
    "imp.load_source": Bypass("import imp\nrules = imp.load_source('rules', 'rules.py')\n"
                              + SIGNATURE
                              + "    return rules.output_size(input_size, kernel_size)\n",
                              "it imports `imp`"),
    "site.addsitedir": Bypass("import site\nsite.addsitedir('.')\n" + SIGNATURE
                              + "    return 0\n", "it imports `site`"),
    "pickled reference function": Bypass(
        SIGNATURE + "    rule = numpy.load('rule.npy', allow_pickle=True).item()\n"
        "    return rule(input_size, kernel_size)\n", "it passes `allow_pickle=`"),
    "asyncio subprocess": Bypass("import asyncio\n" + SIGNATURE
                                 + "    asyncio.create_subprocess_shell('python rules.py')\n"
                                 "    return 0\n", "it uses `asyncio.create_subprocess_shell`"),
    "os.system imported by name": Bypass("from os import system, getcwd\n" + SIGNATURE
                                         + "    system('python rules.py')\n    return 0\n",
                                         "it imports `system` from `os`, which starts another "
                                         "program"),
}
"""Every known bypass -> its ``sizing`` answer cell and the reason it is refused; the hostile
corpus reads the reasons of the roads its kinds take (``BYPASSES["eval"].reason``)."""
