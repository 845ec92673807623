"""A real PostgreSQL server in a temporary directory, for the tests and ``perpbft bench indexer``.

The server binaries come from Debian's ``postgresql`` package (``make test`` installs it; this
module installs nothing; without them :class:`PgUnavailable` says why). The server listens on
127.0.0.1 on a free port, with its socket and data in a fresh directory. PostgreSQL refuses to
run as root, so under root it runs as ``nobody`` (via ``setpriv``). Each user gets its own
database.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 60


class PgUnavailable(Exception):
    """No server can be started here (binaries or driver missing); the message says why."""


def server_bin() -> Path | None:
    """The newest installed server's bin directory."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PgUnavailable(
            "running as root and setpriv is missing: cannot start PostgreSQL as nobody"
        )
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]


class PgServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self._next = 0

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def new_database(self) -> str:
        import psycopg

        self._next += 1
        name = f"t{os.getpid()}_{self._next}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)


@contextmanager
def running_server() -> Iterator[PgServer]:
    bin_dir = server_bin()
    if bin_dir is None:
        raise PgUnavailable(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin); `make test` "
            "installs Debian's postgresql package"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PgUnavailable("psycopg is not installed (pip install -e '.[test]')") from None
    root = Path(tempfile.mkdtemp(prefix="perpbft-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "nobody", "nogroup")
    port = free_port()
    subprocess.run(
        _as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                         "--auth=trust", "--no-sync", "-E", "UTF8"]),
        check=True, capture_output=True,
    )  # fmt: skip
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
        "-c fsync=off -c full_page_writes=off"
    )
    subprocess.run(
        _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                         "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield PgServer(port)
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                             "-w", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while (data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
