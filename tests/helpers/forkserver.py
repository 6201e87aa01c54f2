"""A fork server for the e2e tests' gateways: one process per test session that has imported what mitmdump and
the addon import when they load (~1 s of a gateway's start), then forks a real gateway process per request.

    python tests/helpers/forkserver.py SOCKET

tests/helpers/forkclient.py starts it and talks to it over SOCKET (a unix seqpacket socket, one JSON message
per packet). Its first connection is the session's: `hello` answers what this process read of its environment
while importing, and the server ends when that connection closes (the session ended or died), stopping any
gateway still running. Each later connection asks for one gateway: `spawn` with the command line, environment,
working directory and the log file's descriptor; the answer is the pid and a pidfd (signals reach that very
process, never a reused pid); when the gateway ends, its exit code (as `Popen.returncode` has it) follows on
the same connection, since only this process can wait for it.

The child is made what `mitmdump ARGS` started by subprocess.Popen would be at its first line: the signal
handlers a fresh interpreter has, no descriptor of this server's, the test's environment (wholly), working
directory, argv and stdout/stderr; it then runs mitmproxy's own entry point, as the console script does, and
exits through the interpreter (atexit handlers, non-daemon threads), with the entry point's exit code.

This module imports only what a fresh mitmdump has imported by the time it listens
(tests/e2e/test_forkserver.py checks that), and is the only code of the tests the forked gateways hold."""

from __future__ import annotations

import signal

# Before anything changes them: the handlers a fresh interpreter has (SIGINT's, SIGPIPE/SIGXFSZ ignored, ...).
FRESH_HANDLERS = {s: signal.getsignal(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)}

import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402

# What the console scripts import before they call their entry point, and what addons/qwen.py imports when
# mitmproxy loads it. Nothing the gateway imports only at first need (tests/unit/test_addon_imports.py).
PRELOAD = ("mitmproxy.tools.main", "qwen_gateway.addon", "qwen_gateway.mitmweb.contentviews")
ENTRY_POINTS = {"mitmdump", "mitmweb"}  # mitmproxy.tools.main's functions, the console scripts of these names
PACKET = 1 << 20


class _EnvironmentReads(os._Environ):  # type: ignore[misc,name-defined]
    """os.environ while PRELOAD is imported: records each variable read, and who copied it whole."""

    reads: dict[str, set[str]] = {}  # variable -> the files that read it
    copies: set[str] = set()  # the files that read it whole

    def __getitem__(self, key):
        self.reads.setdefault(key, set()).add(_caller())
        return super().__getitem__(key)

    def __iter__(self):
        self.copies.add(_caller())
        return super().__iter__()


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.endswith(("/os.py", "<frozen os>", "/posixpath.py", "<frozen posixpath>",
                                        "_collections_abc>", "_collections_abc.py")):
            return frame.filename
    return "?"


def preload() -> dict:
    """Imports PRELOAD; returns what was read of the environment meanwhile."""
    import importlib

    os.environ.__class__ = _EnvironmentReads
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        os.environ.__class__ = os._Environ  # type: ignore[attr-defined]
    import threading

    if threading.active_count() != 1:  # a fork keeps only the forking thread: a thread started at import is lost
        raise RuntimeError(f"importing started threads: {threading.enumerate()}")
    reads = _EnvironmentReads.reads
    return {"reads": {k: {"value": os.environ.get(k), "by": sorted(reads[k])} for k in sorted(reads)},
            "copies": sorted(_EnvironmentReads.copies), "generators": generators(), "modules": sorted(sys.modules)}


def generators() -> list[str]:
    """Random generators the loaded modules hold: each seeded when its module was imported."""
    import random

    return sorted(f"{name}.{attr}" for name, module in list(sys.modules.items())
                  for attr, value in list(getattr(module, "__dict__", {}).items())
                  if isinstance(value, random.Random) and not isinstance(value, random.SystemRandom))


def _refresh() -> None:
    """What importing computed from the environment, computed again from the test's: as a fresh process has it."""
    import time

    time.tzset()  # TZ: time.timezone, time.tzname, localtime()
    if "wsgiref.handlers" in sys.modules:  # BaseHandler.os_environ: a copy of the environment at import
        handlers = sys.modules["wsgiref.handlers"]
        handlers.BaseHandler.os_environ = handlers.read_environ()
    import sysconfig

    if hasattr(sysconfig, "_USER_BASE") and hasattr(sysconfig, "_getuserbase"):  # from HOME, at import
        sysconfig._USER_BASE = sysconfig._getuserbase()
    # Generators seeded once at import from the OS (random's own module reseeds itself after a fork); the test
    # of this file checks that these are all the preloaded modules hold
    if "qwen_gateway.ids" in sys.modules:
        sys.modules["qwen_gateway.ids"]._rng.seed(os.urandom(32))


