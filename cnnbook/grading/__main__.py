"""``python -m cnnbook.grading accuracy ASSIGNMENT ...``: the accuracy grader's command line
(:func:`cnnbook.grading.accuracy.main`)."""

import sys

from cnnbook.grading.accuracy import main

sys.exit(main())
