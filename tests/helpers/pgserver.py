"""A real PostgreSQL server for the shared-state tests (Debian's `postgresql` package), started in a temporary
folder on 127.0.0.1 and a free port, trust authentication on loopback only, stopped by the fixture. As root it
runs as the `postgres` user. Each test gets a database of its own (`pg_url`)."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers.procs import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def unavailable() -> str | None:
    if pg_bin() is None:
        return "PostgreSQL is not installed (Debian package postgresql: scripts/install-test-tools.sh)"
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg is not installed (the postgres extra: scripts/setup.sh --test)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is missing (needed to run PostgreSQL as the postgres user)"
    return None


class PgServer:
    def __init__(self) -> None:
        bindir = pg_bin()
        assert bindir is not None
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="qwen-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._names = itertools.count(1)
        self.as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.db = ""  # pg_own's database

    def start(self) -> "PgServer":
        self.root.chmod(0o755)
        self.data.mkdir(mode=0o700)
        (self.root / "sock").mkdir(mode=0o700)
        if self.as_user:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.root / "sock", "postgres", "postgres")
        subprocess.run([*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        self.log = open(self.root / "server.log", "w")
        return self.resume()

    def resume(self) -> "PgServer":
        """Start the server on its data folder and port (again, after `halt`); returns once it accepts
        connections (at most 30 s)."""
        self.proc = subprocess.Popen(
            [*self.as_user, str(self.bindir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
             "-p", str(self.port), "-k", str(self.root / "sock"), "-c", "fsync=off", "-c", "max_connections=60"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + (self.root / "server.log").read_text()[-2000:])
            if subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not start within 30 s")
            time.sleep(0.1)

    def halt(self) -> None:
        """Stop the server as `pg_ctl stop -m fast` does (SIGINT to the postmaster: every session ends with
        AdminShutdown), keeping its data for `resume`. `halt` then `resume` is `pg_ctl restart`."""
        assert self.proc is not None
        pid = int((self.data / "postmaster.pid").read_text().split()[0])  # runuser does not pass SIGINT on
        os.kill(pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self.proc.wait(5)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.halt()  # the postmaster itself: runuser may exit first and leave it running
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    reason = unavailable()
    if reason and os.environ.get("CI") == "true":  # .ci/run installs both: there, missing is a failure
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    srv = PgServer()
    try:
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database on the session's server."""
    return pg_server.new_database()


@pytest.fixture
def pg_own():
    """A PostgreSQL server of the test's own, which the test may stop and restart (`halt`, `resume`), with
    one database (`.db`, its URL)."""
    reason = unavailable()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    srv = PgServer().start()
    try:
        srv.db = srv.new_database()
        yield srv
    finally:
        srv.stop()
