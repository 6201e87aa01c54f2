"""Unit tests of the hostile-client pieces: the log tally, the head limit inside mitmproxy's HTTP/1 server
layer (driven with real events, as mitmproxy's own layer tests do), the answer's dialect, the head
deadlines with a fake clock, and the event loop's handler for accept() storms."""

from __future__ import annotations

import asyncio
import errno
import json
import logging

import pytest
from mitmproxy import options
from mitmproxy.proxy import commands, context, events
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import RequestHeaders, RequestProtocolError
from mitmproxy.test import tflow

from qwen_gateway import registry
from qwen_gateway.door import deadlines, descriptors, headlimit
from qwen_gateway.local import Formats
from qwen_gateway.logtally import LogTally


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- LogTally -------------------------------------------------------------------------------------------


def test_the_tally_logs_the_first_event_and_then_one_count_per_period(caplog):
    clock = Clock()
    tally = LogTally(logging.getLogger("qwen.test"), period=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="qwen.test"):
        tally.note("k", lambda n: f"{n} events")
        for _ in range(500):
            tally.note("k", lambda n: f"{n} events")
        assert caplog.messages == ["1 events"]  # no loop: nothing flushed before the period ends
        clock.now += 10
        tally.note("k", lambda n: f"{n} events", count=4)  # the period is over: its count goes out
        tally.note("other", lambda n: f"{n} others")
        tally.close()
    assert caplog.messages == ["1 events", "504 events", "1 others"]


async def test_the_tally_flushes_a_count_when_its_period_ends(caplog):
    tally = LogTally(logging.getLogger("qwen.test"), period=0.05)
    with caplog.at_level(logging.INFO, logger="qwen.test"):
        for _ in range(3):
            tally.note("k", lambda n: f"{n} events")
        for _ in range(50):  # at most 1 s
            if len(caplog.messages) == 2:
                break
            await asyncio.sleep(0.02)
    assert caplog.messages == ["1 events", "2 events"]


# ---- the head limit in mitmproxy's HTTP/1 reader ----------------------------------------------------------


@pytest.fixture
def limited():
    formats = Formats(registry.client_formats())
    endpoints = registry.endpoints(lambda: None, lambda: None)
    before = headlimit._limit
    assert headlimit.install(headlimit.Limit(1024, lambda head, e: headlimit.answer(head, e, endpoints, formats)))
    yield
    headlimit.install(before)


def server() -> tuple[_http1.Http1Server, context.Context]:
    ctx = context.Context(tflow.tclient_conn(), options.Options())
    layer = _http1.Http1Server(ctx)
    list(layer.handle_event(events.Start()))
    return layer, ctx


def feed(layer, ctx, data: bytes) -> list:
    return list(layer.handle_event(events.DataReceived(ctx.client, data)))


def test_a_head_within_the_limit_goes_to_mitmproxy_untouched(limited):
    layer, ctx = server()
    cmds = feed(layer, ctx, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 900 + b"\r\n\r\n")
    assert [type(c.event) for c in cmds if isinstance(c, ReceiveHttp)][:1] == [RequestHeaders]


def test_a_head_that_ends_within_the_limit_is_read_even_when_more_bytes_came(limited):
    layer, ctx = server()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
    cmds = feed(layer, ctx, head + b"{" * 2000)  # head and body in one read: 2 KiB in the buffer
    assert any(isinstance(c, ReceiveHttp) and isinstance(c.event, RequestHeaders) for c in cmds)
    assert not any(isinstance(c, commands.SendData) for c in cmds)


