# An instructor's nbgrader settings on the course hub: the course is ~/cnnbook-course, a clone of
# the repository (or `make hub`'s copy of it), whose own nbgrader_config.py sets the course root,
# the source and release folders and the grading options; the formgrader reads it from here. The
# folder is not named `cnnbook`: in the server's working folder that name would shadow the
# cnnbook package that nbgrader's grading imports.
import os

c = get_config()  # noqa: F821 (traitlets defines it when it loads this file)

course_config = os.path.join(os.path.expanduser("~"), "cnnbook-course", "nbgrader_config.py")
if os.path.exists(course_config):
    load_subconfig(course_config)  # noqa: F821 (traitlets defines it when it loads this file)
    if os.environ.get("CNNBOOK_EXCHANGE_KIND") == "ngshare":
        # the course's own collect is the shared folder's (it observes arrival times there);
        # ngshare keeps each submission's arrival time itself, on the server, and its collect
        # writes that time into timestamp.txt
        from ngshare_exchange import configureExchange

        configureExchange(c, os.environ.get("CNNBOOK_NGSHARE_URL") or None)
