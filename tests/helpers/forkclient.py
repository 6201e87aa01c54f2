"""Gateways forked by the session's fork server (tests/helpers/forkserver.py) instead of started by Popen: the
same mitmdump/mitmweb process, its ~1 s of imports already done. `spawn` gives a `ForkedProcess`, which a test
uses as the Popen it stands for (pid, poll, wait, send_signal, terminate, kill, returncode).

`reason_not_to_fork` says when a start must stay on Popen: another program or a prefix (namespaces, prlimit),
the fork server turned off (QWEN_TEST_NO_FORKSERVER=1), or an environment that differs from the server's in a
variable read while importing (the child would hold what the server read: PYTHONPATH, LANG, ...)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = Path(__file__).with_name("forkserver.py")
BIN = Path(sys.executable).parent
TOOLS = {str(BIN / "mitmdump"), str(BIN / "mitmweb")}
PACKET = 1 << 20
# Read by the interpreter or the C library when a process starts, before any Python code: a child inherits the
# server's. Compared by prefix.
AT_START = ("PYTHON", "LANG", "LC_", "LANGUAGE", "LD_", "MALLOC_", "GLIBC_TUNABLES", "OPENSSL_")
# What forkserver._refresh computes again in each child from the test's environment: variable -> the only files
# whose reads it redoes. A read of one of these by another file makes the variable one that must agree.
REFRESHED = {"HOME": ("/sysconfig.py",)}
REFRESHED_COPIES = ("/wsgiref/handlers.py",)


class ForkedProcess:
    """A gateway process forked by the fork server, seen as the subprocess.Popen that would have started it."""

    def __init__(self, args: list[str], conn: socket.socket, pid: int, pidfd: int) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None
        self._conn = conn  # the exit code arrives here: only the fork server can wait for its child
        self._pidfd = pidfd  # signals go to this process even once its pid is reused

    def _collect(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        self._conn.settimeout(timeout)
        try:
            data = self._conn.recv(PACKET)
        except (TimeoutError, BlockingIOError):
            return
        if not data:
            raise RuntimeError(f"the fork server went away before gateway {self.pid} ended")
        self.returncode = json.loads(data)["returncode"]
        self.close()

    def poll(self) -> int | None:
        self._collect(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._collect(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass  # ended meanwhile, as Popen.send_signal lets it

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        self._conn.close()

    def __del__(self) -> None:
        if getattr(self, "_pidfd", -1) >= 0:
            self.close()


class ForkServer:
    """The session's fork server process and its connection."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="qwen-forkserver-"))
        self.socket = str(self.folder / "socket")
        self.env = without_proxies(os.environ)
        with open(self.folder / "server.log", "w") as log:
            self.proc = subprocess.Popen([sys.executable, str(SERVER), self.socket], env=self.env, cwd=self.folder,
                                         stdout=log, stderr=subprocess.STDOUT)
        # The session's connection, at once: if this process dies, the server sees it close and stops
        self.session = self._connect(30)
        self.session.send(json.dumps({"op": "hello"}).encode())
        self._hello: dict | None = None

    @property
    def hello(self) -> dict:
        """What the server read of its environment while importing (waits for it to have imported)."""
        if self._hello is None:
            self.session.settimeout(60)
            self._hello = json.loads(self.session.recv(PACKET) or b'{"error": "no answer"}')
            if "error" in self._hello:
                raise RuntimeError("the fork server did not start:\n" + self.log())
        return self._hello

    def _connect(self, patience: float) -> socket.socket:
        deadline = time.monotonic() + patience
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                conn.connect(self.socket)
                return conn
            except (FileNotFoundError, ConnectionRefusedError):
                conn.close()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the fork server did not start:\n" + self.log()) from None
                time.sleep(0.02)

    def log(self) -> str:
        return (self.folder / "server.log").read_text()

    def must_agree(self) -> set[str]:
        """The variables a test's environment must give as the server has them for its gateway to be forked."""
        if any(not c.endswith(REFRESHED_COPIES) for c in self.hello["copies"]):
            return {"*"}  # something copied the whole environment at import: every variable counts
        return {k for k, read in self.hello["reads"].items()
                if not all(by.endswith((*REFRESHED.get(k, ()), *REFRESHED_COPIES)) for by in read["by"])}

    def reason_not_to_fork(self, cmd: list[str], env: dict[str, str]) -> str | None:
        if cmd[0] not in TOOLS:
            return f"runs {cmd[0]}, not this environment's mitmdump/mitmweb"
        agree = self.must_agree()
        if "*" in agree:
            return "the fork server's imports copied the whole environment"
        differ = sorted(k for k in {*env, *self.env} if env.get(k) != self.env.get(k)
                        and (k in agree or k.startswith(AT_START)))
        return f"sets {', '.join(differ)}, read when a process starts" if differ else None

    def spawn(self, cmd: list[str], env: dict[str, str], cwd: str, stdout) -> ForkedProcess:
        assert self.hello  # the server has imported
        conn = self._connect(5)
        conn.settimeout(30)
        request = {"op": "spawn", "argv": cmd, "env": env, "cwd": cwd}
        socket.send_fds(conn, [json.dumps(request).encode()], [stdout.fileno()])
        data, fds, _flags, _addr = socket.recv_fds(conn, PACKET, 1)
        answer = json.loads(data) if data else {"error": "no answer\n" + self.log()}
        if "error" in answer:
            conn.close()
            raise RuntimeError(f"the fork server did not start {cmd[0]}: {answer['error']}")
        return ForkedProcess(cmd, conn, answer["pid"], fds[0])

    def stop(self) -> None:
        self.session.close()  # the server stops what is still running, then itself
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


def without_proxies(env) -> dict[str, str]:
    """The machine's proxy never reaches a gateway (procs.Gateway drops it too)."""
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
    return {k: v for k, v in env.items() if k not in proxies}


_server: ForkServer | None = None


def server() -> ForkServer | None:
    """The session's fork server, started at first need; None when turned off (QWEN_TEST_NO_FORKSERVER=1)."""
    global _server
    if os.environ.get("QWEN_TEST_NO_FORKSERVER") == "1":
        return None
    if _server is None:
        _server = ForkServer()
        atexit.register(stop)
    return _server


def stop() -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None
