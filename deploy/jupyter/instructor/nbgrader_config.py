# An instructor's nbgrader settings on the course hub: the course is ~/cnnbook-course, a clone of
# the repository (or `make hub`'s copy of it), whose own nbgrader_config.py sets the course root,
# the source and release folders, the grading options and, from CNNBOOK_EXCHANGE_KIND, the
# exchange's collect (a command run in that folder reads the same file); the formgrader reads it
# from here. The folder is not named `cnnbook`: in the server's working folder that name would
# shadow the cnnbook package that nbgrader's grading imports.
import os

c = get_config()  # noqa: F821 (traitlets defines it when it loads this file)

course_config = os.path.join(os.path.expanduser("~"), "cnnbook-course", "nbgrader_config.py")
if os.path.exists(course_config):
    load_subconfig(course_config)  # noqa: F821 (traitlets defines it when it loads this file)
