"""Grading that student code cannot touch (solutions/README.md, "How grading works").

Three kinds of process take part in grading one notebook:

* the **grader** (``nbgrader autograde`` and :mod:`cnnbook.grading.verdicts`): starts the other
  two in the bubblewrap sandbox, relays their messages, and writes each test cell's outcome into
  the graded notebook;
* a **student process** (:mod:`cnnbook.grading.student_side`, a plain ``python -I``, no IPython):
  runs the student's cells, then answers the judge's calls of the student's functions with
  plain data (numbers, strings, tuples, lists, dicts, NumPy arrays, a Keras model's config and
  weights, the layers a block added to an input); ``cnnbook``'s reference code is hidden from it,
  and so are Keras and TensorFlow when a test forbids them;
* the **judge** (:mod:`cnnbook.grading.judge_side`): runs the instructor's test cells, hidden tests
  included, against proxies of the student's names, computes the expected values itself and
  decides each verdict. No student code ever runs in it, and no hidden test ever enters a
  student process.

:mod:`cnnbook.grading.plain_data` is the one encoding both sides share.
"""
