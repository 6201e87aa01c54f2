"""Real processes for end-to-end tests: the Qwen emulator and mitmdump/mitmweb running addons/qwen.py."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from helpers import forkclient, testca

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADDON = ROOT / "addons" / "qwen.py"
PORTFILE_ADDON = ROOT / "tests" / "helpers" / "portfile.py"
CONNLOG_ADDON = ROOT / "tests" / "helpers" / "connlog.py"  # an addon of another's: see its docstring
# Every gateway this session started: the test, the tool, the seconds until it listened (tests/conftest.py sums them
# up at the end; QWEN_TEST_STARTS=<file> writes them out as JSON).
STARTS: list[dict] = []


def _wait_for_file(path: Path, proc: subprocess.Popen | forkclient.ForkedProcess, what: str, timeout: float = 30) -> str:
    """The file's text once the process wrote it; a process that has not by `timeout` is stopped, then raised over:
    nobody holds it to stop it later (seen: gateways slowed past 30 s left running after their test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return path.read_text()
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        time.sleep(0.01)
    _stop(proc)
    raise RuntimeError(f"{what} did not start within {timeout}s")


def _stop(proc: subprocess.Popen | forkclient.ForkedProcess, sig: int = signal.SIGTERM) -> bool:
    """SIGTERM (or `sig`), then SIGKILL after 10 s; whether it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return True
    return False


class Emulator:
    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def admin(self, method: str, path: str, body: dict | None = None):
        r = self.http.request(method, f"/_emulator/{path}", json=body)
        r.raise_for_status()
        return r.json() if r.content else None

    def reset(self) -> None:
        self.admin("POST", "reset")

    def switches(self, **values) -> None:
        self.admin("POST", "switches", values)

    def fault(self, kind: str, **kw) -> None:
        self.admin("POST", "fault", {"kind": kind, **kw})

    def requests(self) -> list[dict]:
        return self.admin("GET", "requests")

    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests() if r["path"].endswith("/chat/completions")]

    def client_requests(self) -> list[dict]:
        """What clients' requests sent upstream: every request but the gateway's own reads of a key's model list
        (GET …/models, made in the background when the gateway starts and when /v1/models is listed)."""
        return [r for r in self.requests() if not (r["method"] == "GET" and r["path"].split("?")[0].endswith("/models"))]

    def stop(self) -> None:
        _stop(self.proc)

    def stats(self) -> dict:
        return self.admin("GET", "stats")

    def seed_token(self, token: str | None = None, *, refresh_token: str | None = None, expires_in: int = 3600,
                   kind: str = "oauth") -> str:
        token = token or f"tok-{secrets.token_hex(12)}"
        body = {"access_token": token, "expires_in": expires_in, "kind": kind}
        if refresh_token:
            body["refresh_token"] = refresh_token
        self.admin("POST", "tokens", body)
        return token



def write_creds(qwen_dir: Path, *, access_token: str, refresh_token: str = "rt-unused",
                resource_url: str | None, expires_in: float = 3600, name: str | None = None) -> Path:
    """A credential file exactly as qwen-code writes it (indent 2, no trailing newline, 0600)."""
    qwen_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    creds = {"access_token": access_token, "refresh_token": refresh_token, "token_type": "Bearer"}
    if resource_url is not None:
        creds["resource_url"] = resource_url
    creds["expiry_date"] = int((time.time() + expires_in) * 1000)
    path = qwen_dir / (f"oauth_creds_{name}.json" if name else "oauth_creds.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(creds, indent=2))
    return path



class Gateway:
    """A real mitmdump/mitmweb process running addons/qwen.py."""

    def __init__(self, workdir: Path, *, mode: str = "reverse:https://portal.qwen.ai", tool: str = "mitmdump",
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None, listen: str = "127.0.0.1",
                 prefix: tuple[str, ...] = (), connlog: bool = False, fork: bool = True, port: int = 0,
                 before: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.before = before  # scripts loaded ahead of the gateway: their hooks run before its own
        # False: started by Popen even when the fork server could fork it (a test that reads the process's memory)
        self.fork = fork
        self.prefix = prefix  # what runs mitmdump (and then execs it: the pid stays mitmdump's), e.g. a namespace or prlimit
        self.listen = listen
        self.listen_port = port  # 0: a free one, read from the port file once it runs
        self.mode = mode
        self.tool = tool
        self.args = args
        self.env = env or {}
        self.portfile = workdir / "ports.json"
        self.connlog = workdir / "connections.log" if connlog else None  # the server connections, when asked for
        self.logfile = workdir / f"{tool}.log"
        self.proc: subprocess.Popen | forkclient.ForkedProcess | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> "Gateway":
        return self.launch().ready()

    def launch(self) -> "Gateway":
        """The process started, not waited for (`ready`): gateways launched together start side by side."""
        self._began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.portfile.unlink(missing_ok=True)
        if not self.prefix:  # (under a prefix it may run as another user, who could not read this process's copy)
            testca.seed_mitmproxy_confdir(self.workdir / "conf")
        env = self.environment()
        cmd = [*self.prefix, str(BIN / self.tool), "--set", f"confdir={self.workdir / 'conf'}", "--mode",
               f"{self.mode}@{self.listen}:{self.listen_port}", "-s", str(PORTFILE_ADDON),
               *(a for script in self.before for a in ("-s", script)), "-s", str(ADDON),
               *(("-s", str(CONNLOG_ADDON)) if self.connlog is not None else ()), *self.args]
        if self.tool == "mitmweb":
            cmd += ["--set", "web_open_browser=false"]
        with open(self.logfile, "w") as log:  # stdin: this process's, as Popen leaves it
            forked, why = forkclient.fork_tool(cmd, env, str(self.workdir), (0, log.fileno(), log.fileno()),
                                               fork=self.fork, wrapper="a prefix" if self.prefix else None)
            self.proc = forked or subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                   cwd=str(self.workdir))
        self._why_not_forked = why
        return self

    def environment(self) -> dict[str, str]:
        """The process's environment: this one's, the machine's proxy taken out, the test's `env` over it. A test
        that names no state folder (QWEN_GATEWAY_HOME, or a HOME of its own) gets one in the gateway's workdir:
        never the machine's ~/.qwen-gateway."""
        env = {**os.environ, "QWEN_TEST_PORTFILE": str(self.portfile)}
        if self.connlog is not None:
            env["QWEN_TEST_CONNLOG"] = str(self.connlog)
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.pop(k, None)  # the machine's proxy never; one a test gives (self.env) is kept
        if not {"QWEN_GATEWAY_HOME", "HOME"} & set(self.env):
            env["QWEN_GATEWAY_HOME"] = str(self.workdir / "state")
        env.update(self.env)
        return env

    def ready(self) -> "Gateway":
        """Until the launched gateway listens (its ports known)."""
        assert self.proc is not None, "not launched"
        why = self._why_not_forked
        self.ports = json.loads(_wait_for_file(self.portfile, self.proc, self.tool))
        self.started = {"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], "tool": self.tool,
                        "forked": why is None, "why_not": why, "seconds": round(time.monotonic() - self._began, 3)}
        STARTS.append(self.started)
        return self

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        return self.workdir / "conf" / "mitmproxy-ca-cert.pem"

    def log(self) -> str:
        # a line a full disk cut mid-character (the write took the page's tail) is read, not raised over
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def connections(self) -> list[str]:
        """The server connections mitmproxy opened (host:port, "relay"): only for a gateway started with them."""
        assert self.connlog is not None, "started without connlog=True: its server connections are not recorded"
        return self.connlog.read_text().split() if self.connlog.exists() else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, drain: bool = True) -> None:
        """SIGTERM: the graceful drain (turn/drain.py), its quiet entrance waited for (~0.3 s on an idle gateway).
        `drain=False`, a fixture's teardown, after the test asserted all it would: SIGINT, mitmproxy's own
        shutdown, whose `done` still ends what runs and writes the stores' last batches."""
        if self.proc is not None:
            began = time.monotonic()
            killed = _stop(self.proc, signal.SIGTERM if drain else signal.SIGINT)
            if hasattr(self, "started") and "stop_seconds" not in self.started:
                self.started.update(stop_seconds=round(time.monotonic() - began, 3), killed=killed)


