"""The event loop's exception reports the gateway takes from mitmproxy: accept() out of descriptors, tallied,
and connection handlers asyncio cancels at exit, dropped. Every other report goes on as before.

Why: when descriptors run out, asyncio's accept loop fails with EMFILE; CPython 3.12.1 reports it to the event
loop's exception handler up to 100 times per turn (its accept loop goes on after the error), and mitmproxy's
handler (`Master._asyncio_exception_handler`, installed for its run) logs each report as a traceback: 2,048
lines in 5 s, 135,306 in 35 s. The gateway's handler, in front of mitmproxy's on the running loop, takes those
reports — only those — and logs one line per 10 s with their count, the limit and what to do; asyncio pauses
the listener and accepts again once descriptors are free. At exit, Python 3.12.1's StreamReaderProtocol asks
a connection handler that asyncio cancelled for its exception, which reports a CancelledError: a traceback
for a connection accepted after the gateway closed the others (a storm still in the listen queue), though
nothing failed. mitmproxy's run puts the loop's handler back as it was when it ends, before asyncio cancels
what is left; so after the gateway's `done` that one report is also dropped from asyncio's own logger (a
filter matching it alone).

What mitmproxy change would remove it: its exception handler summarising `socket.accept() out of system
resource` reports (a count per period instead of a traceback each) and ignoring CancelledError reports at
exit — or keeping its handler until asyncio has cancelled the tasks left.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource

from ..log_tally import LogTally
from .fingerprint import WrittenAgainst

WRITTEN = WrittenAgainst(
    seam="accept() storms tallied and cancelled connection handlers quiet at exit",
    loses="mitmproxy logs each accept() failing for want of descriptors as a traceback (thousands of lines a "
          "second when they run out), and a connection handler cancelled at exit may print one",
    code=(("mitmproxy.master:Master.run", "45c44c14f8f79349"),
          ("mitmproxy.master:Master._asyncio_exception_handler", "822415006521e79e"),
          ("mitmproxy.utils.asyncio_utils:install_exception_handler", "3ad1e518c2433fdd")))

_OUT_OF = {errno.EMFILE: "the process's open files limit", errno.ENFILE: "the system's open files limit",
           errno.ENOBUFS: "buffer space", errno.ENOMEM: "memory"}


class AcceptStorms:
    """The event loop's exception handler while the gateway runs: accept() out of a resource is tallied,
    everything else goes to the handler that was there (mitmproxy's)."""

    def __init__(self, tally: LogTally) -> None:
        self.tally = tally
        self.previous = None
        self.exiting = False

    def install(self, loop) -> bool:
        """In front of the loop's handler (mitmproxy's, for its run); False, and nothing changed, on a mitmproxy
        this was not written against."""
        if not WRITTEN.fits():
            return False
        current = loop.get_exception_handler()
        if isinstance(current, AcceptStorms):  # a script reload: take over the one before it
            current = current.previous
        self.previous = current
        loop.set_exception_handler(self)
        return True

    def uninstall(self, loop) -> None:
        if loop.get_exception_handler() is self:
            loop.set_exception_handler(self.previous)

    def at_exit(self, loop) -> None:
        """The gateway is done: nothing is tallied any more, and what asyncio reports of the connection handlers
        it cancels at exit is dropped (see `_cancelled_handler`); the rest goes on to the handler before.
        mitmproxy puts the loop's handler back as it was when its run ends, before asyncio cancels what is left:
        then asyncio's default handler logs the report, and a filter on its logger drops it."""
        self.exiting = True
        if WRITTEN.fits() and not any(isinstance(f, _QuietCancelledHandlers) for f in _ASYNCIO_LOG.filters):
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
    """The report of a connection handler asyncio cancelled (Python 3.12.1's StreamReaderProtocol asks it for its
    exception, which raises CancelledError into the loop's handler). Nothing failed."""
    return isinstance(exc, asyncio.CancelledError) and str(context.get("message", "")).startswith(
        "Exception in callback StreamReaderProtocol.connection_made")


def _line(exc: OSError, n: int) -> str:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # no descriptor needed to ask (there is none left)
    reason = exc.strerror or os.strerror(exc.errno or 0)
    return (f"qwen: cannot accept new connections: accept() failed {n} time{'s' if n != 1 else ''} with "
            f"{reason!r}, out of {_OUT_OF.get(exc.errno or 0, 'a resource')} (the open files limit is {soft}). "
            "Clients wait in the listen queue until descriptors are free: raise the limit (`ulimit -n`, "
            "LimitNOFILE= in the service unit) or close slow clients sooner (qwen_head_timeout).")
