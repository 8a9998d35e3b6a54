"""What the assignments hand students: the data split, the image input and its normalisation, the
course's own Keras layers.

This is the only part of ``cnnbook`` (with ``cnnbook.checks``) that a student's code can import
while it is graded (:data:`cnnbook.grading.verdicts.STUDENT_MODULES`): nothing here computes an
answer a question asks for, and nothing here imports the rest of ``cnnbook``.
"""
