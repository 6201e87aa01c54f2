"""A terminal log line that cannot be written is dropped, counted, and said once writing works again.

Why: mitmproxy's terminal log (`TermLogHandler.emit`, addons/termlog.py) prints each line to standard output and
calls `sys.exit(1)` at the first OSError (mitmproxy issue 4669: a terminal that went away). For a gateway whose
output is a file (`qwen-gateway … > ~/gateway.log 2>&1`, a journal that stalls, a pipe whose reader died), a
full disk then ends the process in the middle of its work: answers cut, ledger rows of the last batch lost, and
nothing served once space is back. The log is the least of what the gateway keeps: the ledger and the stores
have their own outage handling (storage/health.py), and a lost line must not take them down with it.

`install` gives mitmproxy's handler (that instance: the formatting, levels and colours stay mitmproxy's) an
output that writes each line whole with one `os.write` on the same file descriptor — no buffer in which a line
that failed could wait and come out later, so the count is exact — and never raises: a line it cannot write is
dropped and counted, and the first line written after that is followed by one saying how many were dropped and
why. Only over the code it was written against (mitmproxy 12.2.3's `TermLog` and `TermLogHandler`).

What mitmproxy change would remove it: a terminal log that drops (and counts) what it cannot write instead of
exiting — or an option saying which of the two it should do.
"""

from __future__ import annotations

import logging
import os
from typing import IO

from .fingerprint import WrittenAgainst

log = logging.getLogger("qwen")

WRITTEN = WrittenAgainst(
    seam="log lines that cannot be written dropped",
    loses="a log line that cannot be written (a full disk, a terminal or pipe gone) stops the gateway at once "
          "(exit 1), as in mitmproxy",
    code=(("mitmproxy.addons.termlog:TermLog", "262bdcb2d4aa4b06"),
          ("mitmproxy.addons.termlog:TermLogHandler", "21e393b7aff8d256")))


class DroppingOutput:
    """What mitmproxy's terminal log prints to: `print` hands it a line in two writes (the text, then "\\n");
    each whole line goes out at once, or is dropped and counted."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream  # the handler's own (standard output): others may print to it too
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self._fd = _descriptor(stream)
        self._line: list[str] = []
        self._cut = False  # a line went out in part: the next begins on a line of its own
        self.dropped = 0
        self.why = ""

    def write(self, text: str) -> int:
        self._line.append(text)
        if text.endswith("\n"):
            line, self._line = "".join(self._line), []
            self._put(line)
        return len(text)

    def flush(self) -> None:
        """Nothing waits here: each line went out (or was dropped) as it ended."""

    def _put(self, line: str) -> None:
        try:
            self._send(("\n" if self._cut else "") + line)
        except OSError as e:  # ENOSPC, EIO, EPIPE…: the line is lost, the gateway is not
            self.dropped += 1
            self.why = e.strerror or type(e).__name__
            return
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            # through the logger, so that mitmweb's event log has it too (it comes back here: a line of its own)
            log.warning(f"qwen: {dropped} log {'line' if dropped == 1 else 'lines'} could not be written "
                        f"({self.why}) and {'was' if dropped == 1 else 'were'} dropped")

    def _send(self, text: str) -> None:
        if self._fd is None:  # not a file (a test's StringIO): its own write, its own errors
            self.stream.write(text)
            self.stream.flush()
            return
        try:
            self.stream.flush()  # what others printed to the same stream goes first, in order
        except (OSError, ValueError):
            pass  # it stays in the stream's buffer: its writer's business
        data = memoryview(text.encode(self.encoding, "backslashreplace"))
        sent = 0
        try:
            while sent < len(data):
                sent += os.write(self._fd, data[sent:])
        finally:
            self._cut = 0 < sent < len(data)


def _descriptor(stream: IO[str]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both an OSError and a ValueError
        return None


def install(master: object) -> bool:
    """mitmproxy's terminal log (the `termlog` addon of mitmdump's and mitmweb's master) writes through a
    `DroppingOutput`; False, and nothing changed, when there is none, it is installed already, or this mitmproxy
    is not the code this was written against."""
    addons = getattr(master, "addons", None)
    handler = getattr(addons.get("termlog"), "logger", None) if addons is not None else None
    stream = getattr(handler, "file", None)
    if stream is None or isinstance(stream, DroppingOutput) or not WRITTEN.fits():
        return False
    handler.file = DroppingOutput(stream)  # type: ignore[union-attr]
    return True
