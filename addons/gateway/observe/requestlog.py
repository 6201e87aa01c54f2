"""One readable line per exchange in mitmproxy's log (logger "qwen", INFO) — every request the gateway
claims, forwarded or answered by the gateway itself:

    POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=1.2k in=1180 out=42 cached=1024 \
        ttfb=85ms total=1.31s                                              (one line in the log)
    POST /v1/chat/completions gpt-4o→? acct=- 503 total=2ms error=no_usable_account 'No Qwen account can …'
    GET /v1/models route=models 200 total=0ms

mitmproxy prints it in its terminal log; `-q` (or `--set termlog_verbosity=warn`) hides it like any info line.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mitmproxy.log import LegacyLogEvents

from ..observer import Observer, cached_tokens, endpoint_name, error_code, error_text, status_of
from ..redact import safe_message

if TYPE_CHECKING:
    from mitmproxy import http

    from ..exchange import Exchange

log = logging.getLogger("qwen")
MESSAGE_CHARS = 100  # an error message is cut here: the line stays one line


def compact(n: int) -> str:
    """1234 -> 1.2k, 1234567 -> 1.23M; small numbers as they are."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def _num(v) -> str:
    return str(v) if isinstance(v, int) else "?"


def format_line(ex: Exchange) -> str:
    """The request line of one exchange. API requests name the models and the account (also when the
    gateway refused them before asking Qwen); local answers name their route. Unknown parts are left out,
    except the models, the account and the status."""
    parts = [f"{ex.client.method} {ex.client.path}"]
    if endpoint_name(ex) is not None:
        parts += [f"{ex.requested_model or '?'}→{ex.upstream_model or '?'}", f"acct={ex.account or '-'}"]
    else:
        parts.append(f"route={ex.route}")
    status = status_of(ex)
    parts.append(str(status) if status is not None else "?")
    if ex.prompt_tokens_est is not None:
        parts.append(f"est={compact(ex.prompt_tokens_est)}")
    usage = ex.usage if isinstance(ex.usage, dict) else {}
    if usage:
        parts.append(f"in={_num(usage.get('prompt_tokens'))} out={_num(usage.get('completion_tokens'))}")
        cached = cached_tokens(usage)
        if cached:
            parts.append(f"cached={cached}")
    if ex.ttfb_ms is not None:
        parts.append(f"ttfb={ex.ttfb_ms:.0f}ms")
    ms = ex.duration_ms
    parts.append(f"total={ms:.0f}ms" if ms < 1000 else f"total={ms / 1000:.2f}s")
    if ex.retries:
        parts.append(f"retries={len(ex.retries)}")
    code, message = error_code(ex), safe_message(error_text(ex), MESSAGE_CHARS)
    if code:
        parts.append(f"error={code}")
    if message:
        parts.append(repr(message))
    return " ".join(parts)


class RequestLine(Observer):
    """In `finished`: the gateway has waited for the prompt estimate, so the line has it.

    mitmproxy hands every log record to its deprecated `add_log` event too: a thread-safe wake-up of the
    event loop and a call into every addon, for each line. The line skips that bridge (a filter on it)
    and is not even formatted when no other handler would show it (`-q`, termlog_verbosity=warn)."""

    waits_for_estimate = True

    def running(self) -> None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, LegacyLogEvents) and _skip_add_log not in handler.filters:
                handler.addFilter(_skip_add_log)

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        if _shown():
            log.info(format_line(ex), extra=_MARK)


_MARK = {"qwen_request_line": True}


def _skip_add_log(record: logging.LogRecord) -> bool:
    return not getattr(record, "qwen_request_line", False)


def _shown() -> bool:
    """Whether a handler other than mitmproxy's add_log bridge takes an INFO line from the "qwen" logger."""
    if not log.isEnabledFor(logging.INFO):
        return False
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            if handler.level <= logging.INFO and not isinstance(handler, LegacyLogEvents):
                return True
        logger = logger.parent if logger.propagate else None
    return False
