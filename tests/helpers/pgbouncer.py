"""Debian's PgBouncer in front of a test's PostgreSQL (tests/helpers/pgserver.py), in transaction pooling mode —
the mode that serves many clients on few server connections, and the one that breaks what needs a session
(LISTEN, session-level advisory locks, server-side prepared statements). On 127.0.0.1 and a free port, trust
authentication, in a folder of its own; as root it runs as the `postgres` user (PgBouncer refuses root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from helpers.netns import stop
from helpers.procs import free_port

BINARY = "/usr/sbin/pgbouncer"


def unavailable() -> str | None:
    if not Path(BINARY).exists() and shutil.which("pgbouncer") is None:
        return "PgBouncer is not installed (Debian package pgbouncer: scripts/install-test-tools.sh)"
    return None


class PgBouncer:
    def __init__(self, server_port: int, *, pool_size: int = 20, max_clients: int = 400,
                 pool_mode: str = "transaction") -> None:
        self.server_port = server_port
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="qwen-pgbouncer-"))
        self.pool_size, self.max_clients = pool_size, max_clients
        self.pool_mode = pool_mode  # "session": the mistake a gateway names at start
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.proc: subprocess.Popen | None = None

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def start(self, ini: str | None = None, userlist: str | None = None, ready_url: str | None = None) -> "PgBouncer":
        """`ini` and `userlist`: a configuration of the test's own (docs/deploy.md's, its host, port and paths
        the test's), in `root`; ready once `ready_url` takes a connection. Else trust, every database."""
        (self.root / "users.txt").write_text(userlist if userlist is not None else '"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(ini if ini is not None else
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.root}/users.txt\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\nmax_client_conn = {self.max_clients}\n"
            f"logfile = {self.root}/pgbouncer.log\npidfile = {self.root}/pgbouncer.pid\n"
            "ignore_startup_parameters = extra_float_digits,statement_timeout\n")
        self.root.chmod(0o755)
        if self.as_user:
            for path in (self.root, *self.root.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        self.proc = subprocess.Popen([*self.as_user, BINARY, str(self.root / "pgbouncer.ini")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        import psycopg

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()[-2000:]}")
            try:
                with psycopg.connect(ready_url or self.url("postgres"), connect_timeout=2, prepare_threshold=None):
                    return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not start: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)
