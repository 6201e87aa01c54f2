"""One readable line per exchange in mitmproxy's log (logger "qwen", INFO) — every request the gateway
claims, forwarded or answered by the gateway itself:

    POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=1.2k in=1180 out=42 cached=1024 \
        ttfb=85ms total=1.31s                                              (one line in the log)
    POST /v1/chat/completions gpt-4o→? acct=- 503 total=2ms error=no_usable_account 'No Qwen account can …'
    GET /v1/models route=models 200 total=0ms

and one for every flow the gateway lets pass (explicit proxy and the other modes: hosts it does not
intercept), which mitmproxy's own flow lines would otherwise be the only trace of — they are off by
default (flow_detail 0). The URL without its query (a query may carry a key), never a header:

    GET http://example.com/page passed 200 total=41ms
    GET http://127.0.0.1:9/x passed 502 total=1ms error="[Errno 111] Connect call failed ('127.0.0.1', 9)"
    GET http://example.com/ refused 403 total=0ms        (client keys set, qwen_allow_passthrough off)

mitmproxy prints it in its terminal log; `-q` (or `--set termlog_verbosity=warn`) hides it like any info line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from mitmproxy import flow as mflow
from mitmproxy.log import LegacyLogEvents
from mitmproxy.net.http import url

from ..errors import MITMPROXY_REFUSED
from ..cache_usage import read as read_cache
from ..exchange import RetryReason
from ..jsonio import valid_text
from ..observer import (Observer, endpoint_name, error_code, error_text, own_api,
                        status_of)
from ..pricing.prices import UNPRICED, USAGE_UNKNOWN, USD, usd
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
        parts.append(f"{ex.requested_model or '?'}→{ex.attempt.model or '?'}")
        if ex.attempt.route:  # a route moved the model (qwen_routes): why
            parts.append(f"(route: {ex.attempt.route})")
        if ex.attempt.fallback:  # a fallback group's model answered (qwen_fallbacks): the ones refused
            parts.append(f"(fallback: {', '.join(r.model for r in ex.attempt.refusals)} refused)")
        parts.append(f"acct={ex.account or '-'}")
        if own_api(ex):  # an option sent it in its client's own API (qwen_responses_native, …), not translated
            parts.append(f"via={own_api(ex)}")
        if ex.fixed:  # what qwen_cache_fixes changed
            parts.append(f"fixed={','.join(ex.fixed)}")
    else:
        parts.append(f"route={ex.route}")
    if ex.key.name:  # a named client key (qwen-keys): its name, never the key
        parts.append(f"key={ex.key.name}")
    status = status_of(ex)
    parts.append(str(status) if status is not None else "?")
    if ex.count.tokens is not None:
        parts.append(f"est={compact(ex.count.tokens)}")
    usage = ex.result.usage if isinstance(ex.result.usage, dict) else {}
    if usage:
        parts.append(f"in={_num(usage.get('prompt_tokens'))} out={_num(usage.get('completion_tokens'))}")
        cached, written, _, _ = read_cache(usage)
        if cached:
            parts.append(f"cached={cached}")
        if written:
            parts.append(f"cache_write={written}")
    if ex.result.cost is not None:
        parts.append(f"cost={usd(ex.result.cost)}" if ex.result.cost_unit == USD else f"cost={ex.result.cost:g} {ex.result.cost_unit}")
        if ex.result.priced_as:  # qwen_unpriced_as's price counted it
            parts.append(f"priced_as={ex.result.priced_as}")
        if ex.result.priced_by:  # the account's own list from Qwen priced it: which tier
            parts.append("priced_by=qwen-list:" + ex.result.priced_by.rpartition(": ")[2].replace(" ", "_"))
    elif ex.result.cost_unit == UNPRICED:  # nothing prices it: unknown, never $0
        parts.append("cost=unpriced")
    elif ex.result.cost_unit == USAGE_UNKNOWN:  # Qwen said nothing of its usage: unknown, never 0
        parts.append("usage=unknown cost=unknown")
    if ex.ttfb_ms is not None:
        parts.append(f"ttfb={ex.ttfb_ms:.0f}ms")
    ms = ex.duration_ms
    parts.append(f"total={ms:.0f}ms" if ms < 1000 else f"total={ms / 1000:.2f}s")
    if ex.result.cuts:  # Qwen's stream broke: continued (below), or ended in the error that follows
        parts.append(f"cut={ex.result.cuts}")
    if ex.attempt.retries:
        parts.append(f"retries={len(ex.attempt.retries)}")
        if continued := sum(r.reason is RetryReason.CONTINUED for r in ex.attempt.retries):  # a broken stream mended
            parts.append(f"continued={continued}")
    code, message = error_code(ex), safe_message(error_text(ex), MESSAGE_CHARS)
    if code:
        parts.append(f"error={code}")
    if message:
        parts.append(repr(message))
    return valid_text(" ".join(parts))  # a client's model name may hold a lone surrogate: no printable line


def format_passed(flow: http.HTTPFlow) -> str | None:
    """The line of a flow the gateway did not claim: passed to its host, or refused (pass-through off);
    None for one mitmproxy killed (the gateway's connection policy did)."""
    if flow.error is not None and flow.error.msg == mflow.Error.KILLED_MESSAGE:
        return None
    req = flow.request
    host = f"[{req.host}]" if ":" in req.host else req.host  # where it went (not the Host header)
    if req.port != url.default_port(req.scheme):
        host += f":{req.port}"
    parts = [f"{req.method} {req.scheme}://{host}{req.path.split('?', 1)[0]}"]
    if flow.response is not None and flow.server_conn.timestamp_start is None:
        # answered before any server was asked: the gateway's own refusal (client keys, no pass-through)
        parts.append("refused" if flow.response.status_code >= 400 else "answered")
    elif flow.response is None and MITMPROXY_REFUSED in flow.metadata:
        parts.append("refused")  # mitmproxy refused the request itself (a CONNECT in reverse mode)
    else:
        parts.append("passed")
    if flow.response is not None:
        parts.append(str(flow.response.status_code))
        end = flow.response.timestamp_end
    elif MITMPROXY_REFUSED in flow.metadata:
        parts.append(str(flow.metadata[MITMPROXY_REFUSED]))
        end = None
    else:  # mitmproxy answered 502 itself when it could not connect (ErrorCode.CONNECT_FAILED)
        parts.append("502" if flow.server_conn.timestamp_tcp_setup is None and flow.error is not None else "?")
        end = None
    if flow.error is not None:
        end = end or flow.error.timestamp
    ms = ((end or time.time()) - req.timestamp_start) * 1000
    parts.append(f"total={ms:.0f}ms" if ms < 1000 else f"total={ms / 1000:.2f}s")
    if flow.error is not None:
        parts.append(f"error={safe_message(flow.error.msg, MESSAGE_CHARS)!r}")
    return " ".join(parts)


def passed(flow: http.HTTPFlow) -> None:
    """From the addon's response/error hooks, for a flow it did not claim: the line once mitmproxy has
    handed the answer to the client (the hook runs before it does)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop (a script, a test): now
        _log_passed(flow)
        return
    loop.call_soon(_log_passed, flow)


def _log_passed(flow: http.HTTPFlow) -> None:
    try:
        if _shown() and (line := format_passed(flow)) is not None:
            log.info(line, extra=_MARK)
    except Exception:
        log.exception("qwen: could not write a pass-through line")


class RequestLine(Observer):
    """In `finished`: the gateway has waited for the prompt estimate, so the line has it.

    mitmproxy hands every log record to its deprecated `add_log` event too: a thread-safe wake-up of the
    event loop and a call into every addon, for each line. The line skips that bridge (a filter on it)
    and is not even formatted when no other handler would show it (`-q`, termlog_verbosity=warn)."""

    waits_for_estimate = True
    counts_bills = True  # a batch's bill gets its line too

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
