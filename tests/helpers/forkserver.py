"""A fork server for the e2e tests' Python programs: one process per (interpreter, preloaded modules) per test
session that has imported what the program imports when it loads (mitmdump with the addon: ~1 s; the anthropic
SDK: ~2.5 s), then forks a real process of that program per request.

    python tests/helpers/forkserver.py SOCKET FOLDER MODULE[,MODULE...]

FOLDER is the program's sys.path[0] while it imports: a console script's folder, or a script's.

tests/helpers/forkclient.py starts it and talks to it over SOCKET (a unix seqpacket socket, one JSON message
per packet). Its first connection is the session's: `hello` answers what this process read of its environment
while importing, and the server ends when that connection closes (the session ended or died), stopping any
child still running. Each later connection asks for one process: `spawn` with the command line, environment,
working directory (`python SCRIPT ARGS`: what it runs is SCRIPT) and the descriptors of its stdin, stdout and
stderr; the answer is the pid and a pidfd (signals reach that very
process, never a reused pid); when the child ends, its exit code (as `Popen.returncode` has it) follows on the
same connection, since only this process can wait for it.

The child is made what Popen would have started, at its first line: the signal handlers a fresh interpreter
has, no descriptor of this server's, the test's environment (wholly), working directory, argv, stdio (for a
shim, tests/helpers/forkshim.py, also the shell's network namespace, umask and the signals it found ignored; a
shim killed, its child is killed too); then it runs the script (a console script such as mitmdump's is one) in
a fresh `__main__`, and exits through the interpreter (atexit handlers, non-daemon threads) with the program's
exit code.

This module imports only what the programs have imported by the time they run (tests/e2e/test_forkserver.py
checks that, field by field, against processes Popen started)."""

import _signal
import os
import sys  # these three, as the rest this module uses unimported (time, _thread, marshal...), every interpreter
# has loaded before its first line: a forked program finds no module in sys.modules that it would not have

# Before anything changes them: the handlers a fresh interpreter has (SIGINT's, SIGPIPE/SIGXFSZ ignored, ...).
FRESH_HANDLERS = {s: _signal.getsignal(s) for s in _signal.valid_signals() if s not in (9, 19)}  # (KILL, STOP)


def _own_imports():
    """The server's own modules, then forgotten by sys.modules: the program imports its own if it needs them."""
    loaded = set(sys.modules)
    import json
    import selectors
    import socket

    for name in set(sys.modules) - loaded:
        del sys.modules[name]
    return json, selectors, socket


json, selectors, socket = _own_imports()
PACKET = 1 << 20


class _EnvironmentReads(os._Environ):  # type: ignore[misc,name-defined]
    """os.environ while the modules are imported: records each variable read, and who copied it whole."""

    reads = {}  # variable -> the files that read it
    copies = set()  # the files that read it whole

    def __getitem__(self, key):
        self.reads.setdefault(key, set()).add(_caller())
        return super().__getitem__(key)

    def __iter__(self):
        self.copies.add(_caller())
        return super().__iter__()


def _caller():
    frame = sys._getframe(2)
    while frame is not None:
        if not frame.f_code.co_filename.endswith(("/os.py", "<frozen os>", "/posixpath.py", "<frozen posixpath>",
                                                  "_collections_abc>", "_collections_abc.py")):
            return frame.f_code.co_filename
        frame = frame.f_back
    return "?"


def preload(modules):
    """Imports `modules`; returns what was read of the environment meanwhile."""
    import _thread

    os.environ.__class__ = _EnvironmentReads
    try:
        for name in modules:
            __import__(name)
    finally:
        os.environ.__class__ = os._Environ  # type: ignore[attr-defined]
    if _thread._count():  # a fork keeps only the forking thread: a thread started at import would be lost
        raise RuntimeError("importing started threads")
    gc = sys.modules.get("gc")  # only where the program imports it: this module imports nothing of its own
    if gc is not None:  # the imports' heap frozen before the forks, so a child's collector never walks (and
        gc.collect()  # copies) those pages; the gateway's first `settle` leaves it so (seams/collector.py)
        gc.freeze()
    reads = _EnvironmentReads.reads
    return {"reads": {k: {"value": os.environ.get(k), "by": sorted(reads[k])} for k in sorted(reads)},
            "copies": sorted(_EnvironmentReads.copies), "generators": generators(), "modules": sorted(sys.modules),
            "user_site": bool(getattr(sys.modules.get("site"), "ENABLE_USER_SITE", False))}


