"""cnnbook.grading.jupyter_internals: every private jupyter_client, nbclient and nbconvert API the
grader uses still behaves as the grader assumes. Checked with the versions of ``CHECKED_VERSIONS``:
after an upgrade, run this file first; the version test fails until the module has been
re-checked. Each hook runs a real (unsandboxed) kernel here; tests/test_sandbox.py and the hostile
corpus run the sandboxed ones."""

from __future__ import annotations

import os
from importlib.metadata import version

import nbformat
import pytest
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_code_cell, new_notebook

from cnnbook.grading import jupyter_internals
from cnnbook.grading.jupyter_internals import HookedExecute, HookedKernelManager


def test_installed_versions_are_the_ones_the_internals_were_checked_on():
    installed = {name: version(name.replace("_", "-")) for name in
                 ("jupyter_client", "nbclient", "nbconvert", "nbgrader")}
    assert installed == jupyter_internals.CHECKED_VERSIONS == {
        "jupyter_client": "8.10.0", "nbclient": "0.11.0", "nbconvert": "7.17.2",
        "nbgrader": "0.9.6",
    }, "re-check cnnbook/grading/jupyter_internals.py against these versions, then update it"


class RecordingKernelManager(HookedKernelManager):
    """Records each hook's call and what the kernel manager answers at that point."""

    calls: list = []

    def before_launch(self) -> None:
        type(self).calls.append(("before_launch", os.path.exists(self.connection_file or "")))

    def after_start(self) -> None:
        process = self.kernel_process()
        type(self).calls.append(("after_start", process.pid if process else None,
                                 process.poll() if process else "no process",
                                 self.launch_folder()))

    def after_cleanup(self, restart: bool) -> None:
        type(self).calls.append(("after_cleanup", restart))


class FilteringExecute(HookedExecute):
    """Applies no display update; records the ones it was asked about."""

    asked: list = []

    def accept_display_update(self, msg: dict) -> bool:
        type(self).asked.append(msg["content"]["data"]["text/plain"])
        return False


DISPLAY_THEN_UPDATE = (
    "from IPython.display import display\n"
    "handle = display('first', display_id=True)\n"
    "handle.update('second')\n"
    "print('to the notebook')"
)


def test_hooks_run_around_a_real_kernel_and_updates_can_be_refused(tmp_path):
    RecordingKernelManager.calls, FilteringExecute.asked = [], []
    notebook = new_notebook(cells=[new_code_cell(DISPLAY_THEN_UPDATE)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    client = FilteringExecute(kernel_manager_class=RecordingKernelManager, timeout=120)
    client.start_notebook(notebook, {"metadata": {"path": str(tmp_path)}})
    assert client.nb is notebook and client.resources["metadata"]["path"] == str(tmp_path)
    with client.setup_kernel(cwd=str(tmp_path)):
        client.preprocess_cell(notebook.cells[0], client.resources, 0)
        kernel_process = client.km.kernel_process()
        assert kernel_process is not None and kernel_process.poll() is None
        # the kernel's own stdout and stderr go nowhere (discard_kernel_output)
        for descriptor in (1, 2):
            assert os.readlink(f"/proc/{kernel_process.pid}/fd/{descriptor}") == "/dev/null"
    calls = RecordingKernelManager.calls
    assert calls[0] == ("before_launch", False)  # before the connection file is written
    _, pid, running, folder = calls[1]
    assert calls[1][0] == "after_start" and pid == kernel_process.pid and running is None
    assert folder == str(tmp_path)
    # after the shutdown, and again from nbclient's own clean-up
    assert calls[2:] and set(calls[2:]) == {("after_cleanup", False)}
    # each display with an id was offered to the filter, which refused the update: the first
    # display stays as it was
    assert FilteringExecute.asked == ["'first'", "'second'"]  # a display with an id asks too
    outputs = notebook.cells[0].outputs
    shown = [output["data"]["text/plain"] for output in outputs
             if output["output_type"] == "display_data"]
    assert shown == ["'first'"]
    streams = "".join(output.get("text", "") for output in outputs
                      if output["output_type"] == "stream")
    assert "to the notebook" in streams
    nbformat.validate(notebook)


def test_cleanup_hook_runs_for_a_kernel_that_died(tmp_path):
    """A kernel that ends itself is not shut down: only nbclient's clean-up reaches the manager,
    through ``cleanup_resources``, which must still call ``after_cleanup``."""
    RecordingKernelManager.calls = []
    notebook = new_notebook(cells=[new_code_cell("import os\nos._exit(3)")])
    client = HookedExecute(kernel_manager_class=RecordingKernelManager, timeout=120)
    client.start_notebook(notebook, {"metadata": {"path": str(tmp_path)}})
    with pytest.raises(DeadKernelError):
        with client.setup_kernel(cwd=str(tmp_path)):
            client.preprocess_cell(notebook.cells[0], client.resources, 0)
    assert [call[0] for call in RecordingKernelManager.calls][:2] == [
        "before_launch", "after_start"]
    assert ("after_cleanup", False) in RecordingKernelManager.calls
