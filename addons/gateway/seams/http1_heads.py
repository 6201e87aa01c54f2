"""Request heads held to a size limit inside mitmproxy's HTTP/1 server layer (qwen_max_header_kb).

Why: mitmproxy's HTTP/1 server layer (`Http1Server`, mitmproxy/proxy/layers/http/_http1.py) appends every byte
a client sends to one buffer and looks for the end of the head in it, with no limit ("FIXME: protect against
header size DoS"): a 100 MiB header was read whole (+411 MB) and answered 200. No mitmproxy option bounds it
(`body_size_limit` is for bodies), and no hook runs before the head is complete, nor when the layer is made.
So the gateway wraps three of that layer's states, on the class, once per process — every HTTP/1 client
connection has one such layer: reverse mode, the explicit proxy (its CONNECT, and the requests inside the
tunnel), transparent mode. The class is the narrowest place there is; `Http1Client` (server connections) is
left alone.

- `read_headers`: when the buffer holds more than the limit and no head ends within it, the client gets
  431 in its own format (`Limit.answer`: ingress/oversized_head.py), then the gateway half-closes and discards
  what the client still sends (at most DISCARD_LIMIT), so that a client still writing reads the answer
  instead of a reset.
- `read_body`: a chunk-size or trailer line longer than the limit ends the request (400).
- `wait`: bytes piped ahead of an answer beyond the limit close the connection (HTTP/1 pipelining is
  not served: the buffer would only grow until the answer ends).

A head within the limit goes to mitmproxy's own code untouched: the cost per request is one length
comparison per read. Memory per connection stays under the limit plus one read (64 KiB). HTTP/2 is h2's
business: it refuses a header list over 64 KiB (decoded; SETTINGS_MAX_HEADER_LIST_SIZE) and more than 64
CONTINUATION frames with a connection error — no 431 — and mitmproxy closes the connection.

On a mitmproxy this was not written against, heads stay bounded through mitmproxy's public API instead
(`bound_layer`, from the `next_layer` hook): the HTTP layer of each HTTP/1 client connection is wrapped in a
`HeadBound` layer that counts what the client sends from the end of an answer until the head's blank line,
and answers 431 in the client's format when the limit passes first. It costs a hook call per layer and a
search per read while a head is owed; chunk-size lines and pipelined bytes are then mitmproxy's business.
That is why it is not the only path: such a layer cannot see where mitmproxy's reader is in the bytes, so a
head piped behind a request whose answer is pending goes into the reader's buffer unbounded (test_http1_heads).

What mitmproxy change would remove it: a limit on the HTTP/1 head in `Http1Server.read_headers` (an option
like `body_size_limit`, answered 431), a bound on chunk-size lines in the body reader, and on bytes buffered
in `wait`; the 431 in the client's format would then be an `error` hook's business.
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, layer, layers
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import ErrorCode, RequestProtocolError

from ..errors import GatewayError
from ..log_tally import LogTally
from .fingerprint import WrittenAgainst

log = logging.getLogger("qwen")

DEFAULT_LIMIT = 64 << 10
DISCARD_LIMIT = 1 << 20  # what a refused client may still send, unread, before the connection is closed
BLANK_LINE = re.compile(rb"\n\r?\n")  # where h11 (mitmproxy's reader) ends a head

WRITTEN = WrittenAgainst(
    seam="request heads bounded in mitmproxy's HTTP/1 reader",
    loses="request heads are bounded by a layer around mitmproxy's HTTP layer instead (public API), chunk-size "
          "lines and bytes piped ahead of an answer are not",
    # the two classes as shipped, and the three states as found on the class (another addon may have replaced one)
    code=(("mitmproxy.proxy.layers.http._http1:Http1Connection", "c0675638b0756013"),
          ("mitmproxy.proxy.layers.http._http1:Http1Server", "cc8428d0bb6f79a5"),
          ("mitmproxy.proxy.layers.http._http1:Http1Server.read_headers", "3fe0945216bcf7bc"),
          ("mitmproxy.proxy.layers.http._http1:Http1Server.read_body", "aece271029af36e4"),
          ("mitmproxy.proxy.layers.http._http1:Http1Server.wait", "c99d0494a840a2b6")))


@dataclass(frozen=True)
class Limit:
    size: int = DEFAULT_LIMIT  # bytes
    answer: Callable[[bytes, GatewayError], http.Response] | None = None  # (the head's first bytes, error) -> answer
    tally: LogTally | None = None


_limit = Limit()
_original: dict[str, Callable] = {}


def install(limit: Limit) -> bool:
    """Bound every HTTP/1 client connection's head from now on (called from `configure`; the class is
    wrapped once, later calls only change the limit). False on a mitmproxy whose HTTP/1 layer this was not
    written against: nothing changed."""
    global _limit
    _limit = limit
    if _original:
        return True
    if not WRITTEN.fits():
        return False
    server = _http1.Http1Server
    for name, wrapper in (("read_headers", _read_headers), ("read_body", _read_body), ("wait", _wait)):
        _original[name] = getattr(server, name)
        setattr(server, name, wrapper)
    return True


def installed() -> bool:
    return bool(_original)


def _read_headers(self, event):
    if len(self.buf) > _limit.size:
        head = bytes(self.buf)
        if BLANK_LINE.search(head, 0, _limit.size) is None:
            yield from _refuse_head(self, head[:_limit.size])
            return
    yield from _original["read_headers"](self, event)


def _read_body(self, event):
    yield from _original["read_body"](self, event)
    if len(self.buf) > _limit.size and self.conn.connected and getattr(self.state, "__func__", None) is _read_body:
        # the body reader leaves only an unfinished chunk-size or trailer line in the buffer
        _note("chunk_line", lambda n: f"qwen: cut off {_requests(n)} whose chunk-size line ran over "
                                      f"{_kib(_limit.size)} (400)")
        e = GatewayError(400, f"A chunk-size or trailer line of the request body is over {_kib(_limit.size)} "
                              "(qwen_max_header_kb).", code="invalid_chunked_body")
        yield commands.SendData(self.conn, _answer(http1.assemble_request_head(self.request), e))
        yield commands.CloseConnection(self.conn)
        # the flow ends as with any malformed body (mitmproxy itself answers those with nothing)
        yield ReceiveHttp(RequestProtocolError(self.stream_id, e.message, code=ErrorCode.GENERIC_CLIENT_ERROR))
        self.state = self.done


def _wait(self, event):
    if isinstance(event, events.DataReceived) and len(self.buf) > _limit.size:
        _note("piped", lambda n: f"qwen: closed {_connections(n)} that sent over {_kib(_limit.size)} ahead "
                                 "of the answer they were waiting for")
        yield commands.CloseConnection(self.conn)
        yield ReceiveHttp(RequestProtocolError(
            self.stream_id, f"The client sent over {_kib(_limit.size)} ahead of its answer.",
            code=ErrorCode.CLIENT_DISCONNECTED))
        self.state = self.done
        return
    yield from _original["wait"](self, event)


def _refuse_head(self, head: bytes):
    peer = self.conn.peername[0] if self.conn.peername else "?"
    _note("head", lambda n: f"qwen: refused {_requests(n)} with a request head over {_kib(_limit.size)} (431; "
                            f"qwen_max_header_kb), the last from {peer}")
    yield commands.SendData(self.conn, _answer(head, _head_too_large(_limit.size)))
    yield commands.CloseTcpConnection(self.conn, half_close=True)
    self.buf = type(self.buf)()
    self.state = _discarding(self)


def _discarding(layer):
    """The state after a refusal: what the client still sends is dropped (the buffer emptied), up to
    DISCARD_LIMIT; the connection closes when the client closes its side or sends more."""
    left = [DISCARD_LIMIT]

    def discard(event):
        if isinstance(event, events.DataReceived):
            left[0] -= len(layer.buf)
            layer.buf = type(layer.buf)()
            if left[0] > 0:
                return
        elif not isinstance(event, events.ConnectionClosed):
            return
        yield commands.CloseConnection(layer.conn)
        layer.state = layer.done

    return discard


def _answer(head: bytes, e: GatewayError) -> bytes:
    try:
        if _limit.answer is not None:
            return _assemble(_limit.answer(head, e))
    except Exception:  # never a crash inside mitmproxy's reader: the answer in OpenAI's format then
        log.exception("qwen: could not write an answer in the client's format")
    return _assemble(http.Response.make(e.status, e.to_bytes(), {"content-type": "application/json"}))


def _note(kind: str, line: Callable[[int], str]) -> None:
    if _limit.tally is not None:
        _limit.tally.note(kind, line)


# ---- the fallback, through mitmproxy's public API -----------------------------------------------------------


def bound_layer(nextlayer: layer.NextLayer, decide: Callable[[layer.NextLayer], None] | None) -> None:
    """From the `next_layer` hook, when the seam is out: an HTTP/1 client connection's HTTP layer, as mitmproxy
    chose it, wrapped in a `HeadBound` (HTTP/2 is h2's business). Script addons see the hook before mitmproxy's
    own NextLayer addon, so its choice is asked for here (`decide`: that addon's hook; it leaves a layer another
    addon has set alone, and so does nothing more after this)."""
    if nextlayer.layer is None and decide is not None:
        decide(nextlayer)
    parent, chosen = None, nextlayer.layer  # a stack (TLS layers, then HTTP), each layer its `child_layer`'s parent
    while chosen is not None and not isinstance(chosen, layers.HttpLayer):
        parent, chosen = chosen, getattr(chosen, "child_layer", None)
    if chosen is None or isinstance(chosen, HeadBound):
        return
    if parent is None:
        nextlayer.layer = HeadBound(chosen)
    else:
        parent.child_layer = HeadBound(chosen)  # type: ignore[attr-defined]


class HeadBound(layer.Layer):
    """mitmproxy's HTTP layer (`child`) with the client's heads counted: from the connection's start, and from
    each answer's end (its `response` or `error` hook) to the head's blank line. Past the limit, the client gets
    the 431 and a half-close, and what it still sends is dropped (at most DISCARD_LIMIT). Not entered in the
    context's layers: mitmproxy's layer decisions see its own HTTP layer alone."""

    def __init__(self, child: layer.Layer) -> None:
        self.context, self.child = child.context, child
        self._paused, self._paused_event_queue, self.debug = None, collections.deque(), None
        self.head: bytearray | None = bytearray()  # what the client sent of the head it owes (None: none owed)
        self.discard: int | None = None  # after a refusal, what may still be dropped

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        yield from ()  # everything goes through handle_event: the child pauses itself

    def handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        client = self.context.client
        if isinstance(event, events.DataReceived) and event.connection is client:
            if client.alpn == b"h2":  # known once the client's TLS handshake is done
                self.head = None
            if self.discard is not None:
                self.discard -= len(event.data)
                if self.discard <= 0:
                    yield commands.CloseConnection(client)
                return
            if self.head is not None:
                start = max(0, len(self.head) - 3)  # a blank line split across two reads
                self.head += event.data
                end = BLANK_LINE.search(self.head, start)
                if end is not None and end.end() <= _limit.size:
                    self.head = None  # the head is whole: the body is the HTTP layer's to bound
                elif len(self.head) > _limit.size:
                    yield from self._refuse(bytes(self.head[:_limit.size]))
                    return
        elif self.discard is not None and isinstance(event, events.ConnectionClosed) and event.connection is client:
            yield commands.CloseConnection(client)
            return
        for command in self.child.handle_event(event):
            if isinstance(command, (layers.http.HttpResponseHook, layers.http.HttpErrorHook)):
                self.head = bytearray()  # the answer is over: the next head is owed
            yield command

    def _refuse(self, head: bytes) -> layer.CommandGenerator[None]:
        peer = self.context.client.peername[0] if self.context.client.peername else "?"
        _note("head", lambda n: f"qwen: refused {_requests(n)} with a request head over {_kib(_limit.size)} "
                                f"(431; qwen_max_header_kb), the last from {peer}")
        self.head, self.discard = None, DISCARD_LIMIT
        yield commands.SendData(self.context.client, _answer(head, _head_too_large(_limit.size)))
        yield commands.CloseTcpConnection(self.context.client, half_close=True)


# ---- the answer -----------------------------------------------------------------------------------------


def _head_too_large(limit: int) -> GatewayError:
    return GatewayError(431, f"The request head (request line and headers) is over the gateway's limit of "
                             f"{_kib(limit)} (qwen_max_header_kb). Send smaller headers.",
                        code="request_header_fields_too_large")


def _assemble(resp: http.Response) -> bytes:
    resp.headers["connection"] = "close"
    return http1.assemble_response(resp)


def _kib(size: int) -> str:
    return f"{size >> 10} KiB" if size % 1024 == 0 else f"{size} bytes"


def _requests(n: int) -> str:
    return "1 request" if n == 1 else f"{n} requests"


def _connections(n: int) -> str:
    return "1 connection" if n == 1 else f"{n} connections"
