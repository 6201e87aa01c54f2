"""WebSocket messages held to a size limit inside mitmproxy's WebSocket layer, on the gateway's own WebSockets
(the Responses WebSocket, turn/socket.py; the limit is qwen_max_body_mb).

Why: mitmproxy's WebSocket layer (`WebsocketLayer`, mitmproxy/proxy/layers/websocket.py) relays a message only
once it is whole. It appends each read of a frame's payload to a bytes object (`frame_buf[-1] += data`: a copy
of everything so far per read, quadratic) and a new one per frame, and hands the message to the
`websocket_message` hook when its last frame ends. No option bounds it, and no hook runs before: a 100 MB text
frame took 75 to 175 s of CPU and hundreds of MB before the gateway's server behind mitmproxy saw a byte of it.

`install` wraps the layer's first state (`start`) on the class, once per process. A layer whose flow goes to the
gateway's WebSocket server (`Bound.owns`) then relays through `_relay` instead of `relay_messages`; every other
WebSocket keeps mitmproxy's code, untouched. `_relay` calls mitmproxy's `relay_messages` for each event. Before
it reads the client's bytes, the frame being gathered is made a bytearray, which mitmproxy's `+=` extends in
place (linear); after, what the message holds so far — its payload, and FRAME_COST for each frame, which is
what a frame costs to hold however small — is compared with the limit. Over it, the client is sent the
gateway's error event (`Bound.refusal`, in the Responses WebSocket's format) and a close with 1009 (message too
big), the server side is closed, the flow ends as a closed WebSocket does (`websocket_end`), and what the client
still sends is read and dropped, at most DISCARD_LIMIT, so that a client that writes its whole message before it
reads still reads the refusal; then its connection is closed. Nothing of the refused message is kept. The same
size is handed to `Bound.gathering`, which counts it in the gateway's budget of bytes read ahead of turns and may
refuse it the same way, with its own error event and close code.

Not public API, and why: the gateway could answer its sockets' upgrade so that mitmproxy relays them as raw
TCP (`flow.websocket = None` in the `response` hook: its `rawtcp` layer), and bound messages in its own server;
but the flow would end at the 101 — the turns recorded on it, its messages in mitmweb and in `-w` files, other
addons' `websocket_message` hooks, all gone — and `rawtcp=false` would close every socket.

What mitmproxy change would remove it: a limit on a WebSocket message in `WebsocketLayer` (an option like
`body_size_limit`, answered with a close 1009 — the error event would then be an addon's business), and a frame
buffer that grows in place (mitmproxy.proxy.utils.ReceiveBuffer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import wsproto.events
from mitmproxy import http, websocket
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers import websocket as ws_layer
from wsproto import ConnectionState
from wsproto.frame_protocol import Opcode

from .fingerprint import WrittenAgainst

DEFAULT_LIMIT = 32 << 20
FRAME_COST = 64  # bytes a frame costs to hold beyond its payload (a bytes object and its list slot in mitmproxy)
DISCARD_LIMIT = 256 << 20  # what a refused client may still send, read and dropped, before its connection closes
TOO_BIG = 1009  # RFC 6455: message too big

WRITTEN = WrittenAgainst(
    seam="WebSocket messages bounded in mitmproxy's WebSocket layer",
    loses="a Responses WebSocket message is gathered whole by mitmproxy (quadratically) before the gateway's "
          "server refuses it at qwen_max_body_mb: memory and time grow with what the client sends",
    # the classes as shipped, and the two states as found on the class (another addon may have replaced one)
    code=(("mitmproxy.proxy.layers.websocket:WebsocketLayer", "094cd5f8cf031433"),
          ("mitmproxy.proxy.layers.websocket:WebsocketConnection", "9c6f5dd6ece0042e"),
          ("mitmproxy.proxy.layers.websocket:WebsocketLayer._handle_event", "8445ad1cfb2fcca5"),
          ("mitmproxy.proxy.layers.websocket:WebsocketLayer.relay_messages", "2d451252c7287da0")))


@dataclass(frozen=True)
class Bound:
    size: int = DEFAULT_LIMIT  # bytes a message may hold (its payload and FRAME_COST per frame)
    owns: Callable[[http.HTTPFlow], bool] = lambda flow: False  # a flow to the gateway's own WebSocket server
    refusal: Callable[[http.HTTPFlow], str] | None = None  # the text message the client reads before the close
    # the connection's next message holds this much so far: None, or (close code, text message) to refuse it (the
    # gateway's budget of bytes read ahead of turns: turn/socket_budget.py)
    gathering: Callable[[http.HTTPFlow, int], tuple[int, str] | None] = lambda flow, size: None


_bound = Bound()
_original: dict[str, Callable] = {}


def install(bound: Bound) -> bool:
    """Bound the gateway's WebSockets from now on (called from `configure`; the class is wrapped once, later
    calls only change the bound). False on a mitmproxy whose WebSocket layer this was not written against:
    nothing changed."""
    global _bound
    _bound = bound
    if _original:
        return True
    if not WRITTEN.fits():
        return False
    layer = ws_layer.WebsocketLayer
    _original["start"] = layer.__dict__["_handle_event"]  # the first state (`_handle_event = start`)
    _original["relay"] = layer.__dict__["relay_messages"]
    layer._handle_event = _start
    return True


def installed() -> bool:
    return bool(_original)


def _start(self, event):
    yield from _original["start"](self, event)
    if self._handle_event == self.relay_messages and _bound.owns(self.flow):
        self._handle_event = partial(_relay, self, _Held())


class _Held:
    """What the client's message being gathered holds: counted as frames are added (frame_buf only grows until
    mitmproxy starts a new list for the next message), so each read costs what it added."""

    __slots__ = ("frames", "counted", "size")

    def __init__(self) -> None:
        self.frames: list = []  # the list counted (mitmproxy's frame_buf)
        self.counted = 0  # its finished frames counted in `size`
        self.size = 0

    def now(self, frames: list) -> int:
        if frames is not self.frames:  # a new message began
            self.frames, self.counted, self.size = frames, 0, 0
        while self.counted < len(frames) - 1:
            self.size += len(frames[self.counted]) + FRAME_COST
            self.counted += 1
        return self.size + len(frames[-1]) + FRAME_COST


def _relay(self, held: _Held, event):
    """mitmproxy's relay_messages, with the client's message bounded (see the module's docstring)."""
    from_client = isinstance(event, events.DataReceived) and event.connection == self.context.client
    if from_client:
        frames = self.client_ws.frame_buf
        if type(frames[-1]) is bytes:
            frames[-1] = bytearray(frames[-1])  # extended in place by mitmproxy's `+=` from now on
    yield from _original["relay"](self, event)
    if not from_client or getattr(self._handle_event, "func", None) is not _relay:
        return  # (no longer relaying: somebody closed meanwhile)
    size = held.now(self.client_ws.frame_buf)
    if size > _bound.size:
        text = _bound.refusal(self.flow) if _bound.refusal is not None else None
        yield from _refuse(self, TOO_BIG, "message too big", text)
    elif (refused := _bound.gathering(self.flow, size)) is not None:
        yield from _refuse(self, refused[0], "read-ahead limit", refused[1])


def _refuse(self, code: int, reason: str, text: str | None):
    flow, client, server = self.flow, self.client_ws, self.server_ws
    client.frame_buf = [b""]  # what was gathered goes now
    record = flow.websocket
    if record is not None:
        record.timestamp_end, record.closed_by_client = time.time(), False
        record.close_code, record.close_reason = code, reason
    if client.state is ConnectionState.OPEN:
        if text is not None:
            if record is not None:
                record.messages.append(websocket.WebSocketMessage(Opcode.TEXT, False, text.encode()))
            yield client.send2(wsproto.events.TextMessage(data=text))
        yield client.send2(wsproto.events.CloseConnection(code=code, reason=reason))
    if server.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
        yield server.send2(wsproto.events.CloseConnection(code=code, reason=reason))
    yield commands.CloseConnection(server.conn)
    yield ws_layer.WebsocketEndHook(flow)
    flow.live = False
    self._handle_event = partial(_discarding, self, [DISCARD_LIMIT])


def _discarding(self, left: list[int], event):
    """After a refusal: the client's bytes dropped, at most DISCARD_LIMIT; its connection closed then, or when
    it closes. The server's last words (its close) are not relayed."""
    if not isinstance(event, events.ConnectionEvent) or event.connection != self.context.client:
        return
    if isinstance(event, events.DataReceived):
        left[0] -= len(event.data)
        if left[0] > 0:
            return
    yield commands.CloseConnection(self.context.client)
    self._handle_event = self.done