class Server:
    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(64)  # the session connects while the imports run
        self.preloaded = preload()
        # stdio and what the imports opened (a fresh gateway has them too)
        self.inherited = open_descriptors() - {self.listener.fileno()}
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the loop (set_wakeup_fd)
        self.session: socket.socket | None = None
        self.children: dict[int, socket.socket] = {}

    def serve(self) -> tuple[dict, int] | None:
        """Until the session's connection closes: None. In a forked child: its request and log descriptor."""
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ, "accept")
            sel.register(self.wakeup_r, selectors.EVENT_READ, "reap")
            while True:
                for key, _ in sel.select():
                    if key.data == "reap":
                        self._reap()
                    elif key.data == "session":
                        if not key.fileobj.recv(PACKET):  # type: ignore[union-attr]
                            self._stop_children()
                            return None
                    else:
                        conn, _ = self.listener.accept()
                        child = self._handle(conn)
                        if child is not None:
                            return child
                        if conn is self.session:
                            sel.register(conn, selectors.EVENT_READ, "session")

    def _handle(self, conn: socket.socket) -> tuple[dict, int] | None:
        conn.settimeout(10)
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, PACKET, 1)
        except OSError:
            conn.close()
            return None
        request = json.loads(data)
        if request["op"] == "hello" and self.session is None:
            self.session = conn
            conn.settimeout(None)
            conn.send(json.dumps({"pid": os.getpid(), **self.preloaded}).encode())
            return None
        if request["op"] != "spawn" or len(fds) != 1 or request["argv"][0].rsplit("/", 1)[-1] not in ENTRY_POINTS:
            conn.send(json.dumps({"error": f"not a request: {request.get('op')}"}).encode())
            conn.close()
            for fd in fds:
                os.close(fd)
            return None
        (log,) = fds
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as e:
            conn.send(json.dumps({"error": f"fork: {e}"}).encode())
            conn.close()
            os.close(log)
            return None
        if pid == 0:
            self._leave(conn)
            return request, log
        os.close(log)
        self.children[pid] = conn
        pidfd = os.pidfd_open(pid)  # not reaped before we do: the pidfd is this child's
        try:
            socket.send_fds(conn, [json.dumps({"pid": pid}).encode()], [pidfd])
        except OSError:
            pass  # the test went away; the child is reaped all the same
        finally:
            os.close(pidfd)
        return None

    def _leave(self, conn: socket.socket) -> None:
        """In the child: nothing of the server's stays (its sockets, pipe, signal handlers)."""
        signal.set_wakeup_fd(-1)
        for signum, handler in FRESH_HANDLERS.items():
            try:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            except (OSError, ValueError):
                pass  # a signal Python may not set (e.g. SIGRTMIN+n taken by the C library)
        for s in (self.listener, conn, self.session, *self.children.values()):
            if s is not None:
                s.close()
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)

    def _reap(self) -> None:
        try:
            while os.read(self.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                try:
                    conn.send(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
                except OSError:
                    pass
                conn.close()

    def _stop_children(self) -> None:
        """The session is over: gateways a test left running stop as `Gateway.stop` would stop them."""
        import time

        for sig, patience in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for pid in list(self.children):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + patience
            while self.children and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.05)


def open_descriptors() -> set[int]:
    listed = [int(fd) for fd in os.listdir("/proc/self/fd")]
    return {fd for fd in listed if _is_open(fd)}  # not the listing's own, closed by now


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def become(request: dict, log: int, inherited: set[int]):
    """In the forked child: the gateway's process as Popen would have started it; returns its entry point."""
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    for fd in open_descriptors() - inherited:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()  # unsetenv/putenv: the C library's environment too
    os.environ.update(request["env"])
    _refresh()
    argv = request["argv"]
    sys.argv = list(argv)
    sys.orig_argv = [sys.executable, *argv]
    sys.path[0] = os.path.dirname(argv[0])  # a script's folder, as for the console script
    main = types.ModuleType("__main__")
    main.__file__ = argv[0]
    sys.modules["__main__"] = main
    tools = sys.modules["mitmproxy.tools.main"]
    entry = getattr(tools, os.path.basename(argv[0]))
    main.__dict__.update({"sys": sys, entry.__name__: entry})  # the console script's globals
    sys.argv[0] = sys.argv[0].removesuffix(".exe")  # the console script's own first line
    return entry


if __name__ == "__main__":
    sys.path[0] = os.path.dirname(sys.executable)  # the console scripts' folder, not tests/helpers
    server = Server(sys.argv[1])
    child = server.serve()
    if child is None:
        sys.exit(0)
    entry = become(*child, server.inherited)
    del server, child
    sys.exit(entry())