def generators():
    """Random generators the loaded modules hold: each seeded when its module was imported."""
    if "random" not in sys.modules:
        return []
    random = sys.modules["random"]
    return sorted(f"{name}.{attr}" for name, module in list(sys.modules.items())
                  for attr, value in list(getattr(module, "__dict__", {}).items())
                  if isinstance(value, random.Random) and not isinstance(value, random.SystemRandom))


def _refresh():
    """What importing computed from the environment, computed again from the test's: as a fresh process has it."""
    import time

    time.tzset()  # TZ: time.timezone, time.tzname, localtime()
    if "wsgiref.handlers" in sys.modules:  # BaseHandler.os_environ: a copy of the environment at import
        handlers = sys.modules["wsgiref.handlers"]
        handlers.BaseHandler.os_environ = handlers.read_environ()
    site = sys.modules.get("site")  # the user base and site folder from HOME, found at the interpreter's start
    if site is not None and site.USER_BASE is not None:
        site.USER_BASE = site.USER_SITE = None
        site.getusersitepackages()  # (with ENABLE_USER_SITE, on sys.path too: then HOME is a variable that
        # must agree, forkclient.ForkServer.must_agree)
    sysconfig = sys.modules.get("sysconfig")  # its configuration, once asked for, holds the user base (HOME)
    if sysconfig is not None and "userbase" in (getattr(sysconfig, "_CONFIG_VARS", None) or {}):
        sysconfig._CONFIG_VARS["userbase"] = sysconfig._getuserbase()
    # Generators seeded once at import from the OS (random's own module reseeds itself after a fork); the test
    # of this file checks that these are all the preloaded modules hold
    if "qwen_gateway.ids" in sys.modules:
        sys.modules["qwen_gateway.ids"]._rng.seed(os.urandom(32))


