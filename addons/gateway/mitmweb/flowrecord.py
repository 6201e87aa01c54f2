"""What the content views read of a flow: the gateway's record in `flow.metadata["qwen"]` (exchange.py's
`to_meta`) — its endpoint, route and upstream request — and which side of the exchange a message is."""

from __future__ import annotations

import json

from mitmproxy import contentviews, http


def record(meta: contentviews.Metadata) -> dict | None:
    q = meta.flow.metadata.get("qwen") if meta.flow is not None else None
    return q if isinstance(q, dict) else None


def endpoint(meta: contentviews.Metadata) -> str | None:
    """The endpoint the gateway routed the flow to ("chat.completions", "messages", …), if it did."""
    q = record(meta)
    name = q.get("endpoint") if q is not None else None
    return name if isinstance(name, str) else None


def route(meta: contentviews.Metadata) -> str | None:
    """The route of a claimed flow: its endpoint's name, or a local answer's ("models", "count_tokens", …)."""
    q = record(meta)
    name = q.get("route") if q is not None else None
    return name if isinstance(name, str) else None


def upstream(meta: contentviews.Metadata) -> dict | None:
    q = record(meta)
    up = q.get("upstream") if q is not None else None
    return up if isinstance(up, dict) and up.get("url") else None


def is_request(meta: contentviews.Metadata) -> bool:
    return isinstance(meta.http_message, http.Request)


def is_response(meta: contentviews.Metadata) -> bool:
    return isinstance(meta.http_message, http.Response)


def content_type(meta: contentviews.Metadata) -> str:
    return meta.content_type or ""


def json_object(data: bytes) -> dict:
    """A view's body as a JSON object, or the ValueError mitmweb shows when it is not one."""
    try:
        body = json.loads(data)
    except ValueError as e:
        raise ValueError("not JSON") from e
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body
