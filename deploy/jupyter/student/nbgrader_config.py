# A student's nbgrader settings on the course hub. nbgrader names a submitter by the Unix user of
# the server's process, but on this hub every server runs as one user (the image's jovyan, or the
# demo hub's own user): submissions and feedback are named by the hub's user name instead, which
# JupyterHub gives every server as JUPYTERHUB_USER.
import os

c = get_config()  # noqa: F821 (traitlets defines it when it loads this file)

if os.environ.get("JUPYTERHUB_USER"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