class Server:
    def __init__(self, path, modules):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(64)  # the session connects while the imports run
        self.preloaded = preload(modules)
        # stdio and what the imports opened (a fresh process has them too)
        self.inherited = open_descriptors() - {self.listener.fileno()}
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)  # only to wake the loop (set_wakeup_fd)
        self.session = None
        self.children = {}  # pid -> the connection its exit code goes to

    def serve(self):
        """Until the session's connection closes: None. In a forked child: its request and stdio descriptors."""
        with selectors.DefaultSelector() as sel:
            self.selector = sel
            sel.register(self.listener, selectors.EVENT_READ, "accept")
            sel.register(self.wakeup_r, selectors.EVENT_READ, "reap")
            while True:
                for key, _ in sel.select():
                    if key.data == "reap":
                        self._reap()
                    elif isinstance(key.data, int):  # a tied child's shim closed its connection: it was killed
                        self._shim_gone(key.fileobj, key.data)
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

    def _handle(self, conn):
        conn.settimeout(10)
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, PACKET, 3 + len(NAMESPACES))
        except OSError:
            conn.close()
            return None
        request = json.loads(data)
        if request["op"] == "hello" and self.session is None:
            self.session = conn
            conn.settimeout(None)
            conn.send(json.dumps({"pid": os.getpid(), **self.preloaded}).encode())
            return None
        if request["op"] != "spawn" or len(fds) != 3 + len(request.get("namespaces", ())):
            conn.send(json.dumps({"error": f"not a request: {request.get('op')}"}).encode())
            return self._drop(conn, fds)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as e:
            conn.send(json.dumps({"error": f"fork: {e}"}).encode())
            return self._drop(conn, fds)
        if pid == 0:
            self._leave(conn)
            return request, fds
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        if request.get("tied"):  # the shim standing for the child in a shell (forkshim.py): its end is the child's
            self.selector.register(conn, selectors.EVENT_READ, pid)
        pidfd = os.pidfd_open(pid)  # not reaped before we do: the pidfd is this child's
        try:
            socket.send_fds(conn, [json.dumps({"pid": pid}).encode()], [pidfd])
        except OSError:
            pass  # the test went away; the child is reaped all the same
        finally:
            os.close(pidfd)
        return None

    def _shim_gone(self, conn, pid):
        """Only SIGKILL ends a shim without its child's exit code (it passes every other signal on): so is the
        child ended, as the process the shim stands for would have been."""
        try:
            if conn.recv(PACKET):
                return
        except OSError:
            pass
        self.selector.unregister(conn)
        if self.children.get(pid) is conn:
            try:
                os.kill(pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass

    @staticmethod
    def _drop(conn, fds):
        conn.close()
        for fd in fds:
            os.close(fd)
        return None

    def _leave(self, conn):
        """In the child: nothing of the server's stays (its sockets, pipe, signal handlers)."""
        _signal.set_wakeup_fd(-1)
        for signum, handler in FRESH_HANDLERS.items():
            try:
                _signal.signal(signum, handler if handler is not None else _signal.SIG_DFL)
            except (OSError, ValueError):
                pass  # a signal Python may not set (e.g. SIGRTMIN+n taken by the C library)
        for s in (self.listener, conn, self.session, *self.children.values()):
            if s is not None:
                s.close()
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)

    def _reap(self):
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
                    self.selector.unregister(conn)  # a tied one's
                except KeyError:
                    pass
                try:
                    conn.send(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
                except OSError:
                    pass
                conn.close()

    def _stop_children(self):
        """The session is over: what a test left running stops as `Gateway.stop` would stop it."""
        import time

        for sig, patience in ((_signal.SIGTERM, 10.0), (_signal.SIGKILL, 5.0)):
            for pid in list(self.children):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + patience
            while self.children and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.05)


def open_descriptors():
    listed = [int(fd) for fd in os.listdir("/proc/self/fd")]
    return {fd for fd in listed if _is_open(fd)}  # not the listing's own, closed by now


def _is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


NAMESPACES = {"net": os.CLONE_NEWNET, "mnt": os.CLONE_NEWNS}


def become(request, stdio, inherited):
    """In the forked child: the process as Popen would have started it; returns what runs the program."""
    # The namespaces of the process that asked (forkshim.py: the shell's network) or of a test's namespace holder
    # (netns.py: its network and mounts, /etc/hosts): its loopback, its ports, its files
    for kind, fd in zip(request.get("namespaces", ()), stdio[3:]):
        os.setns(fd, NAMESPACES[kind])
    stdio = stdio[:3]
    for signum in request.get("ignored", ()):  # as a shell's `&` or nohup leave them for the program it starts
        _signal.signal(signum, _signal.SIG_IGN)
    if "umask" in request:
        os.umask(request["umask"])
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in open_descriptors() - inherited:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()  # unsetenv/putenv: the C library's environment too
    os.environ.update(request["env"])
    _refresh()
    argv = request["argv"]  # python SCRIPT ARGS (a console script is a script too: mitmdump's is one)
    script = argv[1]
    sys.orig_argv = list(argv)
    sys.argv = argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    from _frozen_importlib_external import SourceFileLoader  # importlib.machinery's, loaded or not

    main = type(sys)("__main__")  # the script runs in a fresh __main__, as the interpreter runs it
    main.__dict__.update(__file__=script, __cached__=None, __builtins__=__builtins__,
                         __loader__=SourceFileLoader("__main__", script))
    sys.modules["__main__"] = main
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec")
    return lambda: exec(code, main.__dict__)


if __name__ == "__main__":
    sys.path[0] = sys.argv[2]  # the program's, not tests/helpers: modules are found where it finds them
    server = Server(sys.argv[1], [m for m in sys.argv[3].split(",") if m])
    child = server.serve()
    if child is None:
        sys.exit(0)
    run = become(*child, server.inherited)
    del server, child
    sys.exit(run())
