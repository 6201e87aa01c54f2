"""Python programs forked by the session's fork servers (tests/helpers/forkserver.py) instead of started by Popen:
the same process, its imports already done. A gateway (`Gateway.start`: mitmdump/mitmweb with the addon) and the
anthropic SDK's driver (`run`) go through them.

`spawn` gives a `ForkedProcess`, which a test uses as the Popen it stands for (pid, poll, wait, send_signal,
terminate, kill, returncode). `reason_not_to_fork` says when a start must stay on Popen: the fork servers
turned off (QWEN_TEST_NO_FORKSERVER=1), or an environment that differs from the server's in a variable read
while importing or when an interpreter starts (the child would hold what the server read: PYTHONPATH, LANG...)."""

from __future__ import annotations

import json
import locale
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SERVER = Path(__file__).with_name("forkserver.py")
BIN = Path(sys.executable).parent
TOOLS = {str(BIN / "mitmdump"), str(BIN / "mitmweb")}
# What mitmdump's and mitmweb's console scripts import, then what addons/qwen.py imports when mitmproxy loads
# it. Nothing the gateway imports only at first need (tests/unit/test_addon_imports.py).
GATEWAY = ("mitmproxy.tools.main", "qwen_gateway.addon", "qwen_gateway.mitmweb.contentviews")
PACKET = 1 << 20
# Read by the interpreter or the C library when a process starts, before any Python code: a child inherits the
# server's. Compared by prefix.
AT_START = ("PYTHON", "LANG", "LC_", "LANGUAGE", "LD_", "MALLOC_", "GLIBC_TUNABLES", "OPENSSL_")
# What forkserver._refresh computes again in each child from the test's environment: variable -> the only files
# whose reads it redoes. A read of one of these by another file makes the variable one that must agree.
REFRESHED = {"HOME": ("/sysconfig.py",)}
REFRESHED_COPIES = ("/wsgiref/handlers.py",)
PROGRAMS: list[dict] = []  # every `run` of the session: the test, the program, forked or not (why)


class ForkedProcess:
    """A process forked by a fork server, seen as the subprocess.Popen that would have started it."""

    def __init__(self, args: list[str], conn: socket.socket, pid: int, pidfd: int) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None
        self._conn = conn  # the exit code arrives here: only the fork server can wait for its child
        self._pidfd = pidfd  # signals go to this process even once its pid is reused
        self._reading = threading.Lock()  # one reader of the exit code at a time, as Popen's waitpid lock

    def _collect(self, timeout: float | None) -> None:
        """The exit code, if it comes within `timeout`; one thread reads it, and closes the connection after."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._reading.acquire(timeout=-1 if timeout is None else timeout):
            return  # another thread is reading it (poll: as Popen.poll, it does not wait for that thread)
        try:
            if self.returncode is not None:
                return
            self._conn.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0))
            try:
                data = self._conn.recv(PACKET)
            except (TimeoutError, BlockingIOError):
                return
            if not data:
                raise RuntimeError(f"the fork server went away before its child {self.pid} ended")
            self.returncode = json.loads(data)["returncode"]
            self.close()
        finally:
            self._reading.release()

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
    """A fork server process of the session (`python` having imported `modules` from `folder`), its connection."""

    def __init__(self, python: str, folder: str, modules: tuple[str, ...], env: dict[str, str] | None = None) -> None:
        self.python, self.folder = python, folder
        self.workdir = Path(tempfile.mkdtemp(prefix="qwen-forkserver-"))
        self.socket = str(self.workdir / "socket")
        self.env = without_proxies(os.environ) if env is None else env
        with open(self.workdir / "server.log", "w") as log:
            self.proc = subprocess.Popen([python, str(SERVER), self.socket, folder, ",".join(modules)], env=self.env,
                                         cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        # The session's connection, at once: if this process dies, the server sees it close and stops
        self.session = self._connect(30)
        self.session.send(json.dumps({"op": "hello"}).encode())
        self._hello: dict | None = None

    @property
    def hello(self) -> dict:
        """What the server read of its environment while importing (waits for it to have imported)."""
        if self._hello is None:
            self.session.settimeout(120)
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
        return (self.workdir / "server.log").read_text()

    def must_agree(self) -> set[str]:
        """The variables a test's environment must give as the server has them for its process to be forked."""
        if any(not c.endswith(REFRESHED_COPIES) for c in self.hello["copies"]):
            return {"*"}  # something copied the whole environment at import: every variable counts
        user_site = {"HOME"} if self.hello["user_site"] else set()  # ~/.local/lib/... on sys.path at start
        return user_site | {k for k, read in self.hello["reads"].items()
                            if not all(by.endswith((*REFRESHED.get(k, ()), *REFRESHED_COPIES)) for by in read["by"])}

    def reason_not_to_fork(self, env: dict[str, str]) -> str | None:
        return reason_not_to_fork(env, self.env, self.must_agree())

    def spawn(self, cmd: list[str], env: dict[str, str], cwd: str, stdio: tuple[int, int, int],
              inside: int | None = None) -> ForkedProcess:
        """`cmd` (`python SCRIPT ARGS`; a console script is a script) forked with these stdin, stdout, stderr;
        `inside`: a process whose network and mount namespaces it joins, as `nsenter -t PID --net --mount` would."""
        assert self.hello  # the server has imported
        conn = self._connect(5)
        conn.settimeout(30)
        kinds = ["net", "mnt"] if inside is not None else []
        spaces = [os.open(f"/proc/{inside}/ns/{kind}", os.O_RDONLY) for kind in kinds]
        request = {"op": "spawn", "argv": cmd, "env": env, "cwd": cwd, "namespaces": kinds}
        try:
            socket.send_fds(conn, [json.dumps(request).encode()], [*stdio, *spaces])
        finally:
            for fd in spaces:
                os.close(fd)
        data, fds, _flags, _addr = socket.recv_fds(conn, PACKET, 1)
        answer = json.loads(data) if data else {"error": "no answer\n" + self.log()}
        if "error" in answer:
            conn.close()
            raise RuntimeError(f"the fork server did not start {cmd[1]}: {answer['error']}")
        return ForkedProcess(cmd, conn, answer["pid"], fds[0])

    def stop(self) -> None:
        self.session.close()  # the server stops what is still running, then itself
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def reason_not_to_fork(env: dict[str, str], server_env: dict[str, str], agree: set[str]) -> str | None:
    """Why a server in `server_env`, whose imports read the variables `agree`, cannot fork a process for `env`."""
    if "*" in agree:
        return "the fork server's imports copied the whole environment"
    differ = sorted(k for k in {*env, *server_env} if env.get(k) != server_env.get(k)
                    and (k in agree or k.startswith(AT_START)))
    return f"sets {', '.join(differ)}, read when a process starts" if differ else None


