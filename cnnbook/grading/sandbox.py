"""The grading sandbox: student code runs under bubblewrap (``bwrap``), away from the course.

What a sandboxed command sees (:func:`sandboxed_command`):

* the system's programs and libraries (``/usr``, ``/lib*``, ``/bin``, a few files of ``/etc``) and
  the Python environment that runs the grader (its prefix, the base interpreter and the source
  folder of the editable ``cnnbook`` package), all **read-only**;
* **one writable folder** (the submission's own copy), bound at its real path, which is also the
  working directory;
* a private, empty ``/tmp`` (``HOME`` points there) and private ``/proc`` and ``/dev``;
* nothing else: no course root (``solutions/``, ``submitted/``, ``gradebook.db``), no other
  student, no network (``--unshare-all``: new user, PID, network, IPC, UTS and cgroup namespaces),
  a cleared environment (:data:`PASSED_ENVIRONMENT` only), and a kill of the whole sandbox when
  its parent dies (``--die-with-parent``).

New processes are refused by a seccomp filter for x86-64 and AArch64 (``fork``, ``vfork``,
``clone`` of a process; threads are allowed; another architecture's system calls are refused, and
:func:`require_sandbox` refuses to grade on a machine of another architecture): running as root,
``RLIMIT_NPROC`` does not apply, and cgroups are not writable on the grading machines this was
built on. Every capability is dropped, so nothing inside can unmount what a bind hides. Limits that
bubblewrap does not give are enforced from outside by :class:`Watchdog`: the resident memory of the
sandbox's processes (``RLIMIT_AS`` is not usable: TensorFlow reserves far more address space than
it uses) and, as a second line, their number; it polls ``/proc`` (through ``psutil``) and kills the
sandbox, whose PID namespace dies with it.

:func:`require_sandbox` raises :class:`SandboxUnavailable` with instructions where ``bwrap`` is
missing or cannot create namespaces. :func:`run_sandboxed` runs a command under both and returns
its outcome; ``nbgrader autograde`` uses the same pieces through
:mod:`cnnbook.grading.nbgrader_steps`.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cnnbook

__all__ = [
    "SandboxUnavailable",
    "PASSED_ENVIRONMENT",
    "bwrap_path",
    "require_sandbox",
    "python_environment_paths",
    "sandboxed_command",
    "TMP_BYTES",
    "folder_bytes",
    "Watchdog",
    "SandboxResult",
    "run_sandboxed",
]

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""System folders bound read-only (a merged-/usr symlink such as ``/bin -> usr/bin`` is
recreated as a symlink)."""

ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime",
               "nsswitch.conf", "passwd", "group", "hosts", "ssl", "ca-certificates", "fonts",
               "mime.types", "matplotlibrc", "python3", "os-release")
"""The entries of ``/etc`` a Python/TensorFlow kernel reads; ``/etc/shadow`` and the rest of the
machine's configuration stay out of the sandbox."""

TMP_BYTES = 512 * 2**20
"""Size of a sandbox's private ``/tmp`` (a tmpfs, held in memory the watchdog does not see)."""

PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TF_CPP_MIN_LOG_LEVEL",
                      "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                      "MPLBACKEND", "KERAS_BACKEND", "NBGRADER_EXECUTION", "PYTHONHASHSEED")
"""Variables copied from the grader's environment into the sandbox, plus every ``CNNBOOK_*``
variable (data folder, epochs); everything else (tokens, ``JPY_PARENT_PID``, ``PYTHONPATH``)
is dropped."""


AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
"""The architectures the fork filter knows (``uname -m`` -> the kernel's ``AUDIT_ARCH_*``)."""


