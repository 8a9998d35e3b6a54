"""cnnbook: the helpers shared by the book, the assignments and the tests.

One subpackage per part of the design, from the bottom up (``tests/test_architecture.py`` checks
that no layer imports one above it):

* :mod:`cnnbook.checks` (argument checks) and :mod:`cnnbook.keras_internals` (every private
  Keras/TensorFlow API cnnbook uses): used by everything.
* :mod:`cnnbook.course` -- what the assignments hand students: CIFAR-10 and its training split
  (:mod:`~cnnbook.course.data`), the image input and its normalisation
  (:mod:`~cnnbook.course.inputs`), the course's Keras layers (:mod:`~cnnbook.course.layers`). The
  only part a student's code can import while it is graded.
* :mod:`cnnbook.counting` -- the book's arithmetic: output sizes (:mod:`~cnnbook.counting.sizing`),
  parameters and MACs (:mod:`~cnnbook.counting.formulas`, :mod:`~cnnbook.counting.layer_rules`,
  :mod:`~cnnbook.counting.accounting`), training memory (:mod:`~cnnbook.counting.memory`),
  inference speed (:mod:`~cnnbook.counting.speed`).
* :mod:`cnnbook.nets` -- the networks: blocks, the CIFAR and classic models, batch norm, the
  survey of known ConvNets and its published figures.
* :mod:`cnnbook.training` -- training (:func:`~cnnbook.training.train.fit_cifar`), evaluation,
  top-1 accuracy, the fused batch norm, the plots of a run.
* :mod:`cnnbook.resnet` -- the ResNet chapter's studies: the unrolled view, lesion studies, the
  long experiments.
* :mod:`cnnbook.book` -- what the pages use to show results: glue and tables, model diagrams.
* :mod:`cnnbook.grading` -- everything that grades, apart from what students import: the judge,
  the student processes and the plain data between them, the sandbox, nbgrader's steps, the
  accuracy grader and its reference networks, the release of student versions, the in-kernel
  check of the test cells, and the source rules for an assignment graded by its kernel.

Importing the package only quietens TensorFlow's C++ logging (``TF_CPP_MIN_LOG_LEVEL``) before
TensorFlow is first imported; the modules import TensorFlow and Keras themselves.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
