"""Helpers of tests/test_hub.py: a real JupyterHub process (deploy/jupyterhub_config.py in demo
mode, started the way ``make hub`` starts it), its REST API, the single-user servers' contents,
kernel (REST + websocket), nbgrader assignment-list and formgrader APIs.

Every process of a run carries ``CNNBOOK_HUB_RUN=<run id>`` in its environment (the hub passes it
to the servers, the servers to their kernels), so that ``Hub.stop`` ends exactly the processes
this run started, even those the hub left behind when it failed.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
import websocket

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_demo_module():
    """deploy/demo_hub.py as a module (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("demo_hub", REPO_ROOT / "deploy" / "demo_hub.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports of 127.0.0.1 (all probed at once, so none repeats)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class HubError(AssertionError):
    """A step of the hub run failed; the message holds the reply and the hub log's tail."""


@dataclass
class Hub:
    state: Path
    ports: list[int] = field(default_factory=lambda: free_ports(4))
    environment: dict[str, str] = field(default_factory=dict)
    """More of the hub's environment (``CNNBOOK_EXCHANGE_KIND``, ...)."""
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    process: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        """The public port (the proxy's); the hub's API, the proxy's API and ngshare (when the
        hub runs it) take the other three."""
        return self.ports[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state / "jupyterhub.log"

    def log_tail(self, characters: int = 6000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-characters:]

    def start(self, timeout: float = 120) -> None:
        demo = load_demo_module()
        environment = demo.hub_environment(
            self.state, self.port,
            CNNBOOK_HUB_API_PORT=str(self.ports[1]), CNNBOOK_PROXY_API_PORT=str(self.ports[2]),
            CNNBOOK_HUB_ADMIN_TOKEN=self.admin_token, CNNBOOK_HUB_RUN=self.run_id,
            CNNBOOK_INSTRUCTORS="", CNNBOOK_STUDENTS="", TF_CPP_MIN_LOG_LEVEL="3",
            CNNBOOK_NGSHARE_PORT=str(self.ports[3]), **self.environment,
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                demo.hub_command(), cwd=self.state, env=environment, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubError(
                    f"JupyterHub exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(1)
        raise HubError(f"JupyterHub did not answer within {timeout} s:\n{self.log_tail()}")

    def request(self, method: str, path: str, token: str | None = None, expect=(200, 201, 202, 204),
                **kwargs) -> requests.Response:
        """``method`` on ``self.url + path`` with ``token`` (default: the admin service's);
        fails with the reply and the hub log when the status is not in ``expect``."""
        headers = {"Authorization": f"token {token or self.admin_token}"}
        reply = requests.request(method, self.url + path, headers=headers, timeout=600, **kwargs)
        if reply.status_code not in expect:
            raise HubError(f"{method} {path}: {reply.status_code} {reply.text[:2000]}\n"
                           f"hub log:\n{self.log_tail()}")
        return reply

    def create_users(self, names: list[str]) -> None:
        self.request("POST", "/hub/api/users", json={"usernames": names})

    def add_to_group(self, group: str, names: list[str]) -> None:
        self.request("POST", f"/hub/api/groups/{group}/users", json={"users": names})

    def user_token(self, name: str) -> str:
        reply = self.request("POST", f"/hub/api/users/{name}/tokens", json={"note": "hub test"})
        return reply.json()["token"]

    def spawn(self, name: str, profile: str = "cpu") -> None:
        self.request("POST", f"/hub/api/users/{name}/server", json={"profile": profile})

    def wait_ready(self, name: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.request("GET", f"/hub/api/users/{name}").json()["servers"].get("")
            if server and server["ready"]:
                return
            if not server or not server.get("pending"):
                raise HubError(f"the server of {name} stopped while starting:\n{self.log_tail()}")
            time.sleep(1)
        raise HubError(f"the server of {name} was not ready within {timeout} s:\n{self.log_tail()}")

    def processes(self) -> list[psutil.Process]:
        """The live processes of this run (hub, proxy, services, servers, kernels)."""
        found = []
        for process in psutil.process_iter():
            try:
                if process.environ().get("CNNBOOK_HUB_RUN") == self.run_id:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def stop(self, grace: float = 20, sweeps: int = 3) -> list[int]:
        """Stop the hub (which stops its servers), then end whatever of this run is left:
        SIGTERM, 5 s, SIGKILL, and a wait until the kernel has removed each one. A process can be
        started while its parent shuts down, so the search is repeated (``sweeps`` times at most)
        until it finds nothing. Returns the ids of the processes that had to be ended."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        ended = []
        for _ in range(sweeps):
            leftovers = self.processes()
            if not leftovers:
                break
            ended += [process.pid for process in leftovers]
            for process in leftovers:
                try:
                    process.terminate()
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(leftovers, timeout=5)
            for process in alive:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=5)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        return ended

    def describe(self, processes: list[psutil.Process]) -> list[str]:
        """``pid name (status): command line`` of each process, for a failure message."""
        described = []
        for process in processes:
            try:
                described.append(f"{process.pid} {process.name()} ({process.status()}): "
                                 f"{' '.join(process.cmdline())[:200]}")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                described.append(f"{process.pid} (gone while described)")
        return described


class ProcessWatch:
    """The names of the processes that ran under ``user``'s single-user server while the block
    ran (sampled every ``interval`` seconds): which programs grading started, e.g. ``bwrap``."""

    def __init__(self, hub: Hub, user: str, interval: float = 0.2):
        self.hub, self.user, self.interval = hub, user, interval
        self.names: set[str] = set()
        self._done = threading.Event()

    def _server(self) -> psutil.Process:
        for process in self.hub.processes():
            try:
                if (process.environ().get("JUPYTERHUB_USER") == self.user
                        and any("jupyterhub-singleuser" in part for part in process.cmdline())):
                    return process
            except psutil.Error:
                continue
        raise HubError(f"no single-user server process of {self.user}")

    def _sample(self, server: psutil.Process) -> None:
        while not self._done.is_set():
            try:
                for child in server.children(recursive=True):
                    try:
                        self.names.add(child.name())
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self._done.wait(self.interval)

    def __enter__(self) -> ProcessWatch:
        self._thread = threading.Thread(target=self._sample, args=(self._server(),), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join(10)


@dataclass
class UserServer:
    """One user's single-user server, reached through the hub's proxy with the user's token."""

    hub: Hub
    name: str
    token: str

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.hub.request(method, f"/user/{self.name}{path}", token=self.token, **kwargs)

    def nbgrader_result(self, method: str, path: str, **kwargs) -> dict:
        """An nbgrader API call; fails with nbgrader's log when it reports no success."""
        result = self.request(method, path, **kwargs).json()
        if isinstance(result, dict) and result.get("success") is False:
            raise HubError(f"{self.name}: {method} {path} failed:\n{result.get('error') or ''}"
                           f"{result.get('value') or ''}\n{result.get('log') or ''}")
        return result

    def read_notebook(self, path: str) -> dict:
        reply = self.request("GET", f"/api/contents/{path}", params={"content": "1"})
        return reply.json()["content"]

    def save_notebook(self, path: str, notebook: dict) -> None:
        self.request("PUT", f"/api/contents/{path}",
                     json={"type": "notebook", "format": "json", "content": notebook})

    def list_folder(self, path: str) -> list[dict]:
        return self.request("GET", f"/api/contents/{path}").json()["content"]

    def read_text(self, path: str) -> str:
        return self.request("GET", f"/api/contents/{path}",
                            params={"type": "file", "format": "text"}).json()["content"]

    def execute_notebook(self, notebook: dict, cell_timeout: float = 600) -> dict:
        """Run every code cell of ``notebook`` in a new kernel of this server (REST to start and
        shut it down, the websocket channels to execute), in order, as a student pressing
        Run All would; return the notebook with each cell's outputs. A failing cell does not
        stop the run (a student's partial notebook has failing tests)."""
        import nbformat

        kernel = self.request("POST", "/api/kernels", json={"name": "python3"}).json()
        url = (self.hub.url.replace("http://", "ws://")
               + f"/user/{self.name}/api/kernels/{kernel['id']}/channels")
        connection = websocket.create_connection(
            url, header=[f"Authorization: token {self.token}"], timeout=cell_timeout)
        session = uuid.uuid4().hex
        notebook = json.loads(json.dumps(notebook))
        try:
            count = 0
            for cell in notebook["cells"]:
                if cell["cell_type"] != "code":
                    continue
                source = cell["source"]
                source = source if isinstance(source, str) else "".join(source)
                message_id = uuid.uuid4().hex
                connection.send(json.dumps({
                    "header": {"msg_id": message_id, "msg_type": "execute_request",
                               "username": self.name, "session": session, "version": "5.3",
                               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": {"code": source, "silent": False, "store_history": True,
                                "user_expressions": {}, "allow_stdin": False,
                                "stop_on_error": False},
                }))
                outputs, idle, replied = [], False, False
                while not (idle and replied):
                    message = json.loads(connection.recv())
                    if message.get("parent_header", {}).get("msg_id") != message_id:
                        continue
                    kind = message["msg_type"]
                    if message["channel"] == "shell" and kind == "execute_reply":
                        replied = True
                        cell["execution_count"] = message["content"].get("execution_count")
                    elif kind == "status":
                        idle = message["content"]["execution_state"] == "idle"
                    elif kind in ("stream", "display_data", "execute_result", "error"):
                        outputs.append(nbformat.v4.output_from_msg(message))
                cell["outputs"] = outputs
                count += 1
        finally:
            connection.close()
            self.request("DELETE", f"/api/kernels/{kernel['id']}")
        return notebook


def cell_errors(notebook: dict) -> dict[str, str]:
    """The ``ename`` of the error each failing cell raised, by grade id (or cell id)."""
    errors = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                key = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or cell.get("id")
                errors[key] = output["ename"]
    return errors
