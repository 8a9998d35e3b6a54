"""cnnbook: the helpers shared by the book, the assignments and the tests.

One module per concept:

* :mod:`cnnbook.sizing` -- output sizes, padding, receptive fields (chapter "Sizing a CNN").
* :mod:`cnnbook.accounting` -- parameters, activations, MACs and training memory per layer;
  its parts: :mod:`cnnbook.formulas` (the counting formulas, shared with the blocks),
  :mod:`cnnbook.layer_rules` (how each layer class is counted), :mod:`cnnbook.memory` (training
  memory).
* :mod:`cnnbook.models`, :mod:`cnnbook.layers`, :mod:`cnnbook.blocks` -- the networks and blocks;
  :mod:`cnnbook.normalization` -- their one batch-norm constructor.
* :mod:`cnnbook.survey` -- the survey of known ConvNets (formerly ``cnnbook.architectures``).
* :mod:`cnnbook.data`, :mod:`cnnbook.train` -- CIFAR-10 and the training recipes;
  :mod:`cnnbook.evaluation`, :mod:`cnnbook.metrics` (top-1 accuracy), :mod:`cnnbook.plotting`,
  :mod:`cnnbook.fused_norm` (fast batch-norm training).
* :mod:`cnnbook.keras_internals` -- every private Keras/TensorFlow API cnnbook uses.
* :mod:`cnnbook.unrolled` -- the unrolled view's path counts (no Keras);
  :mod:`cnnbook.lesion`, :mod:`cnnbook.experiments` -- the ResNet chapter's studies and runs.
* :mod:`cnnbook.grade`, :mod:`cnnbook.release` -- the instructor's grading and release tools.
* :mod:`cnnbook.sandbox`, :mod:`cnnbook.autograde`, :mod:`cnnbook.answers` -- sandboxed
  autograding: the bubblewrap sandbox, nbgrader's sandboxed steps and feedback without hidden
  tests, and the source analysis of answers outside the kernel (for the assignments the kernel
  still grades).
* :mod:`cnnbook.grading` -- verdicts decided outside the student's kernel: the judge, the student
  processes and the plain data between them.
* :mod:`cnnbook.pages` -- the book pages' glue and table helpers.

Importing the package only quietens TensorFlow's C++ logging (``TF_CPP_MIN_LOG_LEVEL``) before
TensorFlow is first imported; the modules import TensorFlow and Keras themselves.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
