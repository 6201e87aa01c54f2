"""A shell for running documented commands exactly as printed: its own network namespace (a private
loopback, so the documented ports 8080, 8081 and 9999 meet no other program on this machine and nothing
reaches the network), a fresh HOME, the repository as working folder and .venv/bin first on PATH (as after
`source .venv/bin/activate`). With shims (tests/helpers/forkshim.py), a mount namespace of its own too, where
the project's programs in .venv/bin are forked by the session's fork servers.

    python tests/helpers/sandbox.py [--bind SOURCE TARGET]... COMMAND...   (inside the namespaces) brings
    loopback up, makes the bind mounts, then execs COMMAND

`Shell` keeps one bash running, so blocks share variables and background jobs as in a terminal. Each
block is written to a file and sourced (`. FILE < STDIN`), so a command that reads standard input reads
what the test gives it, never the following commands. A failing command is reported by an ERR trap.
Output goes to a pseudo-terminal (220 columns), stdout and stderr together, so programs write it as they
would to a terminal: Python line by line, each line whole (a pipe would make them buffer, or with
PYTHONUNBUFFERED write a line and its newline separately, where another process's line can slip in). The
terminal is not the processes' controlling terminal (no job-control messages; `getpass` reads stdin).
Colour codes are removed from what `Shell.run` returns.
"""

from __future__ import annotations

import fcntl
import os
import pty
import termios
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helpers import forkshim

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
FAIL = "@@qwen-docs-fail@@"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DONE = "@@qwen-docs-done@@"
# After a block, output may still come from background jobs: `run` waits until the terminal was quiet for
# `settle` s. When no process but the shell has the terminal open, everything the block printed came before its
# end marker on the one terminal, so only this long (bytes the reader thread has yet to take from the kernel)
QUIET_ALONE = 0.1


