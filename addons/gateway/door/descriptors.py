"""File descriptors: the soft limit raised to the hard one at start, and accept() failing for want of them
logged in a few lines.

Every client connection holds a descriptor. Linux starts a process with a soft limit of 1,024 (systemd's
default for services too) under a hard limit that is commonly 524,288: 1,100 slow clients were enough to
exhaust it. The gateway raises its soft limit to the hard one when it loads — as Go programs do at start —
and its service unit asks for LimitNOFILE= (cli/service.py). Linux's epoll has no use for a low limit;
only select() does, and nothing in the gateway's process uses it.

When descriptors still run out, asyncio's accept loop fails with EMFILE. CPython 3.12.1 reports it to the
event loop's exception handler up to 100 times per turn (its accept loop goes on after the error), and
mitmproxy logs each report as a traceback: 2,048 lines in 5 s, 135,306 in 35 s. The gateway's handler takes
those reports — only those, the rest go to mitmproxy's handler as before — and logs one line per 10 s with
their count, the limit and what to do; asyncio pauses the listener and accepts again once descriptors are
free.
"""

from __future__ import annotations

import asyncio

import errno
import logging
import os
import resource

from ..logtally import LogTally

log = logging.getLogger("qwen")

LOW = 4096  # fewer descriptors than this after raising: said at start
_OUT_OF = {errno.EMFILE: "the process's open files limit", errno.ENFILE: "the system's open files limit",
           errno.ENOBUFS: "buffer space", errno.ENOMEM: "memory"}


def raise_soft_limit() -> None:
    """The soft RLIMIT_NOFILE up to the hard one (once: later calls find them equal)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.debug(f"qwen: open files limit raised from {soft} to {hard} (each client connection takes one)")
            soft = hard
    except (OSError, ValueError) as e:  # a platform that refuses (macOS with an unlimited hard limit)
        log.debug(f"qwen: open files limit left as it is: {e}")
        return
    if soft < LOW:
        log.warning(f"qwen: only {soft} open files allowed (hard limit): each client connection takes one. "
                    "Raise it: `ulimit -Hn` / LimitNOFILE= in the service unit.")


class AcceptStorms:
    """The event loop's exception handler while the gateway runs: accept() out of a resource is tallied,
    everything else goes to the handler that was there (mitmproxy's)."""

    def __init__(self, tally: LogTally) -> None:
        self.tally = tally
        self.previous = None
        self.exiting = False

    def install(self, loop) -> None:
        current = loop.get_exception_handler()
        if isinstance(current, AcceptStorms):  # a script reload: take over the one before it
            current = current.previous
        self.previous = current
        loop.set_exception_handler(self)

    def uninstall(self, loop) -> None:
        if loop.get_exception_handler() is self:
            loop.set_exception_handler(self.previous)

    def at_exit(self, loop) -> None:
        """The gateway is done: nothing is tallied any more, and what asyncio reports of the connection handlers
        it cancels at exit is dropped (see `_cancelled_handler`); the rest goes on to the handler before.
        mitmproxy puts the loop's handler back as it was when its run ends, before asyncio cancels what is left:
        then asyncio's default handler logs the report, and a filter on its logger drops it."""
        self.exiting = True
        if not any(isinstance(f, _QuietCancelledHandlers) for f in _ASYNCIO_LOG.filters):
            _ASYNCIO_LOG.addFilter(_QuietCancelledHandlers())

    def __call__(self, loop, context: dict) -> None:
        exc = context.get("exception")
        if self.exiting:
            if not _cancelled_handler(exc, context):
                self._pass_on(loop, context)
            return
        if (isinstance(exc, OSError) and exc.errno in _OUT_OF
                and str(context.get("message", "")).startswith("socket.accept() out of system resource")):
            self.tally.note(f"accept:{exc.errno}", lambda n: _line(exc, n), level=logging.ERROR)
            return
        self._pass_on(loop, context)

    def _pass_on(self, loop, context: dict) -> None:
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


_ASYNCIO_LOG = logging.getLogger("asyncio")


class _QuietCancelledHandlers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not _cancelled_handler(exc, {"message": record.getMessage()})


def _cancelled_handler(exc: object, context: dict) -> bool:
    """Python 3.12.1's StreamReaderProtocol asks a connection handler that asyncio cancelled at exit for its
    exception, which raises CancelledError into the loop's handler: a traceback for a connection accepted
    after the gateway closed the others (a storm still in the listen queue). Nothing failed."""
    return isinstance(exc, asyncio.CancelledError) and str(context.get("message", "")).startswith(
        "Exception in callback StreamReaderProtocol.connection_made")


def _line(exc: OSError, n: int) -> str:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # no descriptor needed to ask (there is none left)
    reason = exc.strerror or os.strerror(exc.errno or 0)
    return (f"qwen: cannot accept new connections: accept() failed {n} time{'s' if n != 1 else ''} with "
            f"{reason!r}, out of {_OUT_OF.get(exc.errno or 0, 'a resource')} (the open files limit is {soft}). "
            "Clients wait in the listen queue until descriptors are free: raise the limit (`ulimit -n`, "
            "LimitNOFILE= in the service unit) or close slow clients sooner (qwen_head_timeout).")