@pytest.mark.parametrize(("start", "dialect"), [
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", "openai"),
    (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n", "anthropic"),
    (b"GET /v1/models HTTP/1.1\r\nanthropic-version: 2023-06-01\r\n", "anthropic"),
    (b"POST http://api.anthropic.com/v1/messages/count_tokens HTTP/1.1\r\n", "anthropic"),
    (b"\x16\x03\x01garbage", "openai"),
])
def test_a_head_over_the_limit_is_a_431_in_the_clients_format_and_the_rest_is_dropped(limited, start, dialect):
    layer, ctx = server()
    assert feed(layer, ctx, start + b"X-Pad: ") == []
    cmds = feed(layer, ctx, b"a" * 2000)
    sent = [c for c in cmds if isinstance(c, commands.SendData)]
    assert len(sent) == 1 and sent[0].data.startswith(b"HTTP/1.1 431 ")
    body = json.loads(sent[0].data.partition(b"\r\n\r\n")[2])
    if dialect == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert b"request-id: req_" in sent[0].data
    else:
        assert body["error"]["code"] == "request_header_fields_too_large"
    assert "1 KiB" in json.dumps(body)
    assert any(isinstance(c, commands.CloseTcpConnection) and c.half_close for c in cmds)
    assert not any(isinstance(c, ReceiveHttp) for c in cmds)  # no flow: nothing reached the gateway's hooks
    # what the client still sends is dropped, not kept; past DISCARD_LIMIT the connection is closed
    for _ in range(headlimit.DISCARD_LIMIT // 65536 - 1):
        assert feed(layer, ctx, b"a" * 65536) == [] and len(layer.buf) == 0
    assert [type(c) for c in feed(layer, ctx, b"a" * 65536)] == [commands.CloseConnection]


def test_a_refused_client_that_closes_is_closed(limited):
    layer, ctx = server()
    feed(layer, ctx, b"GET / HTTP/1.1\r\nX: " + b"a" * 2000)
    cmds = list(layer.handle_event(events.ConnectionClosed(ctx.client)))
    assert [type(c) for c in cmds] == [commands.CloseConnection]


def test_an_endless_chunk_size_line_fails_the_request_with_a_400(limited):
    layer, ctx = server()
    feed(layer, ctx, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1")
    cmds = feed(layer, ctx, b"1" * 2000)
    sent = [c for c in cmds if isinstance(c, commands.SendData)]
    assert sent and sent[0].data.startswith(b"HTTP/1.1 400 ")
    assert json.loads(sent[0].data.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_chunked_body"
    assert any(isinstance(c, ReceiveHttp) and isinstance(c.event, RequestProtocolError) for c in cmds)
    assert any(type(c) is commands.CloseConnection for c in cmds)


def test_a_head_from_an_unparsable_first_line_still_gets_an_answer():
    assert headlimit.first_lines(b"") == ("GET", "/", "", False)
    assert headlimit.first_lines(b"POST http://api.openai.com/v1/responses?x=1 HTTP/1.1\r\nHost: y\r\n") == \
        ("POST", "/v1/responses", "api.openai.com", False)
    assert headlimit.first_lines(b"post /v1/messages HTTP/1.1\r\nHOST: a.b\r\nAnthropic-Version: 1\r\n") == \
        ("POST", "/v1/messages", "a.b", True)


# ---- head deadlines -------------------------------------------------------------------------------------


def _flow(client):
    f = tflow.tflow(client_conn=client)
    return f


def test_a_connection_owes_a_head_from_its_start_and_after_each_exchange():
    clock = Clock()
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=clock)
    quiet, busy, idle = tflow.tclient_conn(), tflow.tclient_conn(), tflow.tclient_conn()
    for c in (quiet, busy, idle):
        d.opened(c)
    stream, ws = _flow(busy), _flow(busy)
    d.began(stream)
    d.began(ws)
    answered = _flow(idle)
    d.began(answered)
    clock.now += 5
    d.ended(answered)  # idle from now on
    d.ended(stream)  # the WebSocket session still runs on `busy`
    assert [cid for cid, _ in d.late(5)] == [quiet.id]
    clock.now += 5
    late = d.late(5)
    assert [cid for cid, _ in late] == [idle.id] and late[0][1].served
    clock.now += 100
    assert d.late(5) == []  # a connection in an exchange is never late
    d.ended(ws)
    d.ended(ws)  # a second end of the same flow changes nothing
    clock.now += 5
    assert [cid for cid, _ in d.late(5)] == [busy.id]


def test_a_connect_restarts_the_clock_and_marks_a_tunnel():
    clock = Clock()
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=clock)
    client = tflow.tclient_conn()
    d.opened(client)
    clock.now += 4
    d.tunnelled(_flow(client))
    clock.now += 4
    assert d.late(5) == []
    clock.now += 1
    [(cid, c)] = d.late(5)
    assert cid == client.id and c.tunnel  # no 408 in clear inside a tunnel


def test_flows_of_clients_the_gateway_never_saw_open_are_ignored():
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=Clock())
    replay = tflow.tflow()
    d.began(replay)
    d.ended(replay)
    assert d.late(0) == []


async def test_late_connections_are_closed_with_a_408_where_plain_and_counted_in_one_line(caplog):
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")))
    plain, tunnel, idle = tflow.tclient_conn(), tflow.tclient_conn(), tflow.tclient_conn()
    for c in (plain, tunnel, idle):
        d.opened(c)
    d.tunnelled(_flow(tunnel))
    f = _flow(idle)
    d.began(f)
    d.ended(f)
    closed: dict[str, bytes | None] = {}
    with caplog.at_level(logging.INFO, logger="qwen.test"):
        d.start(0.2, lambda cid, answer: closed.__setitem__(cid, answer))
        for _ in range(100):  # at most 5 s
            if len(closed) == 3:
                break
            await asyncio.sleep(0.05)
        d.stop()
    assert closed[plain.id].startswith(b"HTTP/1.1 408 ") and closed[idle.id] == closed[plain.id]
    assert json.loads(closed[plain.id].partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert closed[tunnel.id] is None
    lines = [m for m in caplog.messages if "qwen_head_timeout" in m]
    assert lines == ["qwen: closed 2 client connections that sent no complete request head within 0.2 s of "
                     "opening (qwen_head_timeout)"]  # the idle one had its answer: not a slow client


# ---- accept() storms ------------------------------------------------------------------------------------


def test_accept_out_of_descriptors_is_tallied_and_everything_else_passed_on(caplog):
    seen = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["message"]))
        storms = descriptors.AcceptStorms(LogTally(logging.getLogger("qwen.test")))
        storms.install(loop)
        storms.install(loop)  # a script reload: still one handler, the same one before it
        assert storms.previous is not None and not isinstance(storms.previous, descriptors.AcceptStorms)
        emfile = OSError(errno.EMFILE, "Too many open files")
        with caplog.at_level(logging.INFO, logger="qwen.test"):
            for _ in range(1000):
                loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": emfile})
            loop.call_exception_handler({"message": "something else", "exception": ValueError("x")})
        storms.uninstall(loop)
        assert loop.get_exception_handler() is not storms
    finally:
        loop.close()
    assert seen == ["something else"]
    assert len(caplog.messages) == 1 and "accept() failed 1 time with 'Too many open files'" in caplog.messages[0]
    assert "ulimit -n" in caplog.messages[0] and "LimitNOFILE" in caplog.messages[0]


