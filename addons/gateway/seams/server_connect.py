"""mitmproxy's server connect, able to reach a server inside the gateway's process (turn/in_process.py).

Why: mitmproxy streams only what a server connection delivers, so a streamed answer goes through the relay,
a server in the gateway's own event loop. mitmproxy opens every server connection in one place,
`ConnectionHandler.open_connection` (mitmproxy/proxy/server.py), with `asyncio.open_connection(*address,
local_addr=...)`, and no hook can hand it a connection of the addon's own. So that one method — its code
mitmproxy's own, unchanged — gets an `asyncio` of its own, whose `open_connection` is the gateway's (which
answers the relay's `.invalid` address in-process and passes any other to asyncio's). Nothing else sees a
difference: asyncio, mitmproxy's other code, the engine's HTTP client, other addons. Installed while an
in-process server listens, removed with the last one. (The method's globals are a copy of server.py's taken
when it is installed, `asyncio` alone changed; its other lookups of asyncio go to asyncio itself.)

What mitmproxy change would remove it: a way for an addon to supply a server connection's streams, e.g. the
`server_connect` hook accepting a transport (or an opener) on `ServerConnectionHookData`.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy.proxy import server

from .fingerprint import WrittenAgainst

WRITTEN = WrittenAgainst(
    seam="in-process connections to the stream relay",
    loses="the relay listens on 127.0.0.1 instead: a TCP connect per stream, a socket hop per event, and a "
          "client that leaves before Qwen's first byte is noticed only at that byte",
    code=(("mitmproxy.proxy.server:ConnectionHandler.open_connection", "5e0b3cbaf7a4030a"),))

Opener = Callable[..., Awaitable[tuple[Any, Any]]]  # asyncio.open_connection's signature


class _Asyncio:
    """asyncio as mitmproxy's server connect sees it: asyncio, but for `open_connection`."""

    def __init__(self, open_connection: Opener) -> None:
        self.open_connection = open_connection

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


_mitmproxys: Callable | None = None  # ConnectionHandler.open_connection as mitmproxy has it, while replaced


def install(open_connection: Opener) -> bool:
    """mitmproxy's server connect calls `open_connection` where it called asyncio's; False (nothing changed)
    on a mitmproxy this was not written against."""
    global _mitmproxys
    if _mitmproxys is None:
        if not WRITTEN.fits():
            return False
        _mitmproxys = server.ConnectionHandler.open_connection
    own = types.FunctionType(_mitmproxys.__code__, {**_mitmproxys.__globals__, "asyncio": _Asyncio(open_connection)},
                             _mitmproxys.__name__, _mitmproxys.__defaults__, _mitmproxys.__closure__)
    own.__qualname__, own.__doc__ = _mitmproxys.__qualname__, _mitmproxys.__doc__
    server.ConnectionHandler.open_connection = own  # type: ignore[method-assign]
    return True


def uninstall() -> None:
    """mitmproxy's own server connect back."""
    global _mitmproxys
    if _mitmproxys is not None:
        server.ConnectionHandler.open_connection = _mitmproxys  # type: ignore[method-assign]
        _mitmproxys = None

