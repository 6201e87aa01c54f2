"""What a process is made of (its modules and where each came from, environment, signal handlers, descriptors,
argv...), as JSON, so that a process forked by a fork server (tests/helpers/forkserver.py) can be compared with
one Popen started (tests/e2e/test_forkserver.py). Two ways to run it:

- a mitmproxy script (`-s`): once running, writes the snapshot to $QWEN_TEST_SNAPSHOT;
- a program, `python process_snapshot.py MODULE...`: imports the modules (what a program imports first), then
  prints the snapshot."""

import json
import os
import re
import resource
import signal
import sys
import sysconfig
import threading
import time


def _descriptor(fd: str) -> str:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "gone"
    return re.sub(r"\[\d+\]$", "", target)  # a socket's or pipe's inode differs from process to process


def _handler(h) -> str:
    return getattr(h, "__qualname__", None) or repr(h)


def take() -> dict:
    import random
    import wsgiref.handlers

    try:
        from qwen_gateway.ids import hex_id
    except ImportError:
        hex_id = None
    umask = os.umask(0)
    os.umask(umask)
    main = sys.modules["__main__"]
    return {
        "modules": {name: getattr(m, "__file__", None) for name, m in sorted(sys.modules.items())},
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "orig_argv": sys.orig_argv,
        "executable": sys.executable,
        "path": sys.path,
        "main": [getattr(main, "__file__", None), type(getattr(main, "__loader__", None)).__name__,
                 getattr(main, "__spec__", None) is None],
        "signals": {str(int(s)): _handler(signal.getsignal(s)) for s in signal.valid_signals()
                    if s not in (signal.SIGKILL, signal.SIGSTOP)},
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "descriptors": sorted(_descriptor(fd) for fd in os.listdir("/proc/self/fd")),
        "threads": sorted(t.name for t in threading.enumerate()),
        "stdout": [sys.stdout.encoding, sys.stdout.line_buffering, sys.stdout.isatty()],
        "stderr": [sys.stderr.encoding, sys.stderr.line_buffering],
        "flags": list(sys.flags),
        "umask": umask,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "process_group_is_session_leader": os.getpgrp() == os.getpid(),
        "netns": os.readlink("/proc/self/ns/net"),
        "mntns": os.readlink("/proc/self/ns/mnt"),
        "hosts": open("/etc/hosts").read(),
        "tzname": time.tzname,
        "userbase": sysconfig.get_config_var("userbase"),
        "site": [getattr(sys.modules.get("site"), a, None) for a in ("ENABLE_USER_SITE", "USER_BASE", "USER_SITE")],
        "wsgiref_environ": wsgiref.handlers.BaseHandler.os_environ == dict(os.environ),
        # what differs from process to process: never equal between two processes
        "pid": os.getpid(),
        "id": hex_id() if hex_id else None,
        "random": random.random(),
    }


class Snapshot:
    def running(self) -> None:
        path = os.environ["QWEN_TEST_SNAPSHOT"]
        with open(path + ".tmp", "w") as f:
            json.dump(take(), f)
        os.replace(path + ".tmp", path)


addons = [Snapshot()]

if __name__ == "__main__":
    import importlib

    for name in sys.argv[1:]:
        importlib.import_module(name)
    print(json.dumps(take()))
