"""The project's Python programs as the docs' shell runs them (tests/repo/test_docs.py), forked by a fork server
(tests/helpers/forkserver.py) instead of started from nothing: ~2 s of CPU to import mitmproxy and the addon for
every `.venv/bin/mitmdump` a block types, ~0.3 s forked.

The shell (tests/helpers/sandbox.py) runs in a mount namespace of its own too, where each program of SHIMMED in
.venv/bin is a shim (a bind mount over the file): a small Python process that stands for the program in the
shell. It is the process the shell started and waits for (`$!`, `wait`, `kill -INT`, a pipe's end):
- it asks the session's fork server for the program, handing over its stdin, stdout, stderr, its network
  namespace, working folder, whole environment, umask and the signals it found ignored (a shell's `&` ignores
  SIGINT and SIGQUIT for what it starts in the background); the child is made that process (forkserver.become);
- it passes on every signal a shell or a user sends (INT, TERM, HUP, QUIT, USR1, USR2) and ends with the
  child's exit code, or by the child's signal; killed itself (SIGKILL), its child is killed by the server;
- when the server cannot stand for the program (none started for it, or an environment that differs in what
  importing read: forkclient.ForkServer.reason_not_to_fork), it execs the program itself.

What differs from an exec'd program: its parent (the fork server) and process group, which a shell's job
control would see; no documented command looks at them. `runs.log` beside the shims lists each run, forked or
not (why).

A shim is a script of three lines run by `python -IS` (a few tens of ms, no site-packages): it imports this
module and calls `shim(NAME, CONFIG, ARGS)`.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from helpers import forkclient

# The programs of .venv/bin a shim stands for, with what each imports first (its fork server preloads them)
SHIMMED = {"mitmdump": "gateway", "mitmweb": "gateway", "qwen-auth": ("qwen_gateway.cli.auth",),
           "qwen-keys": ("qwen_gateway.cli.keys",), "qwen-usage": ("qwen_gateway.cli.usage",)}
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
PACKET = 1 << 20


# Programs that exec a shimmed one: naming them starts its fork server too (else its shim execs the program itself)
# (`qwen-gateway [ARGS]` is mitmdump with the addon: cli/service.py; scripts/gateway.sh runs qwen-gateway)
STARTED_BY = {"mitmdump": ("qwen-gateway", "gateway.sh")}


def _log(config: str, line: str) -> None:
    with open(os.path.join(os.path.dirname(config), "runs.log"), "a") as f:
        f.write(line + "\n")


def why_not(entry: dict, env: dict[str, str]) -> str | None:
    """Why this environment cannot be forked by the program's server (None: it can)."""
    if not entry.get("socket"):
        return "no fork server started for it"
    return forkclient.reason_not_to_fork(env, entry["env"], set(entry["agree"]))


def shim(name: str, config: str, args: list[str]) -> None:
    entry = json.load(open(config))[name]
    env = dict(os.environ)
    why = why_not(entry, env)
    _log(config, f"{name} {'forked' if why is None else 'exec: ' + why}")
    if why is not None:
        os.execv(entry["hidden"], [name, *args])  # the program itself, from where the shim does not cover it
    ignored = [int(s) for s in RELAYED if signal.getsignal(s) == signal.SIG_IGN]
    target: list = []  # the child's pidfd once there is one; signals that came before it wait for it
    waiting: list[int] = []

    def relay(signum, _frame):
        if target:
            try:
                signal.pidfd_send_signal(target[0], signum)
            except ProcessLookupError:
                pass
        else:
            waiting.append(signum)
    for s in RELAYED:
        signal.signal(s, relay)
    umask = os.umask(0)
    os.umask(umask)
    request = {"op": "spawn", "argv": [entry["python"], entry["real"], *args], "env": env, "cwd": os.getcwd(),
               "namespaces": ["net"], "ignored": ignored, "umask": umask, "tied": True}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.connect(entry["socket"])
    netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2, netns])
    os.close(netns)
    data, fds, _flags, _addr = socket.recv_fds(conn, PACKET, 1)
    answer = json.loads(data) if data else {"error": "no answer"}
    if "error" in answer:
        sys.exit(f"{name}: the fork server did not start it: {answer['error']}")
    target.append(fds[0])
    for signum in waiting:
        relay(signum, None)
    data = conn.recv(PACKET)  # the child's exit code, once it ends (recv resumes after each signal relayed)
    if not data:
        sys.exit(f"{name}: the fork server went away before the program ended")
    code = json.loads(data)["returncode"]
    if code < 0:  # ended by a signal: so does the shim, for the shell's `$?` (128 + n)
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code if code >= 0 else 128 - code)


class Shims:
    """This test process's shims and their configuration: made once, for every docs shell it starts."""

    def __init__(self, venv_bin: Path, env: dict[str, str], programs: dict | None = None) -> None:
        """`env`: the shells' environment without what differs between them (the fork servers run in it).
        `programs`: SHIMMED's, or others (a test's)."""
        self.venv_bin, self.env, self.programs = venv_bin, env, SHIMMED if programs is None else programs
        self.dir = Path(tempfile.mkdtemp(prefix="qwen-forkshim-"))
        atexit.register(shutil.rmtree, self.dir, True)
        (self.dir / "real-bin").mkdir()
        self.config = self.dir / "config.json"
        self.entries: dict[str, dict] = {}
        for name in self.programs:
            real = venv_bin / name
            if not real.exists():
                continue
            python = real.read_text().splitlines()[0].removeprefix("#!").strip()
            (self.dir / name).write_text(
                f"#!{sys.executable} -IS\nimport sys\nsys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
                f"from helpers import forkshim\nforkshim.shim({name!r}, {str(self.config)!r}, sys.argv[1:])\n")
            (self.dir / name).chmod(0o755)
            self.entries[name] = {"real": str(real), "hidden": str(self.dir / "real-bin" / name), "python": python}
        self._write()

    def binds(self) -> list[tuple[str, str]]:
        """(source, target) bind mounts for the shell's mount namespace: .venv/bin where the shims do not cover it
        first, then each shim over its program."""
        return [(str(self.venv_bin), str(self.dir / "real-bin")),
                *((str(self.dir / name), entry["real"]) for name, entry in self.entries.items())]

    def ensure(self, text: str) -> None:
        """The fork servers of the programs `text` (commands about to run) names, started and waited for."""
        for name, entry in self.entries.items():
            named = (name, *STARTED_BY.get(name, ()))
            if "socket" in entry or not any(re.search(rf"(^|[\s/]){re.escape(n)}(\s|$|[;&|)])", text) for n in named):
                continue
            modules = forkclient.GATEWAY if self.programs[name] == "gateway" else self.programs[name]
            server = forkclient.server(entry["python"], str(self.venv_bin), tuple(modules), env=self.env)
            if server is None:
                return  # the fork servers are turned off: the shims exec the programs
            entry.update(socket=server.socket, env=server.env, agree=sorted(server.must_agree()))
            self._write()

    def _write(self) -> None:
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries))
        os.replace(tmp, self.config)

    def runs(self) -> list[str]:
        log = self.dir / "runs.log"
        return log.read_text().splitlines() if log.exists() else []


_shims: list[Shims] = []


def shims(venv_bin: Path, env: dict[str, str]) -> Shims | None:
    """The process's shims, made at first need; None when the fork servers are turned off."""
    if os.environ.get("QWEN_TEST_NO_FORKSERVER") == "1":
        return None
    if not _shims:
        _shims.append(Shims(venv_bin, env))
    return _shims[0]
