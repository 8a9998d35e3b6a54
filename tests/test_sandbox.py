"""The grading sandbox (cnnbook.grading.sandbox): what a sandboxed command can and cannot reach,
and the
limits enforced from outside it. Each test runs a real command under the real bubblewrap and checks
the effect on the real file system, network and process table."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from cnnbook.grading import sandbox


def _python(code: str, folder, **limits) -> sandbox.SandboxResult:
    return sandbox.run_sandboxed([sys.executable, "-c", textwrap.dedent(code)],
                                 writable_dir=folder, **limits)


@pytest.fixture
def outside(tmp_path):
    """A folder that stands for the course root: a secret inside, never bound into the sandbox."""
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    (course / "solutions" / "secret.txt").write_text("hidden tests")
    (course / "gradebook.db").write_bytes(b"grades")
    work = tmp_path / "work"
    work.mkdir()
    return course, work


def test_sandboxed_code_writes_its_folder_but_cannot_see_or_touch_the_course(outside):
    course, work = outside
    result = _python(f"""
        import os, pathlib
        pathlib.Path("answer.txt").write_text("mine")
        print("course visible:", os.path.exists({str(course)!r}))
        print("shadow visible:", os.path.exists("/etc/shadow"))
        for target in ({str(course / 'gradebook.db')!r}, "/usr/x", {str(sys.prefix)!r} + "/x",
                       "/root/x", "/etc/x"):
            try:
                open(target, "w").write("gone")
                print("wrote", target)
            except OSError as error:
                print("refused", target, type(error).__name__)
        print("tmp:", sorted(os.listdir("/tmp")))
    """, work, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "course visible: False" in result.stdout and "shadow visible: False" in result.stdout
    assert "wrote" not in result.stdout, result.stdout
    assert (work / "answer.txt").read_text() == "mine"
    assert (course / "gradebook.db").read_bytes() == b"grades"
    assert (course / "solutions" / "secret.txt").read_text() == "hidden tests"


def test_sandboxed_code_has_no_capability_and_cannot_unmount_what_hides_files(tmp_path):
    """Without --cap-drop ALL a root grader's sandbox kept CAP_SYS_ADMIN in its namespace and
    could unmount the overlays that hide packages from student processes."""
    result = _python("""
        import ctypes
        status = open("/proc/self/status").read().splitlines()
        print([line for line in status if line.startswith("CapEff")])
        libc = ctypes.CDLL(None, use_errno=True)
        print("umount:", libc.umount2(b"/tmp", 2), ctypes.get_errno())
    """, tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "CapEff:\\t0000000000000000" in result.stdout, result.stdout
    assert "umount: -1 1" in result.stdout, result.stdout  # EPERM


def test_sandboxed_code_imports_the_installed_cnnbook_without_the_repository(repo_root, tmp_path):
    result = _python(f"""
        import os, cnnbook.counting.sizing
        print(cnnbook.counting.sizing.__file__)
        print(sorted(os.listdir({str(repo_root)!r})))
    """, tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(repo_root / "cnnbook" / "counting" / "sizing.py") in result.stdout
    visible = eval(result.stdout.splitlines()[-1])
    assert "solutions" not in visible and "exercises" not in visible and "tests" not in visible


def test_sandboxed_code_has_no_network_and_a_cleared_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "s3cret")
    monkeypatch.setenv("JPY_PARENT_PID", "1234")
    result = _python("""
        import os, socket
        print("token" , os.environ.get("GRADER_SECRET_TOKEN"), os.environ.get("JPY_PARENT_PID"))
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=5)
            print("connected")
        except OSError as error:
            print("network refused", type(error).__name__)
        print("interfaces", [name for _, name in socket.if_nameindex()])
    """, tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "token None None" in result.stdout
    assert "network refused" in result.stdout
    assert "interfaces ['lo']" in result.stdout


def test_memory_hog_is_killed_at_the_limit(tmp_path):
    result = _python("""
        import time
        blocks = [bytearray(64 * 2**20) for _ in range(40)]   # 2.5 GiB, written (resident)
        time.sleep(30)
    """, tmp_path, timeout=60, max_memory_bytes=2**30)
    assert result.returncode == -9
    assert "memory limit" in result.limit
    assert result.seconds < 30


def test_fork_bomb_stops_at_its_first_fork_and_threads_still_work(tmp_path):
    result = _python("""
        import os, subprocess, threading
        thread = threading.Thread(target=lambda: print("thread ran"))
        thread.start(); thread.join()
        try:
            subprocess.run(["true"])
            print("SPAWNED")
        except OSError as error:
            print("spawn refused:", error.strerror)
        while True:
            os.fork()
    """, tmp_path, timeout=60)
    assert "thread ran" in result.stdout and "SPAWNED" not in result.stdout
    assert "spawn refused: Operation not permitted" in result.stdout
    assert result.returncode == 1 and "PermissionError" in result.stderr
    assert result.limit is None


def _pids_running(argv: list[str]) -> list[int]:
    """The processes (host PIDs, from /proc) whose command line is exactly ``argv``."""
    wanted = "".join(f"{argument}\0" for argument in argv).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted:
                    pids.append(int(entry.name))
            except OSError:  # gone since the listing, or not ours to read
                continue
    return pids


def test_process_limit_kills_a_sandbox_allowed_to_fork(tmp_path):
    # the children sleep a duration no other process on the machine uses, so that only the
    # processes this test started are looked for (a plain "sleep 60" may be anyone's)
    child = ["sleep", f"60.{uuid.uuid4().int % 10**12:012d}"]
    result = _python(f"""
        import subprocess, time
        children = [subprocess.Popen({child!r}) for _ in range(40)]
        time.sleep(60)
    """, tmp_path, timeout=90, max_processes=16, allow_fork=True)
    assert result.returncode == -9
    assert "limit of 16 processes" in result.limit
    assert result.seconds < 60
    assert _pids_running(child) == [], "children outlived the sandbox"
    # and the look-up finds such a child when one runs (its command line may read empty for a
    # moment after Popen returns: the kernel sets it up after the exec that Popen waits for)
    control = subprocess.Popen(child)
    try:
        deadline = time.monotonic() + 10
        while not (found := _pids_running(child)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert found == [control.pid]
    finally:
        control.kill()
        control.wait()


def test_thread_limit_kills_a_thread_bomb(tmp_path):
    result = _python("""
        import threading, time
        for _ in range(400):
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        time.sleep(60)
    """, tmp_path, timeout=60, max_threads=100)
    assert result.limit is not None and "limit of 100 threads" in result.limit, result
    assert result.seconds < 30


def test_folder_limit_kills_a_disk_filler_and_tmp_is_bounded(tmp_path):
    result = _python("""
        import os
        try:
            with open("/tmp/big", "wb") as big:
                big.write(b"x" * 40 * 2**20)
        except OSError as error:
            print("tmp full:", error.strerror, flush=True)
        with open("filler", "wb") as filler:
            while True:
                filler.write(b"x" * 2**20)
                filler.flush()
    """, tmp_path, timeout=60, max_folder_bytes=20 * 2**20, tmp_bytes=8 * 2**20)
    assert "tmp full: No space left on device" in result.stdout, result
    assert result.limit is not None and "20 MiB limit into its folder" in result.limit, result


def test_runaway_loop_is_stopped_at_the_timeout(tmp_path):
    result = _python("while True: pass", tmp_path, timeout=2)
    assert result.returncode == -9 and "2 s limit" in result.limit


def test_sandboxed_command_rejects_missing_paths(tmp_path):
    with pytest.raises(ValueError, match="writable_dir"):
        sandbox.sandboxed_command(["true"], writable_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="readonly_paths"):
        sandbox.sandboxed_command(["true"], writable_dir=tmp_path,
                                  readonly_paths=[tmp_path / "missing.npz"])
    with pytest.raises(ValueError, match="argv"):
        sandbox.sandboxed_command([], writable_dir=tmp_path)


def test_missing_bubblewrap_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox.require_sandbox()


def test_autograde_stops_with_instructions_when_bwrap_is_missing(tmp_path, monkeypatch):
    """CheckSubmittedFiles, the first cnnbook step of `nbgrader autograde`: without a working
    bwrap it ends the command (SystemExit, which nbgrader does not catch per submission) with the
    instructions, and removes the half-made grading copy so that a later run grades it."""
    import nbformat
    from traitlets.config import Config

    from cnnbook.grading import nbgrader_steps as autograde

    copy = tmp_path / "autograded" / "ann" / "sizing"
    copy.mkdir(parents=True)
    (copy / "sizing.ipynb").write_text("{}")
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    step = autograde.CheckSubmittedFiles(config=config)
    resources = {"nbgrader": {"student": "ann", "assignment": "sizing", "notebook": "sizing"}}
    with pytest.raises(SystemExit, match="apt-get install bubblewrap"):
        step.preprocess(nbformat.v4.new_notebook(), resources)
    assert not copy.exists()
    config.GradingSandbox.enabled = False  # the explicit opt-out grades without the sandbox
    copy.mkdir(parents=True)
    autograde.CheckSubmittedFiles(config=config).preprocess(nbformat.v4.new_notebook(), resources)
    assert copy.exists()


def _run_filter(program: bytes, arch: int, number: int, first_argument: int = 0) -> int:
    """The seccomp filter's verdict for one system call, by running its classic BPF program the
    way the kernel does (the few instructions it uses) on a ``struct seccomp_data``."""
    data = struct.pack("<iIQ6Q", number, arch, 0, first_argument, 0, 0, 0, 0, 0)
    instructions = [struct.unpack("=HBBI", program[offset:offset + 8])
                    for offset in range(0, len(program), 8)]
    accumulator, pc = 0, 0
    while True:
        code, jump_true, jump_false, constant = instructions[pc]
        if code == 0x20:  # A = 32-bit word at offset
            accumulator = struct.unpack_from("<I", data, constant)[0]
            pc += 1
        elif code == 0x06:
            return constant
        else:
            taken = {0x15: accumulator == constant, 0x35: accumulator >= constant,
                     0x45: bool(accumulator & constant)}[code]
            pc += 1 + (jump_true if taken else jump_false)


ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026
X86_64, AARCH64, I386, RISCV64 = 0xC000003E, 0xC00000B7, 0x40000003, 0xC00000F3
CLONE_THREAD = 0x00010000


@pytest.mark.parametrize(("arch", "number", "argument", "verdict"), [
    (X86_64, 57, 0, EPERM),                     # fork
    (X86_64, 58, 0, EPERM),                     # vfork
    (X86_64, 56, 0x11, EPERM),                  # clone of a process (SIGCHLD)
    (X86_64, 56, 0x3D0F00 | CLONE_THREAD, ALLOW),  # clone of a thread (glibc's flags)
    (X86_64, 435, 0, ENOSYS),                   # clone3: the C library falls back to clone
    (X86_64, 0, 0, ALLOW),                      # read
    (X86_64, 0x40000000 | 57, 0, EPERM),        # x32 ABI
    (AARCH64, 220, 0x11, EPERM),                # clone of a process
    (AARCH64, 220, CLONE_THREAD, ALLOW),        # clone of a thread
    (AARCH64, 435, 0, ENOSYS),                  # clone3
    (AARCH64, 56, 0, ALLOW),                    # openat (x86-64's clone number): allowed
    (AARCH64, 57, 0, ALLOW),                    # close
    (I386, 2, 0, EPERM),                        # i386 fork through int 0x80 on x86-64
    (I386, 3, 0, EPERM),                        # every i386 call: fails closed
    (RISCV64, 220, 0x11, EPERM),                # an architecture the filter does not know
])
def test_fork_filter_on_each_architecture(arch, number, argument, verdict):
    assert _run_filter(sandbox._no_fork_filter(), arch, number, argument) == verdict


I386_FORK = """
    import ctypes, mmap, os
    code = bytes([0xB8, 0x02, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 2 (fork); int 0x80; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    fork32 = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    child = fork32()
    if child == 0:
        os._exit(0)
    print("i386 fork returned", child, flush=True)
"""


@pytest.mark.skipif(sandbox.platform.machine() != "x86_64", reason="an x86-64 machine code test")
def test_an_i386_fork_through_int_0x80_is_refused(tmp_path):
    """The previous filter allowed every system call of another architecture: on an x86-64
    kernel with 32-bit emulation, fork through ``int 0x80`` made a process."""
    outside = subprocess.run([sys.executable, "-c", textwrap.dedent(I386_FORK)],
                             capture_output=True, text=True, timeout=60)
    if outside.returncode != 0 or int(outside.stdout.split()[-1]) <= 0:
        pytest.skip("this kernel runs no i386 system calls (no 32-bit emulation): none to refuse")
    result = _python(I386_FORK, tmp_path, timeout=60)
    assert "i386 fork returned -1" in result.stdout, (result.stdout, result.stderr)


def test_sandbox_refuses_an_architecture_without_a_filter(monkeypatch):
    monkeypatch.setattr(sandbox.platform, "machine", lambda: "riscv64")
    with pytest.raises(sandbox.SandboxUnavailable, match="x86_64 and aarch64 only.*riscv64"):
        sandbox.require_sandbox()


def test_grading_kernels_read_a_training_only_copy_of_the_data(cifar_subset_dir, monkeypatch):
    """The kernels' CNNBOOK_DATA holds the training images only: the accuracy grader's test
    images are in no student's process."""
    import numpy as np

    from cnnbook.grading import nbgrader_steps as autograde

    monkeypatch.setenv("CNNBOOK_DATA", str(cifar_subset_dir))
    paths, environment = autograde.GradingSandbox().kernel_data()
    assert paths == [environment["CNNBOOK_DATA"]] and paths[0] != str(cifar_subset_dir)
    with np.load(f"{paths[0]}/training_only.npz") as arrays:
        assert len(arrays["x_test"]) == 0 and len(arrays["x_train"]) == 10_000
    assert autograde.GradingSandbox(hide_test_images=False).kernel_data() == (
        [str(cifar_subset_dir)], {})
