"""What the gateway prints in mitmproxy's terminal besides its request lines: which accounts it loaded, that
it stopped, and no credential in any line — mitmproxy's own included.

mitmproxy's protocol debug (`--set proxy_debug=true` with `termlog_verbosity=debug`) prints the raw bytes
clients send, five times per request (once per layer), repr'd: an unchanged client's real key in its
`Authorization` header among them. A filter on every handler of the root logger (where mitmproxy's
terminal, its event log and mitmweb's log listen) rewrites each record's message with the secrets out
before any handler formats it. Output that does not go through `logging` (mitmdump's flow dump at
`flow_detail` 3 or more) is the user's explicit choice and left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..redact import redact_log

log = logging.getLogger("qwen")


class Redacting(logging.Filter):
    """Every record's message, redacted once (a record meets several handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "qwen_redacted", False):
            return True
        record.__dict__["qwen_redacted"] = True
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken format string: the handler reports it as it would have
        clean = redact_log(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


REDACTING = Redacting()


def keep_secrets_out_of_logs() -> None:
    """Called at load and at running: handlers installed in between get the filter too."""
    for handler in logging.getLogger().handlers:
        if REDACTING not in handler.filters:
            handler.addFilter(REDACTING)


def describe_accounts(describe: Callable[[], Iterable[str]] | None) -> None:
    """At start-up: which accounts were loaded, and a warning when none is usable."""
    if not callable(describe):
        return
    try:
        for line in describe():
            (log.warning if line.startswith("WARNING") else log.info)(f"qwen: {line}")
    except Exception:
        log.exception("qwen: could not list the accounts")


def stopped(closed: int) -> None:
    """The last line: the gateway stopped (and closed the client connections still open)."""
    if closed:
        log.info(f"qwen: gateway stopped (closed {closed} open client connection{'s' if closed > 1 else ''})")
    else:
        log.info("qwen: gateway stopped")