def without_proxies(env) -> dict[str, str]:
    """The machine's proxy never reaches a gateway (procs.Gateway drops it too)."""
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
    return {k: v for k, v in env.items() if k not in proxies}


_servers: dict[tuple, ForkServer] = {}


def server(python: str = sys.executable, folder: str = str(BIN), modules: tuple[str, ...] = GATEWAY,
           env: dict[str, str] | None = None) -> ForkServer | None:
    """The session's fork server of these, started at first need; None when turned off (QWEN_TEST_NO_FORKSERVER=1).
    By default the gateway's: this environment's Python, its console scripts' folder, mitmproxy and the addon,
    in this process's environment (`env`: another, such as the docs' shell's: tests/helpers/forkshim.py)."""
    if os.environ.get("QWEN_TEST_NO_FORKSERVER") == "1":
        return None
    key = (python, folder, modules, None if env is None else tuple(sorted(env.items())))
    if key not in _servers:
        _servers[key] = ForkServer(python, folder, modules, env)
    return _servers[key]


def stop() -> None:
    while _servers:
        _servers.popitem()[1].stop()


def fork_tool(cmd: list, env: dict[str, str], cwd: str, stdio: tuple[int, int, int], *, fork: bool = True,
              wrapper: str | None = None, inside: int | None = None) -> tuple[ForkedProcess | None, str | None]:
    """mitmdump or mitmweb (`cmd[0]`, by full path) forked by the gateway's fork server, or (None, why not) for the
    caller to start it its own way: `wrapper` (a command it runs under, such as a prefix or qwen-redirect),
    `fork=False` (a test that must read a process started afresh), no such server, or an environment it cannot
    give. `inside`: a process whose namespaces it joins (ForkServer.spawn)."""
    if wrapper is not None:
        return None, wrapper
    if not fork:
        return None, "fork=False"
    if str(cmd[0]) not in TOOLS:
        return None, f"{cmd[0]} is not mitmdump or mitmweb"
    forks = server()
    why = forks.reason_not_to_fork(env) if forks is not None else "QWEN_TEST_NO_FORKSERVER=1"
    if forks is None or why is not None:
        return None, why
    # the console script's shebang; stdin as the caller gives it
    return forks.spawn([sys.executable, *map(str, cmd)], env, cwd, stdio, inside=inside), None


def popen(cmd: list[str], *, env: dict[str, str], cwd: str, log: int) -> subprocess.Popen | ForkedProcess:
    """`subprocess.Popen(cmd, stdout=log, stderr=STDOUT, env=env, cwd=cwd)` for mitmdump or mitmweb (by their full
    path), forked by the gateway's fork server when it can (stdin: this process's, as Popen leaves it)."""
    proc, _why = fork_tool(cmd, env, cwd, (0, log, log))
    return proc or subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def run(cmd: list[str], *, modules: tuple[str, ...], env: dict[str, str], timeout: float,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=DEVNULL)` for
    `python SCRIPT ARGS`, forked by the fork server of that Python having imported `modules` (what the script
    imports first) from the script's folder, when it can."""
    python, script = cmd[0], os.path.abspath(cmd[1])
    forks = server(python, os.path.dirname(script), modules)
    why = forks.reason_not_to_fork(env) if forks is not None else "QWEN_TEST_NO_FORKSERVER=1"
    PROGRAMS.append({"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
                     "program": os.path.basename(script), "forked": why is None, "why_not": why})
    if forks is None or why is not None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        with open(os.devnull) as null:
            proc = forks.spawn(cmd, env, cwd or os.getcwd(), (null.fileno(), out_w, err_w))
    finally:
        os.close(out_w)
        os.close(err_w)
    try:
        out, err = _read(out_r, err_r, deadline)
        if out is None:
            proc.kill()
            proc.wait(10)
            raise subprocess.TimeoutExpired(cmd, timeout)
        returncode = proc.wait(max(deadline - time.monotonic(), 0.1))
    finally:
        os.close(out_r)
        os.close(err_r)
    return subprocess.CompletedProcess(cmd, returncode, _text(out), _text(err or b""))


def _read(out: int, err: int, deadline: float) -> tuple[bytes | None, bytes | None]:
    """Both pipes until both close; (None, None) if `deadline` passes first."""
    got = {out: b"", err: b""}
    with selectors.DefaultSelector() as sel:
        for fd in got:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            if time.monotonic() > deadline:
                return None, None
            for key, _ in sel.select(max(deadline - time.monotonic(), 0)):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    got[key.fd] += chunk
                else:
                    sel.unregister(key.fd)
    return got[out], got[err]


def _text(data: bytes) -> str:
    """As subprocess.run(text=True) decodes: the locale's encoding, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")
