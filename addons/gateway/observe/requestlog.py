"""One readable line per gateway request in mitmproxy's log (logger "qwen", INFO):

    POST /v1/chat/completions gpt-4o→coder-model acct=default 200 est=1.2k in=1180 out=42 cached=1024 ttfb=85ms total=1.31s

mitmproxy prints it in its terminal log; `-q` (or `--set termlog_verbosity=warn`) hides it like any info line.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from mitmproxy import http
from mitmproxy.utils import asyncio_utils

from .common import cached_tokens, gateway_record, status_of
from .tokens import pending, wait_for_estimate

log = logging.getLogger("qwen")


def compact(n: int) -> str:
    """1234 -> 1.2k, 1234567 -> 1.23M; small numbers as they are."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def _num(v) -> str:
    return str(v) if isinstance(v, int) else "?"


def format_line(meta: dict, method: str, path: str) -> str:
    """The request line for one exchange record (`flow.metadata["qwen"]`). Parts whose value is unknown
    are left out, except the models, the account and the status."""
    usage = meta.get("usage") if isinstance(meta.get("usage"), dict) else {}
    status = status_of(meta)
    parts = [f"{method} {path}", f"{meta.get('model') or '?'}→{meta.get('upstream_model') or '?'}",
             f"acct={meta.get('account') or '-'}", str(status) if status is not None else "?"]
    if isinstance(meta.get("prompt_tokens_est"), int):
        parts.append(f"est={compact(meta['prompt_tokens_est'])}")
    if usage:
        parts.append(f"in={_num(usage.get('prompt_tokens'))} out={_num(usage.get('completion_tokens'))}")
        cached = cached_tokens(usage)
        if cached:
            parts.append(f"cached={cached}")
    if isinstance(meta.get("ttfb_ms"), (int, float)):
        parts.append(f"ttfb={meta['ttfb_ms']:.0f}ms")
    if isinstance(meta.get("duration_ms"), (int, float)):
        ms = meta["duration_ms"]
        parts.append(f"total={ms:.0f}ms" if ms < 1000 else f"total={ms / 1000:.2f}s")
    if meta.get("retries"):
        parts.append(f"retries={meta['retries']}")
    error = meta.get("error") if isinstance(meta.get("error"), dict) else {}
    message = meta.get("stream_error") or error.get("message")
    if error.get("code"):
        parts.append(f"error={error['code']}")
    if message:
        parts.append(repr(message if len(message) <= 100 else message[:99] + "…"))
    return " ".join(parts)


def client_path(meta: dict, flow: http.HTTPFlow) -> tuple[str, str]:
    """Method and path as the client sent them (before the gateway rerouted the request)."""
    client = meta.get("client") if isinstance(meta.get("client"), dict) else {}
    url = client.get("url")
    path = (urlsplit(url).path or "/") if isinstance(url, str) else flow.request.path.split("?", 1)[0]
    return str(client.get("method") or flow.request.method), path


class RequestLog:
    """After the gateway, in `response`/`error`: by then the gateway's record is final. When the prompt
    estimate is still being computed (huge prompts), the line waits for it (at most 5 s), off the flow."""

    def response(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    def _log(self, flow: http.HTTPFlow) -> None:
        meta = gateway_record(flow)
        if meta is None:
            return
        method, path = client_path(meta, flow)
        if pending(flow.id):
            asyncio_utils.create_task(self._log_later(flow.id, meta, method, path), name="qwen: request line",
                                      keep_ref=True)
        else:
            log.info(format_line(meta, method, path))

    @staticmethod
    async def _log_later(flow_id: str, meta: dict, method: str, path: str) -> None:
        await wait_for_estimate(flow_id)
        log.info(format_line(meta, method, path))
