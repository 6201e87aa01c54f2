"""One readable line per gateway request in mitmproxy's log."""

from __future__ import annotations

import logging

from mitmproxy import http

log = logging.getLogger("qwen")


def _k(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def format_line(meta: dict, method: str, path: str) -> str:
    usage = meta.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    parts = [f"{method} {path}", f"{meta.get('model') or '?'}→{meta.get('upstream_model') or '?'}",
             f"acct={meta.get('account') or '-'}", str(meta.get("status") or (meta.get("error") or {}).get("status")
                                                       or "?")]
    if meta.get("prompt_tokens_est") is not None:
        parts.append(f"est={_k(meta['prompt_tokens_est'])}")
    if usage:
        parts.append(f"in={_k(usage.get('prompt_tokens'))} out={_k(usage.get('completion_tokens'))}"
                     + (f" cached={_k(cached)}" if cached else ""))
    if meta.get("ttfb_ms") is not None:
        parts.append(f"ttfb={meta['ttfb_ms']:.0f}ms")
    if meta.get("duration_ms") is not None:
        parts.append(f"total={meta['duration_ms'] / 1000:.2f}s")
    if meta.get("retries"):
        parts.append(f"retries={meta['retries']}")
    err = meta.get("stream_error") or (meta.get("error") or {}).get("message")
    if err:
        parts.append(f"error={err[:120]!r}")
    return " ".join(parts)


class RequestLog:
    def response(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    @staticmethod
    def _log(flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get("qwen")
        if isinstance(meta, dict) and meta.get("endpoint"):
            client = meta.get("client") or {}
            path = client.get("url", flow.request.path).split("://", 1)[-1]
            path = "/" + path.split("/", 1)[1] if "/" in path else path
            log.info(format_line(meta, client.get("method", flow.request.method), path))
