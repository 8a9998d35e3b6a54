"""cnnbook: the helpers shared by the book, the assignments and the tests.

One module per concept:

* :mod:`cnnbook.sizing` -- output sizes, padding, receptive fields (chapter "Sizing a CNN").
* :mod:`cnnbook.accounting` -- parameters, activations, MACs and training memory per layer.
* :mod:`cnnbook.models`, :mod:`cnnbook.layers`, :mod:`cnnbook.blocks` -- the networks and blocks.
* :mod:`cnnbook.data`, :mod:`cnnbook.train` -- CIFAR-10 and the training recipes.
* :mod:`cnnbook.lesion`, :mod:`cnnbook.experiments` -- the ResNet chapter's studies and runs.
* :mod:`cnnbook.grade`, :mod:`cnnbook.release` -- the instructor's grading and release tools.
* :mod:`cnnbook.pages` -- the book pages' glue and table helpers.

Importing the package only quietens TensorFlow's C++ logging (``TF_CPP_MIN_LOG_LEVEL``) before
TensorFlow is first imported; the modules import TensorFlow and Keras themselves.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
