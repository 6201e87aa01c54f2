"""A real PostgreSQL server for the shared-state tests (Debian's `postgresql` package), started in a temporary
folder on 127.0.0.1 and a free port, trust authentication on loopback only, stopped by the fixture. As root it
runs as the `postgres` user. Each test gets a database of its own (`pg_url`).

Faults caused for real: `halt`/`resume` (pg_ctl stop and start), `pause`/`unpause` (SIGSTOP and SIGCONT to the
postmaster and every backend: a hung database), and with `tmpfs_mb` the data folder on a tmpfs of the
server's own mount namespace (its WAL outside it), which `fill` fills to ENOSPC and `free` empties again."""

from __future__ import annotations

import atexit
import contextlib
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


_TMPFS = """set -e
mount -t tmpfs -o "size=$1,mode=0700" qwen-pg "$2"
cp -a "$3"/. "$2"/
chown postgres:postgres "$2"
shift 3
exec "$@"
"""


class PgServer:
    def __init__(self, tmpfs_mb: int | None = None, clock: dict[str, str] | None = None) -> None:
        bindir = pg_bin()
        assert bindir is not None
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="qwen-pg-", dir=None if tmpfs_mb else _memory()))
        self.data = self.root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._names = itertools.count(1)
        self.as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.db = ""  # pg_own's database
        self.tmpfs_mb = tmpfs_mb  # the data folder on a tmpfs of this size (a private mount namespace)
        self.stopped: list[int] = []  # the processes `pause` stopped
        self.clock = clock  # the server's environment for a realtime clock moved by a file (libfaketime)

    def start(self) -> "PgServer":
        self.root.chmod(0o755)
        self.data.mkdir(mode=0o700)
        (self.root / "sock").mkdir(mode=0o700)
        if self.as_user:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.root / "sock", "postgres", "postgres")
        if self.tmpfs_mb:  # made on disk, copied onto the tmpfs at start; the WAL stays on disk
            self.template, wal = self.root / "template", self.root / "wal"
            for folder in (self.template, wal):
                folder.mkdir(mode=0o700)
                shutil.chown(folder, "postgres", "postgres")
            subprocess.run([*self.as_user, *self.initdb(self.template), "-X", str(wal)], check=True,
                           capture_output=True, timeout=120)
        else:  # a copy of the process's one fresh cluster: initdb costs 1-2 s, a copy a tenth
            subprocess.run(["cp", "-a", f"{_cluster(self)}/.", str(self.data)], check=True, timeout=60)
        self.log = open(self.root / "server.log", "w")
        return self.resume()

    def initdb(self, data: Path) -> list[str]:
        return [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--no-sync"]

    def resume(self) -> "PgServer":
        """Start the server on its data folder and port (again, after `halt`); returns once it accepts
        connections (at most 30 s)."""
        prefix: list[str] = []
        if self.tmpfs_mb:
            assert self.proc is None, "a tmpfs server starts once (its data goes with its mount namespace)"
            prefix = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", _TMPFS, "sh",
                      f"{self.tmpfs_mb}m", str(self.data), str(self.template)]
        self.proc = subprocess.Popen(
            [*prefix, *self.as_user, str(self.bindir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
             "-p", str(self.port), "-k", str(self.root / "sock"), "-c", "fsync=off", "-c", "max_connections=60",
             "-c", "log_line_prefix=%m [%p] "],  # the backend pid tells connections apart (test_workcount)
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(self.clock or {})})
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
        self.unpause()
        pid = self.postmaster()  # runuser does not pass SIGINT on
        os.kill(pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self.proc.wait(5)

    @property
    def seen(self) -> Path:
        """The data folder as this process sees it (a tmpfs one: through the server's mount namespace)."""
        if self.tmpfs_mb and self.proc is not None:
            return Path(f"/proc/{self.proc.pid}/root{self.data}")
        return self.data

    def postmaster(self) -> int:
        return int((self.seen / "postmaster.pid").read_text().split()[0])

    def pause(self) -> None:
        """SIGSTOP the postmaster, then every process it started (its backends, checkpointer, …): a database
        that hangs — connections are accepted by the kernel, nothing answers. `unpause` (SIGCONT) ends it."""
        pid = self.postmaster()
        os.kill(pid, signal.SIGSTOP)
        self.stopped.append(pid)  # first: it forks nothing more from now on
        for child in _children(pid):
            os.kill(child, signal.SIGSTOP)
            self.stopped.append(child)

    def unpause(self) -> None:
        if self.stopped and self.proc is not None:
            self.stopped.insert(0, self.proc.pid)  # runuser stops itself when its child stops: resumed last
        while self.stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.stopped.pop(), signal.SIGCONT)

    def fill(self) -> None:
        """Fill the tmpfs data folder to ENOSPC (a file of zeros, `free` removes it)."""
        assert self.tmpfs_mb
        with open(self.seen / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left to fail at close
            try:
                for _ in range(1 << 14):  # bounded: 1 GiB at most
                    f.write(b"\0" * (1 << 16))
            except OSError as e:
                assert e.errno == 28, e  # ENOSPC
                return
        raise AssertionError("the tmpfs never filled")

    def free(self) -> None:
        (self.seen / "filler").unlink()

    def require_password(self, user: str, password: str) -> None:
        """A login role `user` whose connections from 127.0.0.1 must give `password` (scram-sha-256); every other
        user keeps trust."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{password}'")
            hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
            hba.write_text(f"host all {user} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY = FILE_COPY")  # no WAL of the copy: twice as fast
        return self.url(name)

    def stop(self) -> None:
        self.unpause()
        if self.proc is not None and self.proc.poll() is None:
            self.halt()  # the postmaster itself: runuser may exit first and leave it running
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


_CLUSTERS: dict[str, Path] = {}


def _memory() -> str | None:
    """/dev/shm when it has room for the servers' folders (a copy of a cluster there takes a tenth of one on
    this machine's disk), else the usual temporary folder."""
    with contextlib.suppress(OSError):
        if shutil.disk_usage("/dev/shm").free > 4 << 30:
            return "/dev/shm"
    return None


def _cluster(server: PgServer) -> Path:
    """A cluster made by initdb once in this process (then only copied), removed when the process exits."""
    if "made" not in _CLUSTERS:
        root = Path(tempfile.mkdtemp(prefix="qwen-pg-cluster-", dir=_memory()))
        root.chmod(0o755)
        made = root / "data"
        made.mkdir(mode=0o700)
        if server.as_user:
            shutil.chown(made, "postgres", "postgres")
        subprocess.run([*server.as_user, *server.initdb(made)], check=True, capture_output=True, timeout=120)
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _CLUSTERS["made"] = made
    return _CLUSTERS["made"]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:  # the field after the state: the parent
                    found.append(int(entry.name))
    return found


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


@pytest.fixture
def pg_clocked():
    """`pg_own` whose realtime clock (`clock_timestamp()`, `now()`) a test steps for real: the server runs under
    libfaketime, its offset read from `.clock_rc` (`step_clock`); the machine's clock stays as it is."""
    from helpers.clock import LIBFAKETIME, faked_clock

    reason = unavailable() or (None if LIBFAKETIME else "libfaketime not installed (Debian package faketime)")
    if reason and os.environ.get("CI") == "true":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    srv = PgServer()
    srv.clock_rc = rc = srv.root / "clock.rc"  # type: ignore[attr-defined]  (in the server's own folder: it reads it)
    rc.write_text("+0\n")
    rc.chmod(0o644)
    srv.clock = faked_clock(rc)
    srv.start()
    try:
        srv.db = srv.new_database()
        yield srv
    finally:
        srv.stop()


def _namespace_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a tmpfs in a private mount namespace)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not installed"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=20)
    return None if r.returncode == 0 else f"no private mount namespace here: {r.stderr.decode().strip()}"


@pytest.fixture
def pg_tmpfs():
    """`pg_own`, its data folder a 48 MiB tmpfs (`fill`, `free`). Its database has had one session already: a new
    database's first session writes a cache file, and a full disk would refuse the session itself."""
    reason = unavailable()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(reason)
    reason = reason or _namespace_problem()
    if reason:
        pytest.skip(reason)
    srv = PgServer(tmpfs_mb=48).start()
    try:
        import psycopg

        srv.db = srv.new_database()
        psycopg.connect(srv.db, connect_timeout=10).close()
        yield srv
    finally:
        srv.stop()
