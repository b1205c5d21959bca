"""A PostgreSQL server of a test's own, on a spare loopback port, that the test may stop
and start again (a database restart) without touching the shared server on :5432.

The binaries come from /usr/lib/postgresql/<version>/bin (Debian's layout) or PATH. As
root they run as the ``postgres`` user (PostgreSQL refuses to run as root), on a data
folder under a temporary folder owned by that user. Trust authentication, loopback
only, the socket in the data folder. Where the binaries are missing the test is skipped
with the reason; with CI set it fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import unavailable

SERVER_USER = "postgres"
BINARIES = ("initdb", "pg_ctl", "postgres")


def postgresql_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres (the newest version), or None."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if all((folder / name).exists() for name in BINARIES):
            return folder
    found = shutil.which("pg_ctl")
    if found and all(shutil.which(name) for name in BINARIES):
        return Path(found).parent
    return None


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgInstance:
    """One server: ``start()`` and ``stop()`` as often as the test wants, same port and
    data; ``url`` for its ``postgres`` database as user ``postgres``."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.logfile = root / "server.log"
        self.port = port
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        done = subprocess.run(
            [*self._as_user, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(argv[0]).name} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
                f"\n{self.log_tail()}"
            )

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off "
            "-c max_connections=200 -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60",
            "-D", str(self.data), "-l", str(self.logfile), "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session at once (what a restart does to clients);
        ``immediate`` is a crash, recovered from at the next start."""
        self._run(str(self.bindir / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data))

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _owned_by_server_user(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(SERVER_USER)
    os.chown(folder, user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def pg_instance() -> Iterator[PgInstance]:
    """A fresh server, started; stopped and removed afterwards. Skips (fails under CI)
    without the binaries, or as root without a ``postgres`` user."""
    bindir = postgresql_bin()
    if bindir is None:
        unavailable("a PostgreSQL installation (initdb, pg_ctl, postgres)", "binaries not found")
        raise AssertionError("unreachable")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            unavailable("a PostgreSQL server of the test's own", "no 'postgres' user to run it")
    # not under pytest's tmp_path: its folders are private to root
    root = Path(tempfile.mkdtemp(prefix="mcoflow-pg-"))
    os.chmod(root, 0o755)
    _owned_by_server_user(root)
    instance = PgInstance(bindir, root, spare_port())
    try:
        instance.init()
        instance.start()
        yield instance
    finally:
        if instance.running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                instance.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def wait_accepting(url: str, timeout: float = 30.0) -> None:
    """Until the server at ``url`` takes connections."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
