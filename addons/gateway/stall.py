"""Ending a stream whose upstream went silent.

mitmproxy cannot kill a flow in transit (mitmproxy#4711: `flow.kill()` is only noticed at the
next hook), and its own inactivity timeout (`tcp_timeout`, 600 s) counts the whole client
connection. So the gateway closes the stalled upstream connection itself: mitmproxy then ends
the client's response at once instead of leaving it waiting.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http

log = logging.getLogger("qwen")


def close_upstream(flow: http.HTTPFlow) -> bool:
    """Close the flow's server connection; True if a live one was found and closed."""
    ps = ctx.master.addons.get("proxyserver")
    handler = getattr(ps, "connections", {}).get(flow.client_conn.id) if ps else None
    io = getattr(handler, "transports", {}).get(flow.server_conn) if handler else None
    task = getattr(io, "handler", None)
    if task is None or task.done():
        return False
    task.cancel("qwen: upstream stream idle")
    return True