def loopback_up() -> None:
    """`ip link set lo up` without iproute2: SIOCGIFFLAGS / SIOCSIFFLAGS on "lo"."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, req)[:18])[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 1))
    finally:
        s.close()


_PREFIX: list[str] | None = None
_REASON: str | None = None


def namespace_prefix() -> list[str] | None:
    """The command prefix that starts a process in a new network namespace with loopback up, or None
    (then `namespace_problem()` says why)."""
    global _PREFIX, _REASON
    if _PREFIX is not None or _REASON is not None:
        return _PREFIX
    unshare = shutil.which("unshare")
    if unshare is None:
        _REASON = "`unshare` (util-linux) is not installed"
        return None
    errors = []
    for flags in (["--net"], ["--user", "--map-root-user", "--net"]):
        prefix = [unshare, *flags, "--", sys.executable, str(Path(__file__).resolve())]
        r = subprocess.run([*prefix, sys.executable, "-c", "import socket; socket.create_server(('127.0.0.1', 0))"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            _PREFIX = prefix
            return _PREFIX
        errors.append(f"unshare {' '.join(flags)}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    _REASON = "no private network namespace (needs root or unprivileged user namespaces): " + "; ".join(errors)
    return None


def namespace_problem() -> str | None:
    namespace_prefix()
    return _REASON


def sandbox_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm", "USER": os.environ.get("USER", "you"),
           "TMPDIR": str(home / "tmp")}
    env.update(extra)
    return env


class Shell:
    """One bash in the sandbox. `run(text)` sources a block and returns what it printed (with what
    background jobs printed meanwhile) and the commands that failed."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, *, netns: bool = True,
                 shims: "forkshim.Shims | None" = None) -> None:
        """`netns=False`: on this machine's network (docker's commands: the daemon publishes ports there).
        `shims`: the project's programs forked, not exec'd (tests/helpers/forkshim.py; in a namespace only)."""
        prefix = namespace_prefix() if netns else []
        if prefix is None:
            raise RuntimeError(namespace_problem())
        self.shims = shims if prefix else None
        if self.shims is not None:  # a mount namespace too, where the shims cover the programs
            end = prefix.index("--")
            prefix = [*prefix[:end], "--mount", *prefix[end:],
                      *(arg for src, dst in self.shims.binds() for arg in ("--bind", src, dst))]
        self.home = home
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        self.work = home / "tmp" / "blocks"
        self.work.mkdir(exist_ok=True)
        self.env = env or sandbox_env(home)
        master, slave = pty.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST  # no "\r\n" for "\n"
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
        self.proc = subprocess.Popen([*prefix, "bash", "--norc", "--noprofile", "-s"], stdin=subprocess.PIPE,
                                     stdout=slave, stderr=slave, env=self.env, cwd=ROOT, start_new_session=True)
        self._terminal = os.ttyname(slave)
        os.close(slave)
        self._master = master
        self._buf = bytearray()
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._cursor = 0
        self._n = 0
        self._send(f"trap 'echo \"{FAIL} $? $BASH_COMMAND\"' ERR")

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                chunk = b""
            if not chunk:
                return
            with self._lock:
                self._buf += chunk
                self._last = time.monotonic()

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def text(self) -> str:
        with self._lock:
            return self._buf.decode("utf-8", "replace")

    def run(self, text: str, *, stdin: str = "", timeout: float = 120, settle: float = 0.4) -> tuple[str, list[str]]:
        """Source `text`; wait for it (at most `timeout` s), then until the output has been quiet for
        `settle` s (background jobs finishing their lines; at most 5 s). Returns (output, failures)."""
        self._n += 1
        if self.shims is not None:
            self.shims.ensure(text)
        block = self.work / f"block{self._n}.sh"
        block.write_text(text if text.endswith("\n") else text + "\n")
        given = self.work / f"stdin{self._n}"
        given.write_text(stdin)
        marker = f"{DONE} {self._n}"
        self._send(f". {block} < {given}; echo '{marker}'")
        deadline = time.monotonic() + timeout
        while marker not in self.text():
            if self.proc.poll() is not None:
                raise AssertionError(f"the shell exited ({self.proc.returncode}):\n{self.text()[self._cursor:]}")
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"block did not finish within {timeout} s:\n{text}\n--- output:\n"
                                     f"{self.text()[self._cursor:]}")
            time.sleep(0.05)
        if settle > QUIET_ALONE and not self._others_hold_terminal():
            settle = QUIET_ALONE  # no background job left that could print more: what the kernel still holds
        end = time.monotonic() + 5
        while time.monotonic() < end:
            with self._lock:
                quiet = time.monotonic() - self._last
            if quiet >= settle:
                break
            time.sleep(0.05)
        whole = self.text()
        out, self._cursor = whole[self._cursor:], len(whole)
        # the markers start a line of their own unless the output before them ended without a newline
        # (curl's JSON): that output keeps its line, the marker goes
        out = ANSI.sub("", out)
        failures = [f for f in re.findall(rf"{FAIL} (.*)\n?", out) if f" . {block} < " not in f" {f}"]
        out = re.sub(rf"(?:{FAIL} .*|{DONE} \d+)(?:\n|$)", "", out)
        return out, failures

    def _others_hold_terminal(self) -> bool:
        """Whether a process besides the shell has the terminal open: only such a process can print after the
        block's end (its background jobs, and their children)."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == self.proc.pid:
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue  # gone meanwhile
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == self._terminal:
                        return True
                except OSError:
                    pass
        return False

    def more(self, wait: float = 0.5) -> str:
        """Output that arrived since the last call (background jobs), after `wait` seconds."""
        time.sleep(wait)
        whole = self.text()
        out, self._cursor = whole[self._cursor:], len(whole)
        return ANSI.sub("", out)

    def close(self) -> None:
        """Stop everything the shell started (one session: bash and its jobs)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(2)
        try:
            os.close(self._master)
        except OSError:
            pass


def wait_port(shell: Shell, port: int, timeout: float = 30) -> str:
    """Wait until something in the shell's namespace accepts connections on 127.0.0.1:port; returns what
    the terminal showed meanwhile."""
    probe = ("import socket, sys, time\n"
             f"end = time.monotonic() + {timeout}\n"
             "while True:\n"
             "    try:\n"
             f"        socket.create_connection(('127.0.0.1', {port}), 1).close(); break\n"
             "    except OSError:\n"
             f"        if time.monotonic() > end: sys.exit('nothing listens on port {port}')\n"
             "        time.sleep(0.1)\n")
    path = shell.work / f"wait{port}.py"
    path.write_text(probe)
    text, failures = shell.run(f"{sys.executable} {path}", timeout=timeout + 10, settle=0.1)
    assert not failures, f"port {port} did not open: {failures}\n{shell.text()[-3000:]}"
    return text




def bind(source: str, target: str) -> None:
    """mount --bind SOURCE TARGET, in this process's mount namespace (private: nothing goes out of it)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, 4096, None) != 0:  # MS_BIND
        raise OSError(ctypes.get_errno(), f"mount --bind {source} {target}")


if __name__ == "__main__":  # inside the new namespace: [--bind SOURCE TARGET]... COMMAND...
    loopback_up()
    args = sys.argv[1:]
    while args[0] == "--bind":
        bind(args[1], args[2])
        args = args[3:]
    os.execvp(args[0], args)
