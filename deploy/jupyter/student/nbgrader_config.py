# A student's nbgrader settings on the course hub. nbgrader names a submitter by the Unix user of
# the server's process, but on this hub every server runs as one user (the image's jovyan, or the
# demo hub's own user): with the shared-folder exchange, submissions and feedback are named by the
# hub's user name instead, which JupyterHub gives every server as JUPYTERHUB_USER. ngshare names
# the submitter itself, from the hub token of the request (and refuses an explicit id).
import os

c = get_config()  # noqa: F821 (traitlets defines it when it loads this file)

if os.environ.get("JUPYTERHUB_USER") and os.environ.get("CNNBOOK_EXCHANGE_KIND") != "ngshare":
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
