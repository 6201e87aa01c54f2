"""A private network + mount namespace for end-to-end tests of unchanged clients.

`World` creates one (`unshare --net --mount`), brings its loopback up and bind-mounts a private
/etc/hosts in it (the host's file is never touched), so that `api.openai.com` resolves to 127.0.0.2
inside. There it runs the Qwen emulator, a fake "api.openai.com" origin on 127.0.0.2:443 and :80 that
records every connection it accepts, the gateway (mitmdump with addons/qwen.py) and the clients.
Nothing leaves the namespace: it has no interface but its own loopback.

Every process is started as `nsenter … -- timeout -k 5 SECONDS COMMAND`, so it stops by itself, except a gateway
the session's fork server can start: it forks it into the namespace (as nsenter would put it there: its network,
its mounts, cwd /), and stops it when the session ends. The namespace's holder process stops when its stdin
closes or its own timeout expires.

Run as a script it is the holder (`hold`) or the fake origin (`origin`), both inside the namespace.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helpers.forkclient import ForkedProcess

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
PY = sys.executable
BIN = Path(sys.executable).parent
ADDON = ROOT / "addons" / "qwen.py"
PORTFILE_ADDON = ROOT / "tests" / "helpers" / "portfile.py"
CONNLOG_ADDON = ROOT / "tests" / "helpers" / "connlog.py"  # every gateway here: its leaks are read (`leaks`)
EMULATOR = ROOT / "scripts" / "qwen_emulator.py"

OPENAI_ADDRESS = "127.0.0.2"  # what api.openai.com resolves to inside the namespace
CHATGPT_HOST, CHATGPT_ADDRESS = "chatgpt.com", "127.0.0.5"  # Codex's backend: nothing listens there
OTHER_HOST, OTHER_ADDRESS = "other.example", "127.0.0.3"  # a host the gateway must leave alone
PROXY_GID = 34343  # the group mitmdump runs as in transparent mode: its traffic is never redirected
TRANSPARENT_PORT = 8080  # fixed: the namespace is private
EMU_KEY = "sk-emulator-key"
CLIENT_KEY = "sk-unchanged-client-key"  # what the unchanged clients send; must never reach anyone
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
               "no_proxy", "NODE_USE_ENV_PROXY", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
               "OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY")


# ---- can this machine do it? ----------------------------------------------------------------------


@functools.cache
def namespace_unavailable() -> str | None:
    """Why a network + mount namespace cannot be created here (None: it can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (unshare --net --mount needs CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    for tool in ("unshare", "nsenter", "mount", "timeout"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (util-linux / coreutils)"
    try:
        r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "unshare --net --mount did not finish within 20 s"
    if r.returncode != 0:
        return f"cannot create a network + mount namespace here: {r.stderr.strip()}"
    return None


@functools.cache
def iptables_unavailable() -> str | None:
    """Why a nat REDIRECT cannot be set up inside a namespace here (None: it can)."""
    reason = namespace_unavailable()
    if reason:
        return reason
    if shutil.which("iptables") is None:
        return "iptables not installed (scripts/install-test-tools.sh installs it with apt-get)"
    r = subprocess.run(["unshare", "--net", "iptables", "-t", "nat", "-S", "OUTPUT"], capture_output=True,
                       text=True, timeout=20)
    if r.returncode != 0:
        return f"no iptables nat table in a network namespace here: {r.stderr.strip()}"
    return None


# ---- the namespace ----------------------------------------------------------------------------------


def _wait_for(path: Path, proc: subprocess.Popen, what: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return path.read_text()
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready {out or ''}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {timeout}s")


def stop(proc: subprocess.Popen | None, grace: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Namespace:
    """A fresh network + mount namespace whose /etc/hosts maps `hosts` (name -> address)."""

    def __init__(self, workdir: Path, hosts: dict[str, str], lifetime: int = 900) -> None:
        self.workdir = workdir
        self.hosts = hosts
        self.lifetime = lifetime
        self.holder: subprocess.Popen | None = None
        self.pid: int | None = None

    def start(self) -> "Namespace":
        self.workdir.mkdir(parents=True, exist_ok=True)
        hosts = self.workdir / "hosts"
        hosts.write_text("127.0.0.1 localhost\n::1 localhost\n"
                         + "".join(f"{a} {n}\n" for n, a in self.hosts.items()))
        ready = self.workdir / "holder.pid"
        ready.unlink(missing_ok=True)
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--",
             "timeout", "-k", "5", str(self.lifetime), PY, str(HERE), "hold", str(hosts), str(ready)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.pid = int(_wait_for(ready, self.holder, "namespace holder"))
        return self

    def command(self, cmd: list[str], timeout: int) -> list[str]:
        """`cmd` as run inside the namespace, killed after `timeout` seconds."""
        return ["nsenter", "-t", str(self.pid), "--net", "--mount", "--",
                "timeout", "-k", "5", str(timeout), *map(str, cmd)]

    def popen(self, cmd: list[str], *, timeout: int = 300, log: Path | None = None, env: dict | None = None,
              **kw) -> subprocess.Popen:
        out = open(log, "w") if log else subprocess.DEVNULL
        try:
            return subprocess.Popen(self.command(cmd, timeout), stdout=out, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, **kw)
        finally:
            if log:
                out.close()

    def run(self, cmd: list[str], *, timeout: int = 60, env: dict | None = None,
            **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(cmd, timeout), capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=timeout + 15, **kw)

    def stop(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            self.holder.stdin.close()  # the holder exits on EOF
            try:
                self.holder.wait(10)
            except subprocess.TimeoutExpired:
                stop(self.holder)


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """An unchanged client's environment: the caller's, without any proxy/base-URL/CA setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env.update({"HOME": str(home), "OPENAI_API_KEY": CLIENT_KEY, **extra})
    return env


class World:
    """One namespace with the Qwen emulator, the fake api.openai.com origin, a passthrough origin
    (other.example -> 127.0.0.3:80, answers "hello from other") and gateways started on demand."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ns = Namespace(workdir / "ns", {"api.openai.com": OPENAI_ADDRESS, CHATGPT_HOST: CHATGPT_ADDRESS,
                                             OTHER_HOST: OTHER_ADDRESS})
        self.procs: list[subprocess.Popen | ForkedProcess] = []  # a gateway may be forked
        self.emu_port = 0
        self.origin_log = workdir / "origin.log"
        self.other_log = workdir / "other.log"

    def start(self) -> "World":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host_hosts = Path("/etc/hosts").read_bytes()  # the host's file, to show it stays untouched
        self.ns.start()
        try:
            portfile = self.workdir / "emulator.port"
            emu = self.spawn([PY, EMULATOR, "--host", "127.0.0.1", "--port", "0", "--port-file", portfile,
                              "--api-key", EMU_KEY, "--quiet"], log=self.workdir / "emulator.log")
            self.emu_port = int(_wait_for(portfile, emu, "emulator").strip())
            self.origin = self._origin(self.origin_log, f"{OPENAI_ADDRESS}:443", f"{OPENAI_ADDRESS}:80")
            self._origin(self.other_log, f"{OTHER_ADDRESS}:80", reply="hello from other")
            from helpers.home import Home  # here: run as a script (the origins), this module has no `helpers` package

            self.state = self.workdir / "state"
            home = Home(self.workdir, state=self.state)  # its env is the gateways' own (NsGateway)
            home.key("emu", base_url=f"http://127.0.0.1:{self.emu_port}/v1", secret=EMU_KEY,
                     default_model="qwen3-coder-plus")
            home.write()
        except BaseException:
            self.stop()
            raise
        return self

    def spawn(self, cmd: list, *, timeout: int = 600, log: Path | None = None, env: dict | None = None
              ) -> subprocess.Popen:
        proc = self.ns.popen(cmd, timeout=timeout, log=log, env=env)
        self.procs.append(proc)
        return proc

    def _origin(self, log: Path, *listen: str, reply: str = "") -> subprocess.Popen:
        ready = log.with_suffix(".ready")
        args = [PY, HERE, "origin", "--log", log, "--ready", ready, *(x for a in listen for x in ("--listen", a))]
        proc = self.spawn(args + (["--reply", reply] if reply else []), log=log.with_suffix(".out"))
        _wait_for(ready, proc, f"fake origin {listen}")
        return proc

    # ---- observations ----

    def origin_connections(self) -> list[str]:
        """Every connection the fake api.openai.com accepted so far (one 'address:port <- peer' each)."""
        return self.origin_log.read_text().splitlines() if self.origin_log.exists() else []

    def mark(self, gw: "NsGateway") -> tuple[int, int]:
        """Where the fake origin's log and the gateway's connection log stand now (see `leaks`)."""
        return len(self.origin_connections()), len(gw.connections())

    def leaks(self, gw: "NsGateway", mark: tuple[int, int]) -> list[str]:
        """Since `mark`: connections the fake api.openai.com accepted, and upstream connections the
        gateway's mitmproxy opened to api.openai.com (by name or by its address here)."""
        time.sleep(0.5)  # the fake origin logs from its own process: a connection must have time to show up
        opened = [c for c in gw.connections()[mark[1]:]
                  if c.rsplit(":", 1)[0] in (OPENAI_ADDRESS, "api.openai.com")]
        return self.origin_connections()[mark[0]:] + [f"mitmproxy -> {c}" for c in opened]

    def other_connections(self) -> list[str]:
        return self.other_log.read_text().splitlines() if self.other_log.exists() else []

    def emulator(self, path: str) -> object:
        """GET /_emulator/<path> from inside the namespace."""
        code = ("import json,sys,urllib.request;"
                f"print(urllib.request.urlopen('http://127.0.0.1:{self.emu_port}/_emulator/{path}',"
                "timeout=10).read().decode())")
        r = self.ns.run([PY, "-c", code], timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def chat_requests(self) -> list[dict]:
        return [r for r in self.emulator("requests") if r["path"].endswith("/chat/completions")]

    def switches(self, **values) -> None:
        """POST /_emulator/switches from inside the namespace."""
        self._admin("switches", values)

    def fault(self, kind: str, **values) -> None:
        """Queue an emulator fault (docs/emulator.md), e.g. `fault("quota429", count=5)`."""
        self._admin("fault", {"kind": kind, **values})

    def _admin(self, path: str, values: dict) -> None:
        code = ("import json,sys,urllib.request as u;u.urlopen(u.Request("
                f"'http://127.0.0.1:{self.emu_port}/_emulator/{path}',data=sys.argv[1].encode(),"
                "headers={'content-type':'application/json'}),timeout=10)")
        r = self.ns.run([PY, "-c", code, json.dumps(values)], timeout=30)
        assert r.returncode == 0, r.stderr

    def reset_emulator(self) -> None:
        code = ("import urllib.request as u;u.urlopen(u.Request("
                f"'http://127.0.0.1:{self.emu_port}/_emulator/reset',data=b'{{}}',"
                "headers={'content-type':'application/json'}),timeout=10)")
        r = self.ns.run([PY, "-c", code], timeout=30)
        assert r.returncode == 0, r.stderr

    def iptables_rules(self) -> str:
        r = self.ns.run(["iptables", "-t", "nat", "-S"], timeout=20)
        assert r.returncode == 0, r.stderr
        return r.stdout

    # ---- gateways ----

    def gateway(self, name: str, mode: str, *, wrap: list[str] | None = None, args: list[str] = (),
                listen: str = "127.0.0.1:0", env: dict[str, str] | None = None, fork: bool = True) -> "NsGateway":
        """`env`: variables added to the gateway's; `fork=False`: started by nsenter even when it could be forked."""
        gw = NsGateway(self, self.workdir / name, mode, wrap=wrap or [], args=list(args), listen=listen, env=env,
                       fork=fork)
        gw.start()
        return gw

    def run_client(self, cmd: list, env: dict, timeout: int = 90) -> subprocess.CompletedProcess:
        return self.ns.run(cmd, timeout=timeout, env=env, cwd=str(self.workdir))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        self.ns.stop()


class NsGateway:
    """mitmdump running addons/qwen.py inside the World's namespace (optionally behind a wrapper
    command such as `qwen-redirect run … --`)."""

    def __init__(self, world: World, workdir: Path, mode: str, *, wrap: list[str], args: list[str],
                 listen: str, env: dict[str, str] | None = None, fork: bool = True) -> None:
        self.world = world
        self.env = env or {}
        self.fork = fork
        self.workdir = workdir
        self.mode = mode
        self.wrap = wrap
        self.args = args
        self.listen = listen
        self.portfile = workdir / "ports.json"
        self.connlog = workdir / "connections.log"
        self.logfile = workdir / "mitmdump.log"
        self.proc: subprocess.Popen | ForkedProcess | None = None
        self.port = 0

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "home").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
        env.update({"QWEN_TEST_PORTFILE": str(self.portfile), "QWEN_TEST_CONNLOG": str(self.connlog),
                    "QWEN_GATEWAY_HOME": str(self.world.state), "QWEN_DIR": str(self.workdir / ".qwen"),
                    "HOME": str(self.workdir / "home"), "EMU_KEY": EMU_KEY, **self.env})
        cmd = [*self.wrap, BIN / "mitmdump", "--set", f"confdir={self.workdir / 'conf'}", "--mode",
               f"{self.mode}@{self.listen}", "-s", PORTFILE_ADDON, "-s", ADDON, "-s", CONNLOG_ADDON,
               *self.args]
        from helpers import forkclient, testca  # (not at the top: this file also runs as a script, inside)

        testca.seed_mitmproxy_confdir(self.workdir / "conf")
        with open(os.devnull) as null, open(self.logfile, "w") as log:  # ~2 s of CPU less than a fresh mitmdump
            forked, self.why_not_forked = forkclient.fork_tool(
                cmd, env, "/", (null.fileno(), log.fileno(), log.fileno()),  # "/": where nsenter --mount leaves it
                fork=self.fork, wrapper="a wrapper" if self.wrap else None, inside=self.world.ns.pid)
        if forked is not None:
            self.proc = forked
            self.world.procs.append(forked)
        else:
            self.proc = self.world.spawn(cmd, log=self.logfile, env=env)
        self.port = next(iter(json.loads(_wait_for(self.portfile, self.proc, "mitmdump")).values()))

    @property
    def ca_cert(self) -> Path:
        return self.workdir / "conf" / "mitmproxy-ca-cert.pem"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def connections(self) -> list[str]:
        """Every upstream connection mitmproxy opened (host:port), from tests/helpers/connlog.py."""
        return self.connlog.read_text().split() if self.connlog.exists() else []

    def stop(self) -> int | None:
        stop(self.proc)
        return self.proc.returncode if self.proc else None


# ---- inside the namespace -----------------------------------------------------------------------------


def _loopback_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, siocgifflags, struct.pack("16sH", b"lo", 0))[:18])[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def _hold(hosts: str, ready: str) -> int:
    _loopback_up()
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True, timeout=20)
    Path(ready + ".tmp").write_text(str(os.getpid()))
    os.replace(ready + ".tmp", ready)
    sys.stdin.read()  # until the test closes our stdin (or `timeout` ends us)
    return 0


def _origin(log: str, ready: str, listen: list[str], reply: str) -> int:
    """Accept on every address, log each connection at once; answer HTTP with `reply`, or close."""
    lock = threading.Lock()

    def serve(sock: socket.socket, where: str) -> None:
        while True:
            conn, peer = sock.accept()
            with lock, open(log, "a") as f:
                f.write(f"{where} <- {peer[0]}:{peer[1]}\n")
            with conn:
                if reply:
                    conn.settimeout(5)
                    try:
                        data = b""
                        while b"\r\n\r\n" not in data and len(data) < 65536:
                            chunk = conn.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                        body = reply.encode()
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
                                     b"connection: close\r\n\r\n%s" % (len(body), body))
                    except OSError:
                        pass

    threads = []
    for spec in listen:
        host, port = spec.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen(64)
        t = threading.Thread(target=serve, args=(s, spec), daemon=True)
        t.start()
        threads.append(t)
    Path(log).touch()
    Path(ready).write_text("ready")
    for t in threads:
        t.join()  # until `timeout` ends the process
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    h = sub.add_parser("hold")
    h.add_argument("hosts")
    h.add_argument("ready")
    o = sub.add_parser("origin")
    o.add_argument("--log", required=True)
    o.add_argument("--ready", required=True)
    o.add_argument("--listen", action="append", required=True)
    o.add_argument("--reply", default="")
    a = p.parse_args()
    if a.what == "hold":
        return _hold(a.hosts, a.ready)
    return _origin(a.log, a.ready, a.listen, a.reply)


if __name__ == "__main__":
    sys.exit(main())


# ---- pytest fixtures (import them into a test module to use them) --------------------------------------

import pytest  # noqa: E402


def redirect_wrap(port: int = TRANSPARENT_PORT, *options: str) -> list:
    """`qwen-redirect run` in front of mitmdump, exactly as docs/clients.md shows it (bar the group)."""
    return [BIN / "qwen-redirect", "run", "--port", str(port), "--group", str(PROXY_GID), *options, "--"]


def _world(tmp_path_factory, name: str):
    reason = namespace_unavailable()
    if reason:
        pytest.skip(f"no network namespace: {reason}")
    w = World(tmp_path_factory.mktemp(name)).start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The namespace of the transparent-mode gateway (its redirect rules apply to every client in it)."""
    yield from _world(tmp_path_factory, "world")


@pytest.fixture(scope="module")
def proxy_world(tmp_path_factory):
    """A namespace without redirect rules, for the explicit proxy: what ignores the proxy is seen."""
    yield from _world(tmp_path_factory, "proxy-world")


@pytest.fixture(scope="module")
def transparent_gw(world):
    """Transparent mode as the docs run it: `qwen-redirect run … -- mitmdump --mode transparent`."""
    reason = iptables_unavailable()
    if reason:
        pytest.skip(f"no iptables REDIRECT: {reason}")
    gw = world.gateway("transparent", "transparent", wrap=redirect_wrap(), listen=f"127.0.0.1:{TRANSPARENT_PORT}")
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def explicit_gw(proxy_world):
    """The explicit proxy (mitmdump's regular mode) inside a namespace without redirect rules."""
    gw = proxy_world.gateway("explicit", "regular")
    yield gw
    gw.stop()


@pytest.fixture(params=["transparent", "explicit"])
def mode_gw(request):
    """(mode, gateway): the test runs once through each."""
    return request.param, request.getfixturevalue(f"{request.param}_gw")
