"""Test-only mitmproxy script: once running, writes to $QWEN_TEST_SNAPSHOT what the process is made of (its
modules, environment, signal handlers, descriptors, argv...) as JSON, so that a gateway forked by the fork server
(tests/helpers/forkserver.py) can be compared with one started by Popen (tests/e2e/test_forkserver.py)."""

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


class Snapshot:
    def running(self) -> None:
        import qwen_gateway.ids
        import wsgiref.handlers

        umask = os.umask(0)
        os.umask(umask)
        snapshot = {
            "modules": sorted(sys.modules),
            "environ": dict(os.environ),
            "cwd": os.getcwd(),
            "argv": sys.argv,
            "orig_argv": sys.orig_argv,
            "path": sys.path,
            "main": getattr(sys.modules["__main__"], "__file__", None),
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
            "tzname": time.tzname,
            "userbase": sysconfig.get_config_var("userbase"),
            "wsgiref_environ": wsgiref.handlers.BaseHandler.os_environ == dict(os.environ),
            # what differs from process to process: never equal between two gateways
            "pid": os.getpid(),
            "id": qwen_gateway.ids.hex_id(),
            "random": __import__("random").random(),
        }
        path = os.environ["QWEN_TEST_SNAPSHOT"]
        with open(path + ".tmp", "w") as f:
            json.dump(snapshot, f)
        os.replace(path + ".tmp", path)


addons = [Snapshot()]