async def _a_connection_handler_cancelled() -> None:
    """A real asyncio server's connection handler, cancelled as asyncio.run cancels what is left at exit (its
    StreamReaderProtocol then reports the cancelled task), then one unrelated report that must still go through."""
    async def handler(reader, writer):
        await asyncio.sleep(3600)

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    for _ in range(100):  # bounded: until the server has a handler task
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if handlers:
            break
        await asyncio.sleep(0.01)
    for t in handlers:
        t.cancel()
    await asyncio.sleep(0.05)
    asyncio.get_running_loop().call_exception_handler({"message": "something else", "exception": ValueError("x")})
    writer.close()
    server.close()


def test_a_connection_handler_cancelled_at_exit_leaves_no_traceback(caplog):
    """Python 3.12.1's StreamReaderProtocol asks a cancelled handler task for its exception, and the loop's
    exception handler prints a CancelledError traceback: at exit, a connection accepted after the gateway
    closed the others (a storm in the listen queue) had its handler cancelled that way (CI: "Traceback" in
    test_stopping_during_a_descriptor_storm_is_quiet). After `done`, that one is dropped; the rest passed on."""
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["message"]))
        storms = descriptors.AcceptStorms(LogTally(logging.getLogger("qwen.test")))
        storms.install(loop)
        storms.at_exit(loop)  # the gateway's `done`
        await _a_connection_handler_cancelled()

    asyncio.run(main())
    assert seen == ["something else"]


def test_a_handler_cancelled_after_mitmproxy_put_the_loops_handler_back_is_not_logged(caplog):
    """mitmproxy's run puts the loop's exception handler back as it was when it ends, before asyncio cancels
    the handlers left: asyncio's default handler logs the report (CI, under load: a CancelledError traceback per
    connection accepted at the last moment). After `done`, its logger drops exactly that report."""
    descriptors.AcceptStorms(LogTally(logging.getLogger("qwen.test"))).at_exit(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(_a_connection_handler_cancelled())
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == ["something else"]
