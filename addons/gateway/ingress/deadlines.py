"""Client connections that owe the gateway a request head, closed when they are late (qwen_head_timeout).

mitmproxy closes a client connection only after `tcp_timeout` (600 s) of silence: a client that sends a
byte of header every few seconds (slowloris), or connects and says nothing, holds a connection and a file
descriptor for ever — 300 of them stayed open, 1,100 exhausted a 1,024-descriptor process. nginx closes a
connection whose head is not complete within client_header_timeout (60 s).

A client connection owes a complete request head from when it opens (a TLS handshake and an explicit
proxy's CONNECT included) and again from when its last exchange ended: so an idle keep-alive connection is
closed after the same time. mitmproxy's hooks tell both: `requestheaders` (a head arrived), `http_connect`
(the CONNECT's head arrived: the tunnel's own head is owed next), and `response`, `error`, `websocket_end`,
`tcp_end`/`tcp_error` (an exchange ended). An exchange in progress — a stream answering for minutes, a
WebSocket session, a tunnel passed through as TCP — is never late. The cost per request: two dict
operations; one timer task wakes when the oldest debt falls due.

A late connection that speaks plain HTTP/1 to the gateway (no TLS, no CONNECT tunnel) reads a 408 in
OpenAI's format before the close; inside TLS nothing can be said in clear, so it is only closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.utils import asyncio_utils

from ..errors import GatewayError
from ..log_tally import LogTally
from .listeners import client_ids, client_io

log = logging.getLogger("qwen")

DEFAULT_TIMEOUT_S = 60
GRAIN_S = 0.1  # the timer never wakes more often than this


@dataclass(slots=True)
class _Client:
    exchanges: set[str] = field(default_factory=set)  # flow ids of the exchanges in progress
    served: bool = False  # an exchange has ended on it: late now means idle after an answer
    tunnel: bool = False  # a CONNECT was answered: what follows may be TLS
    head_at: float = float("-inf")  # when its last HTTP request head came
    http2: bool = False  # its requests are HTTP/2's: it stays open after each answer, drain or not


class HeadDeadlines:
    def __init__(self, tally: LogTally, clock: Callable[[], float] = time.monotonic,
                 held: Callable[[], Iterable[str]] = client_ids) -> None:
        self.tally = tally
        self.clock = clock
        self.held = held  # the client connections mitmproxy holds, heard of by the hooks or not yet
        self._clients: dict[str, _Client] = {}
        self._owing: dict[str, float] = {}  # client id -> since when it owes a head; oldest first
        self._task: asyncio.Task | None = None
        self.last_head = float("-inf")  # when the last request head arrived (the drain waits for a quiet entrance)

    # ---- what the hooks tell ----

    def opened(self, client) -> None:
        if client.transport_protocol == "tcp":
            self._clients[client.id] = _Client()
            self._owing[client.id] = self.clock()

    def began(self, flow) -> None:
        now = self.last_head = self.clock()
        c = self._clients.get(flow.client_conn.id)
        if c is not None:  # not a replay, nor a client that connected before the gateway loaded
            self._owing.pop(flow.client_conn.id, None)
            c.exchanges.add(flow.id)
            if isinstance(flow, http.HTTPFlow):
                c.head_at, c.http2 = now, flow.request.http_version.startswith("HTTP/2")

    def ended(self, flow) -> None:
        cid = flow.client_conn.id
        c = self._clients.get(cid)
        if c is None or flow.id not in c.exchanges:
            return
        c.exchanges.discard(flow.id)
        if not c.exchanges:
            c.served = True
            self._owing[cid] = self.clock()  # inserted last: the dict stays ordered by time

    def tunnelled(self, flow) -> None:
        cid = flow.client_conn.id
        c = self._clients.get(cid)
        if c is not None:
            c.tunnel = True
            if cid in self._owing:  # the CONNECT's head came: the clock starts again for the tunnel's
                del self._owing[cid]
                self._owing[cid] = self.clock()

    def closed(self, client) -> None:
        self._clients.pop(client.id, None)
        self._owing.pop(client.id, None)

    def first_heads_owed(self) -> int:
        """Connections accepted that have sent no request yet (the drain answers them before it stops)."""
        clients = (self._clients.get(cid) for cid in self._owing)
        return sum(1 for c in clients if c is not None and not c.served and not c.tunnel)

    def answers_owed(self, since: float) -> int:
        """What the drain waits for once its entrance is closed: the connections accepted that owe their first
        request, those mitmproxy holds that no hook has told of yet (a connection is registered before its
        `client_connected` runs, and an addon ahead of the gateway may await there), and those whose request came
        at `since` or later and are still open — the drain's 503 says `Connection: close`, so an HTTP/1 one closes
        once its answer is out (an HTTP/2 one counts while its exchange runs)."""
        unheard = sum(1 for cid in self.held() if cid not in self._clients)
        answering = sum(1 for c in self._clients.values() if c.head_at >= since and (c.exchanges or not c.http2))
        return self.first_heads_owed() + unheard + answering

    # ---- the clock ----

    def late(self, timeout: float) -> list[tuple[str, _Client]]:
        """The connections whose debt is older than `timeout`, forgotten here (they are being closed)."""
        due = self.clock() - timeout
        out = []
        for cid, since in self._owing.items():
            if since > due:
                break
            out.append(cid)
        for cid in out:
            del self._owing[cid]
        return [(cid, self._clients.pop(cid, _Client())) for cid in out]

    def start(self, timeout: float, close: Callable[[str, bytes | None], None] | None = None) -> None:
        """(Re)start the timer for `timeout` seconds (0: none). `close(client id, answer)` closes one
        connection, first writing `answer` (a 408) when it is not None: mitmproxy's connection by default."""
        self.stop()
        if timeout > 0:
            self._task = asyncio_utils.create_task(self._run(timeout, close or close_connection, timeout_answer(timeout)),
                                                   name="qwen: head deadlines", keep_ref=True)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, limit_s: float, close: Callable[[str, bytes | None], None], answer: bytes) -> None:
        while True:
            fresh = 0
            for cid, c in self.late(limit_s):
                try:
                    close(cid, None if c.tunnel else answer)
                except Exception as e:  # a connection that went meanwhile
                    log.debug(f"qwen: could not close a late connection: {e!r}")
                fresh += not c.served
            if fresh:
                self.tally.note("head_timeout", lambda n: (
                    f"qwen: closed {n} client connection{'s' if n != 1 else ''} that sent no complete request "
                    f"head within {limit_s:g} s of opening (qwen_head_timeout)"), level=logging.INFO, count=fresh)
            oldest = next(iter(self._owing.values()), None)
            wait = limit_s if oldest is None else oldest + limit_s - self.clock()
            await asyncio.sleep(max(GRAIN_S, wait))


def close_connection(client_id: str, answer: bytes | None) -> None:
    """Close one of mitmproxy's client connections the way mitmproxy closes an idle one; `answer` is written
    first when the connection is in clear (no TLS layer: bytes written here would bypass it)."""
    handler, io = client_io(client_id)
    if io is None:
        return
    if answer is not None and not handler.client.tls and io.writer is not None and not io.writer.is_closing():
        io.writer.write(answer)
    handler.close_connection(handler.client)


def timeout_answer(timeout: float) -> bytes:
    """The 408 written to a plain HTTP/1 connection closed for want of a head (assembled once per setting)."""
    e = GatewayError(408, f"No complete request head within {timeout:g} s (qwen_head_timeout): the gateway "
                          "closed the connection. Send the whole request head at once.", code="request_timeout")
    resp = http.Response.make(e.status, e.to_bytes(), {"content-type": "application/json", "connection": "close"})
    return http1.assemble_response(resp)
