"""A Responses WebSocket's flow in mitmproxy (socket.py): whether a request is an upgrade, whether mitmproxy serves
WebSockets at all, and what of the socket's messages the flow keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mitmproxy import http

KEEP_FLOW_MESSAGES = 200  # WebSocket messages kept on the flow (mitmproxy keeps every one otherwise)
KEEP_MESSAGE_BYTES = 256 << 10  # of a message kept on the flow once relayed (Codex's first turn: ~70 KB)


def is_upgrade(flow: http.HTTPFlow) -> bool:
    """A WebSocket upgrade request."""
    req = flow.request
    return req.method.upper() == "GET" and req.headers.get("upgrade", "").lower() == "websocket"


def trim_messages(flow: http.HTTPFlow) -> None:
    """mitmproxy keeps every WebSocket message on the flow for the connection's lifetime; a long Codex
    session sends thousands of events per turn. Keep the newest, and of each message already relayed (all but
    the newest) at most KEEP_MESSAGE_BYTES: 200 messages of up to qwen_max_body_mb each were held otherwise."""
    ws = flow.websocket
    if ws is None:
        return
    messages = ws.messages
    if len(messages) > 2 * KEEP_FLOW_MESSAGES:
        del messages[:-KEEP_FLOW_MESSAGES]
    if len(messages) > 1:
        _cut(messages[-2])


def trim_ended(flow: http.HTTPFlow) -> None:
    """The socket ended: the newest message is cut as the older ones were. mitmproxy's flow lives on in reference
    cycles until Python's collector runs (seconds, or never on an idle gateway): a closed socket's newest message
    of up to qwen_max_body_mb was held that long, and connection after connection added up."""
    for message in flow.websocket.messages[-2:] if flow.websocket else ():
        _cut(message)


def _cut(message) -> None:
    if len(relayed := message.content) > KEEP_MESSAGE_BYTES:
        kept = relayed[:KEEP_MESSAGE_BYTES]
        if message.is_text:
            kept = kept.decode("utf-8", "ignore").encode()  # whole characters
        message.content = kept + b" ... (%d bytes; the rest is not kept on the flow)" % len(relayed)


def websockets_on() -> bool:
    """mitmproxy's `websocket` option (True without a running mitmproxy: unit tests)."""
    try:
        from mitmproxy import ctx
        return bool(ctx.options.websocket)
    except (AttributeError, KeyError):
        return True
