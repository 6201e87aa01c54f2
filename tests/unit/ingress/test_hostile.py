"""Unit tests of the hostile-client pieces: the log tally, the dialect of the answer to an oversized head
(ingress/oversized_head.py), the head deadlines with a fake clock. The head limit inside mitmproxy's HTTP/1
server layer: tests/unit/seams/test_http1_heads.py; the event loop's handler for accept() storms:
tests/unit/seams/test_loop_reports.py."""

from __future__ import annotations

import asyncio
import json
import logging

from mitmproxy.test import tflow

from qwen_gateway.ingress import deadlines, oversized_head
from qwen_gateway.log_tally import LogTally


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


# ---- the answer to an oversized head ----------------------------------------------------------------


def test_a_head_from_an_unparsable_first_line_still_gets_an_answer():
    assert oversized_head.first_lines(b"") == ("GET", "/", "", False)
    assert oversized_head.first_lines(b"POST http://api.openai.com/v1/responses?x=1 HTTP/1.1\r\nHost: y\r\n") == \
        ("POST", "/v1/responses", "api.openai.com", False)
    assert oversized_head.first_lines(b"post /v1/messages HTTP/1.1\r\nHOST: a.b\r\nAnthropic-Version: 1\r\n") == \
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
