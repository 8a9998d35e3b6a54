"""A private PostgreSQL server for tests and benchmarks (tests/test_parallel_grading.py,
benchmarks/grading.py): Debian's server binaries, a data folder and a Unix socket in a temporary
folder, no TCP port, trust authentication, stopped and deleted on exit. PostgreSQL refuses to run
as root: under root the server runs as the ``postgres`` user that Debian's package creates."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class PostgresMissing(RuntimeError):
    """Debian's ``postgresql`` package is not installed."""


def server_binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise PostgresMissing("PostgreSQL's server is not installed: run `sudo make system` "
                              "(system-packages.txt lists postgresql), then this again")
    return found[-1].parent


@contextlib.contextmanager
def private_postgres(database: str = "cnnbook") -> Iterator[str]:
    """Start a server with one empty ``database``; yield its SQLAlchemy URL
    (``postgresql://grader@/<database>?host=<socket folder>&port=5432``)."""
    binaries = server_binaries()
    folder = Path(tempfile.mkdtemp(prefix="cnnbook-postgres-", dir="/tmp"))
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*command):
        subprocess.run([*as_user, *map(str, command)], check=True, capture_output=True,
                       text=True, timeout=120)

    data = folder / "data"
    try:
        run(binaries / "initdb", "-D", data, "-A", "trust", "-U", "grader", "--no-sync")
        run(binaries / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-o",
            f"-k {folder} -c listen_addresses='' -p 5432 -F", "start")
        try:
            run(binaries / "createdb", "-h", folder, "-p", "5432", "-U", "grader", database)
            yield f"postgresql://grader@/{database}?host={folder}&port=5432"
        finally:
            run(binaries / "pg_ctl", "-D", data, "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