def stop_all(gateways: list[Gateway]) -> None:
    """Gateways stopped side by side (each as `stop` stops it: one SIGTERM, its drain, its exit)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max(len(gateways), 1)) as pool:
        list(pool.map(Gateway.stop, gateways))


def start_emulator(workdir: Path, *args: str) -> Emulator:
    """The Qwen emulator as a real process on a free loopback port; stop it with `.stop()`."""
    portfile = workdir / "port"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "qwen_emulator.py"), "--host", "127.0.0.1", "--port", "0",
         "--port-file", str(portfile), "--quiet", *args],
        stdout=open(workdir / "stdout.log", "w"), stderr=subprocess.STDOUT,
    )
    try:
        return Emulator(proc, int(_wait_for_file(portfile, proc, "emulator").strip()))
    except BaseException:
        _stop(proc)
        raise


PORTS_FROM, PORT_SLICES = 10000, 8  # free_port's ports: 8 slices of the ports between 10000 and the ephemeral range


def free_port() -> int:
    """A loopback port that is free, and that nothing else is given before the caller binds it: below the kernel's
    ephemeral range, where every port-0 bind and every outgoing connection take theirs (seen: a mitmweb's web port
    taken by another test's connection in between), in this xdist worker's own slice, in turn from a random start."""
    import socket
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    size = (low - PORTS_FROM) // PORT_SLICES
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    first = PORTS_FROM + int(worker[2:] if worker[2:].isdigit() else 0) % PORT_SLICES * size
    for _ in range(max(size, 0)):
        port = first + next(_PORT_TURN) % size
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use (or in TIME_WAIT): the next
                continue
        return port
    raise RuntimeError(f"no free port among {PORTS_FROM}..{low} (the ephemeral range starts at {low})")


_PORT_TURN = itertools.count(secrets.randbelow(1 << 16))


def mitmweb_api(gw: Gateway, port: int, password: str) -> httpx.Client:
    """A client of mitmweb's REST API (Bearer password), once it answers (within 20 s)."""
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {password}"},
                       trust_env=False, timeout=10)
    deadline = time.monotonic() + 20
    while True:
        try:
            if api.get("/flows").status_code == 200:
                return api
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            api.close()
            raise RuntimeError("mitmweb did not answer within 20 s\n" + gw.log())
        time.sleep(0.1)


# A wait's bound is a quiet machine's time with room to spare; `until` grants SLACK times it, so a busy or slower
# machine (a CPU hog on each core, a CI runner a third as fast) reaches the same condition. A wait that succeeds
# ends as soon as its condition holds: the slack costs only a failing test's time. QWEN_TEST_SLACK sets it.
SLACK = float(os.environ.get("QWEN_TEST_SLACK") or 4)


def until(check, what: str, limit: float = 15.0, every: float = 0.1):
    """Polls `check` until it returns something true (returned), for `limit` × SLACK seconds at most."""
    bound = limit * SLACK
    deadline = time.monotonic() + bound
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {bound:g} s")
        time.sleep(every)
