"""Every use of jupyter_client's, nbclient's and nbconvert's private APIs in the grader, in one
small module.

The sandboxed autograding of :mod:`cnnbook.grading.nbgrader_steps` needs three things that these
libraries do not offer publicly:

* to change how a kernel process is launched (its working folder, its file descriptors 1 and 2)
  and to watch it once it runs: jupyter_client's ``AsyncKernelManager`` only has the private
  ``_async_pre_start_kernel``, ``_async_post_start_kernel`` and ``_async_cleanup_resources``
  steps, its ``_launch_args`` and the provisioner's ``process``;
* to run a notebook cell by cell under its own deadlines: nbconvert's ``ExecutePreprocessor``
  runs every cell in one ``preprocess`` call, whose preamble (``NotebookClient.__init__``,
  ``_check_assign_resources``) :meth:`HookedExecute.start_notebook` repeats;
* to count display updates toward the output limit: nbclient's private ``_update_display_id``.

The grader uses the public hooks of :class:`HookedKernelManager` and :class:`HookedExecute` and
never a private name. Anything here may change with a release of these libraries:
``tests/test_jupyter_internals.py`` exercises each hook and fails when the installed versions
differ from :data:`CHECKED_VERSIONS`, so an upgrade starts by re-checking this file (like
:mod:`cnnbook.keras_internals` for Keras).
"""

from __future__ import annotations

import os
import subprocess

from jupyter_client.manager import AsyncKernelManager
from nbclient.client import NotebookClient
from nbgrader.preprocessors import Execute

__all__ = ["CHECKED_VERSIONS", "HookedKernelManager", "HookedExecute"]

CHECKED_VERSIONS = {"jupyter_client": "8.10.0", "nbclient": "0.11.0", "nbconvert": "7.17.2",
                    "nbgrader": "0.9.6"}
"""The releases this module was last checked against (requirements.txt pins them)."""


class HookedKernelManager(AsyncKernelManager):
    """jupyter_client's ``AsyncKernelManager`` with public hooks around a kernel's life:
    :meth:`before_launch` (before its connection file is written), :meth:`after_start` (its
    process runs), :meth:`after_cleanup` (its connection file and sockets are gone); and two
    questions about it: :meth:`launch_folder` and :meth:`kernel_process`. The kernel's own
    stdout and stderr go nowhere (:attr:`discard_kernel_output`)."""

    discard_kernel_output = True
    """Whether the kernel's file descriptors 1 and 2 go to ``/dev/null``: what a kernel writes
    there (a forged ``[AutogradeApp | ERROR]`` line) never reaches the grader's log."""

    def before_launch(self) -> None:
        """Called before the connection file is written: set ``transport``, ``ip`` and
        ``connection_file`` here."""

    def after_start(self) -> None:
        """Called once the kernel's process runs."""

    def after_cleanup(self, restart: bool) -> None:
        """Called after the connection file and sockets were cleaned up (``restart``: the kernel
        is about to start again); may be called twice for one kernel, so make it idempotent."""

    def launch_folder(self) -> str:
        """The working folder the kernel is launched in."""
        return self._launch_args.get("cwd") or os.getcwd()

    def kernel_process(self) -> subprocess.Popen | None:
        """The kernel's process (a ``Popen``), when a local provisioner started one."""
        return getattr(self.provisioner, "process", None)

    async def _async_pre_start_kernel(self, **kw):
        self.before_launch()
        command, kw = await super()._async_pre_start_kernel(**kw)
        if self.discard_kernel_output:
            kw["stdout"] = kw["stderr"] = subprocess.DEVNULL
        return command, kw

    async def _async_post_start_kernel(self, **kw):
        await super()._async_post_start_kernel(**kw)
        self.after_start()

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        self.after_cleanup(restart)

    # AsyncKernelManager binds its public name to the base class's coroutine function: route it
    # through the override above, so that every way of cleaning up calls after_cleanup (nbclient
    # calls it after a shutdown, and alone for a kernel that died)
    async def cleanup_resources(self, restart: bool = False) -> None:
        await self._async_cleanup_resources(restart=restart)


class HookedExecute(Execute):
    """nbgrader's ``Execute`` with the preamble of a notebook run as a public method
    (:meth:`start_notebook`, so that a subclass can run the cells itself) and a public filter of
    display updates (:meth:`accept_display_update`)."""

    def start_notebook(self, nb, resources, km=None) -> None:
        """What ``ExecutePreprocessor.preprocess`` does before it starts the kernel: bind the
        client to ``nb`` (and ``km``), reset its execution state, keep ``resources``."""
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)

    def accept_display_update(self, msg: dict) -> bool:
        """Whether an ``update_display_data`` message (or a display with a known id), which
        rewrites earlier outputs in place, is applied; the default applies every one."""
        return True

    def _update_display_id(self, display_id, msg):
        if not self.accept_display_update(msg):
            return None
        return super()._update_display_id(display_id, msg)