def _no_fork_filter() -> bytes:
    """A seccomp BPF program (``struct sock_filter`` array) that refuses every new process on
    x86-64 and on AArch64: ``fork``/``vfork`` and ``clone`` without ``CLONE_THREAD`` fail with
    ``EPERM``, ``clone3`` with ``ENOSYS`` (the C library then falls back to ``clone``), x32 system
    calls with ``EPERM``; threads and everything else are allowed. A system call of any other
    architecture (the i386 compatibility calls of an x86-64 kernel included) fails with ``EPERM``:
    the filter fails closed."""
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    clone_thread = 0x00010000
    program = [                                   # jumps: (target - next instruction)
        (load, 0, 0, 4),                          # 0: A = arch
        (jeq, 2, 0, AUDIT_ARCH["x86_64"]),        # 1: x86-64 -> 4
        (jeq, 7, 0, AUDIT_ARCH["aarch64"]),       # 2: AArch64 -> 10
        (ret, 0, 0, eperm),                       # 3: any other architecture: refused
        (load, 0, 0, 0),                          # 4: x86-64: A = system call number
        (jge, 10, 0, 0x40000000),                 # 5: x32 ABI -> EPERM
        (jeq, 9, 0, 57),                          # 6: fork -> EPERM
        (jeq, 8, 0, 58),                          # 7: vfork -> EPERM
        (jeq, 8, 0, 435),                         # 8: clone3 -> ENOSYS
        (jeq, 3, 5, 56),                          # 9: clone -> 13, others -> allow
        (load, 0, 0, 0),                          # 10: AArch64: A = system call number
        (jeq, 5, 0, 435),                         # 11: clone3 -> ENOSYS
        (jeq, 0, 2, 220),                         # 12: clone -> 13, others -> allow
        (load, 0, 0, 16),                         # 13: A = low half of clone's flags
        (jset, 0, 1, clone_thread),               # 14: a thread -> allow, a process -> EPERM
        (ret, 0, 0, allow),                       # 15
        (ret, 0, 0, eperm),                       # 16
        (ret, 0, 0, enosys),                      # 17
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


@functools.lru_cache(maxsize=1)
def no_fork_filter_path() -> str:
    """A file holding :func:`_no_fork_filter`'s program, written once per grader process."""
    handle, path = tempfile.mkstemp(prefix="cnnbook-nofork-", suffix=".bpf")
    with os.fdopen(handle, "wb") as output:
        output.write(_no_fork_filter())
    return path


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create the namespaces the sandbox needs."""


def bwrap_path() -> str | None:
    """The ``bwrap`` executable on ``PATH`` (or ``/usr/bin/bwrap``), ``None`` when absent."""
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK)
                                     else None)


@functools.lru_cache(maxsize=1)
def _probe(bwrap: str) -> str:
    """Run ``true`` in a minimal sandbox; return ``""`` when it works, else bwrap's complaint."""
    command = sandboxed_command(["/bin/true"], writable_dir=Path("/tmp"), _bwrap=bwrap,
                                _python=False, allow_fork=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return "" if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def require_sandbox() -> str:
    """Return the path of a working ``bwrap``; raise :class:`SandboxUnavailable` saying what to
    do when there is none, it cannot create user, PID and network namespaces, or the machine's
    architecture has no fork filter (:data:`AUDIT_ARCH`)."""
    machine = platform.machine()
    if machine not in AUDIT_ARCH and machine != "arm64":
        raise SandboxUnavailable(
            f"the grading sandbox's fork filter knows {' and '.join(AUDIT_ARCH)} only, and this "
            f"machine is {machine}: grade on one of those (the filter would refuse every system "
            "call here). To grade without a sandbox anyway set c.GradingSandbox.enabled = False "
            "in nbgrader_config.py")
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable(
            "the grading sandbox needs bubblewrap (bwrap), which is not installed: run "
            "`apt-get install bubblewrap` (or `make system`, which installs system-packages.txt). "
            "To grade without a sandbox anyway (student code then runs with your rights, in the "
            "course folder) set c.GradingSandbox.enabled = False in nbgrader_config.py")
    problem = _probe(bwrap)
    if problem:
        raise SandboxUnavailable(
            f"bubblewrap ({bwrap}) cannot create the grading sandbox: {problem}. Unprivileged "
            "user namespaces must be allowed (sysctl kernel.unprivileged_userns_clone=1, or in a "
            "container run it with --security-opt seccomp=unconfined / as a privileged job). To "
            "grade without a sandbox anyway set c.GradingSandbox.enabled = False in "
            "nbgrader_config.py")
    return bwrap


def python_environment_paths() -> list[Path]:
    """Folders the grader's Python needs, to be bound read-only: ``sys.prefix`` (the venv),
    ``sys.base_prefix`` (the interpreter's standard library), the folder of the real interpreter
    and the source folder of ``cnnbook`` (an editable install points outside the venv). Folders
    already under a system folder are left out."""
    candidates = [Path(sys.prefix), Path(sys.base_prefix),
                  Path(os.path.realpath(sys.executable)).parent,
                  Path(cnnbook.__file__).resolve().parent]
    paths: list[Path] = []
    for path in candidates:
        resolved = path.resolve()
        if any(resolved == Path(system) or Path(system) in resolved.parents
               for system in SYSTEM_PATHS):
            continue
        # the unresolved path too: the venv's scripts and pyvenv.cfg name it
        for variant in dict.fromkeys([path.absolute(), resolved]):
            if variant not in paths:
                paths.append(variant)
    return paths


def _system_arguments() -> list[str]:
    arguments: list[str] = []
    for folder in SYSTEM_PATHS:
        if os.path.islink(folder):
            arguments += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            arguments += ["--ro-bind", folder, folder]
    for entry in ETC_ENTRIES:
        path = os.path.join("/etc", entry)
        if os.path.lexists(path):
            arguments += ["--ro-bind-try", path, path]
    return arguments


def _environment(extra: Mapping[str, str] | None) -> list[str]:
    variables = {key: value for key, value in os.environ.items()
                 if key in PASSED_ENVIRONMENT or key.startswith("CNNBOOK_")}
    variables.update({"HOME": "/tmp", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib",
                      "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"})
    variables.setdefault("PATH", "/usr/bin:/bin")
    variables["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), variables["PATH"]])
    variables.update(extra or {})
    arguments = ["--clearenv"]
    for key, value in sorted(variables.items()):
        arguments += ["--setenv", key, value]
    return arguments


def sandboxed_command(argv: Sequence[str], *, writable_dir: str | os.PathLike,
                      readonly_paths: Iterable[str | os.PathLike] = (),
                      socket_dir: str | os.PathLike | None = None,
                      environment: Mapping[str, str] | None = None, allow_fork: bool = False,
                      overlays: Sequence[str] = (), tmp_bytes: int = TMP_BYTES,
                      _bwrap: str | None = None, _python: bool = True) -> list[str]:
    """The command line that runs ``argv`` inside the grading sandbox (see the module docstring):
    system and Python environment read-only, ``writable_dir`` read-write and the working
    directory, each of ``readonly_paths`` (files or folders, e.g. the data set) read-only at its
    own path, ``socket_dir`` read-write for a kernel's connection file and ZMQ ``ipc`` sockets,
    private ``/tmp``, no network, a cleared environment plus ``environment``, and (unless
    ``allow_fork``) a seccomp filter that refuses new processes, so a fork bomb stops at its first
    ``fork`` (``RLIMIT_NPROC`` does not bind root, and no pids cgroup is writable here); threads
    work. The command then starts with ``sh -c`` to open the filter for bwrap's ``--seccomp``.
    The private ``/tmp`` holds at most ``tmp_bytes`` (a write past it fails with ``ENOSPC``).
    ``overlays`` are further bwrap mount arguments applied after every bind (``--tmpfs DIR`` to hide
    a folder, ``--ro-bind FILE DEST``): the grader hides packages from student processes with them.
    Every capability is dropped (``--cap-drop ALL`` when the grader runs as root): without it the
    sandboxed root keeps ``CAP_SYS_ADMIN`` in its user namespace and could unmount what an overlay
    hides.

    Every path must exist (``ValueError`` otherwise: a missing bind would make bwrap fail later
    with a less helpful message). Does not check that bwrap works: call :func:`require_sandbox`
    once before running what this returns.
    """
    argv = [str(argument) for argument in argv]
    if not argv:
        raise ValueError("argv must name the program to run in the sandbox, got an empty command")
    writable = Path(writable_dir).absolute()
    if not writable.is_dir():
        raise ValueError(f"writable_dir must be an existing folder, got {writable_dir!r}")
    readonly = [Path(path).absolute() for path in readonly_paths]
    missing = [str(path) for path in readonly if not path.exists()]
    if missing:
        raise ValueError(f"readonly_paths must exist; missing: {', '.join(missing)}")
    if socket_dir is not None and not Path(socket_dir).is_dir():
        raise ValueError(f"socket_dir must be an existing folder, got {socket_dir!r}")
    bwrap = _bwrap or bwrap_path() or "bwrap"
    command = [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
               # bwrap keeps a root caller's capabilities (inside the sandbox's user namespace)
               # unless told; run by another user it drops them itself
               *(["--cap-drop", "ALL"] if os.geteuid() == 0 else []),
               *_system_arguments(), "--proc", "/proc", "--dev", "/dev",
               "--size", str(int(tmp_bytes)), "--tmpfs", "/tmp"]
    if _python:
        for path in python_environment_paths():
            command += ["--ro-bind", str(path), str(path)]
    for path in readonly:
        command += ["--ro-bind", str(path), str(path)]
    command += ["--bind", str(writable), str(writable)]
    if socket_dir is not None:
        socket = Path(socket_dir).absolute()
        command += ["--bind", str(socket), str(socket)]
    command += [str(argument) for argument in overlays]
    command += ["--remount-ro", "/"]  # writes outside the bound folders fail, not vanish
    command += _environment(environment)
    if not allow_fork:
        command += ["--seccomp", "3"]
    command += ["--chdir", str(writable), "--", *argv]
    if not allow_fork:
        command = ["/bin/sh", "-c", 'exec "$@" 3< "$0"', no_fork_filter_path(), *command]
    return command


# --- Limits enforced from outside ---------------------------------------------------------------


def folder_bytes(folder: str | os.PathLike) -> int:
    """Bytes of the regular files under ``folder`` (links not followed, unreadable entries
    skipped)."""
    total = 0
    stack = [str(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                pass
    return total


class Watchdog:
    """Polls the process ``pid`` and its descendants every ``interval`` seconds and kills ``pid``
    (``SIGKILL``; under bwrap that ends the sandbox's whole PID namespace) when their summed
    resident memory exceeds ``max_memory_bytes``, their number exceeds ``max_processes``, their
    threads exceed ``max_threads``, or the files under ``folder`` (its writable folder, checked
    every second) exceed ``max_folder_bytes``. ``reason`` then says which limit was hit, in words
    a student can read; ``None`` otherwise.

    Use as a context manager around the wait for the process, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(self, pid: int, *, max_memory_bytes: int, max_processes: int = 256,
                 max_threads: int = 1024, folder: str | os.PathLike | None = None,
                 max_folder_bytes: int = 2**30, interval: float = 0.2):
        if (max_memory_bytes <= 0 or max_processes < 1 or max_threads < 1 or interval <= 0
                or max_folder_bytes <= 0):
            raise ValueError("max_memory_bytes, max_folder_bytes and interval must be > 0, "
                             "max_processes and max_threads >= 1; got "
                             f"{max_memory_bytes}, {max_folder_bytes}, {interval}, "
                             f"{max_processes}, {max_threads}")
        self.pid = pid
        self.max_memory_bytes = max_memory_bytes
        self.max_processes = max_processes
        self.max_threads = max_threads
        self.folder = folder
        self.max_folder_bytes = max_folder_bytes
        self.interval = interval
        self.reason: str | None = None
        self.memory_bytes = 0
        """The summed resident memory at the latest poll."""
        self.peak_memory_bytes = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"watchdog-{pid}", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _measure(self) -> tuple[int, int, int]:
        # psutil is not one of cnnbook's dependencies (Jupyter's kernel brings it): only a
        # running watchdog needs it, not the code that builds a sandboxed command
        import psutil

        root = psutil.Process(self.pid)
        processes = [root, *root.children(recursive=True)]
        memory = threads = 0
        for process in processes:
            try:
                memory += process.memory_info().rss
                threads += process.num_threads()
            except psutil.Error:  # exited between listing and reading
                pass
        return memory, len(processes), threads

    def _over_a_limit(self, memory: int, count: int, threads: int, tick: int) -> str | None:
        if memory > self.max_memory_bytes:
            return (f"it used more than the {self.max_memory_bytes / 2**30:.1f} GiB memory "
                    f"limit ({memory / 2**30:.1f} GiB)")
        if count > self.max_processes:
            return f"it started more than the limit of {self.max_processes} processes"
        if threads > self.max_threads:
            return f"it started more than the limit of {self.max_threads} threads"
        if self.folder is not None and tick % max(1, round(1 / self.interval)) == 0:
            size = folder_bytes(self.folder)
            if size > self.max_folder_bytes:
                return (f"it wrote more than the {self.max_folder_bytes / 2**20:g} MiB limit "
                        "into its folder")
        return None

    def _watch(self) -> None:
        import psutil  # only a running watchdog needs it (see _measure)

        tick = 0
        while not self._stopped.wait(self.interval):
            tick += 1
            try:
                memory, count, threads = self._measure()
            except psutil.Error:  # the process has ended
                return
            self.memory_bytes = memory
            self.peak_memory_bytes = max(self.peak_memory_bytes, memory)
            self.reason = self._over_a_limit(memory, count, threads, tick)
            if self.reason:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return


@dataclass
class SandboxResult:
    """What :func:`run_sandboxed` observed: the exit code (negative: killed by that signal), the
    captured output, and ``limit`` (why the grader stopped the command: time, memory, processes,
    or output size) or ``None``."""

    returncode: int
    stdout: str
    stderr: str
    limit: str | None
    seconds: float


def run_sandboxed(argv: Sequence[str], *, writable_dir: str | os.PathLike,
                  readonly_paths: Iterable[str | os.PathLike] = (), timeout: float = 600,
                  max_memory_bytes: int = 4 * 2**30, max_processes: int = 256,
                  max_threads: int = 1024, max_folder_bytes: int = 2**30,
                  tmp_bytes: int = TMP_BYTES, max_output_bytes: int = 1_000_000,
                  environment: Mapping[str, str] | None = None,
                  allow_fork: bool = False) -> SandboxResult:
    """Run ``argv`` under :func:`sandboxed_command` with a wall-clock ``timeout`` (seconds), the
    :class:`Watchdog`'s memory and process limits and at most ``max_output_bytes`` kept of each
    of stdout and stderr (the rest is read and dropped). Raises :class:`SandboxUnavailable` when
    the sandbox cannot run."""
    require_sandbox()
    command = sandboxed_command(argv, writable_dir=writable_dir, readonly_paths=readonly_paths,
                                environment=environment, allow_fork=allow_fork,
                                tmp_bytes=tmp_bytes)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    captured = {"stdout": bytearray(), "stderr": bytearray()}
    overflow = threading.Event()

    def drain(stream, name):
        for chunk in iter(lambda: stream.read(65536), b""):
            room = max_output_bytes - len(captured[name])
            if room > 0:
                captured[name] += chunk[:room]
            if len(chunk) > room:
                overflow.set()

    readers = [threading.Thread(target=drain, args=(process.stdout, "stdout"), daemon=True),
               threading.Thread(target=drain, args=(process.stderr, "stderr"), daemon=True)]
    for reader in readers:
        reader.start()
    limit = None
    with Watchdog(process.pid, max_memory_bytes=max_memory_bytes, max_processes=max_processes,
                  max_threads=max_threads, folder=writable_dir,
                  max_folder_bytes=max_folder_bytes) as watchdog:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            limit = f"it ran longer than the {timeout:g} s limit"
            process.kill()
            process.wait()
    for reader in readers:
        reader.join(timeout=5)
    limit = watchdog.reason or limit
    if limit is None and overflow.is_set():
        limit = f"it wrote more than {max_output_bytes:,} bytes of output (the rest was dropped)"
    return SandboxResult(process.returncode, captured["stdout"].decode(errors="replace"),
                         captured["stderr"].decode(errors="replace"), limit,
                         time.perf_counter() - start)
