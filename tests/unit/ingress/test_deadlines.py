"""Client connections that owe a request head, closed when late (ingress/deadlines.py), with a fake clock and
mitmproxy's test connections."""

from __future__ import annotations

import asyncio
import json
import logging

from mitmproxy.test import tflow

from qwen_gateway.ingress import deadlines
from qwen_gateway.log_tally import LogTally


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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


def test_what_the_drain_asks_connections_that_owe_their_first_head_and_when_the_last_head_came():
    """turn/drain.py waits for a quiet entrance, then, listeners closed, for the requests of connections accepted."""
    clock = Clock()
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=clock)
    fresh, kept, tunnel = tflow.tclient_conn(), tflow.tclient_conn(), tflow.tclient_conn()
    for c in (fresh, kept, tunnel):
        d.opened(c)
    assert d.first_heads_owed() == 3
    answered = _flow(kept)
    clock.now += 1
    d.began(answered)
    assert d.last_head == clock.now and d.first_heads_owed() == 2
    d.ended(answered)  # idle after an answer: it owes a head again, but not a first one
    d.tunnelled(_flow(tunnel))  # inside a tunnel: nothing in clear to wait for
    assert d.first_heads_owed() == 1
    d.closed(fresh)
    assert d.first_heads_owed() == 0


def test_what_the_drain_waits_for_once_closed_connections_unheard_of_or_answering_a_request_since_the_signal():
    """CI: the last request before the entrance closed got an empty reply: mitmproxy held its connection, the
    hooks had not told of it, and the drain stopped. Owed an answer: a connection mitmproxy holds unheard of, one
    owing its first head, one whose request came since the signal until it closes (HTTP/1: the drain's answer
    closes it) or, HTTP/2, until its exchange ends. Not: a request from before the signal (the stop ends it)."""
    clock = Clock()
    held: list[str] = []
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=clock, held=lambda: held)
    before, after, h2, unheard = (tflow.tclient_conn() for _ in range(4))
    for c in (before, after, h2):
        d.opened(c)
        held.append(c.id)
    stream = _flow(before)
    d.began(stream)  # its request came before the signal
    clock.now += 1
    since = clock.now  # the signal
    assert d.answers_owed(since) == 2  # `after` and `h2` owe their first head
    held.append(unheard.id)  # accepted: mitmproxy's handler runs, its client_connected not yet ours
    assert d.answers_owed(since) == 3
    d.opened(unheard)
    refused, multiplexed = _flow(after), _flow(h2)
    multiplexed.request.http_version = "HTTP/2.0"
    d.began(refused)
    d.began(multiplexed)
    assert d.answers_owed(since) == 3  # `unheard` owes its head, the two are answered
    d.ended(refused)
    d.ended(multiplexed)
    assert d.answers_owed(since) == 2  # `after` until it closes; `h2` is idle, kept open
    d.closed(after)
    held.remove(after.id)
    d.closed(unheard)
    held.remove(unheard.id)
    assert d.answers_owed(since) == 0  # `before`'s stream is not waited for


def test_flows_of_clients_the_gateway_never_saw_open_are_ignored():
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=Clock())
    replay = tflow.tflow()
    d.began(replay)
    d.ended(replay)
    assert d.late(0) == []


async def test_late_connections_are_closed_with_a_408_where_plain_and_counted_in_one_line(caplog):
    clock = Clock()  # all three owe from one instant, all late by the first sweep: under load, real time
    # let the first sweep find one and the next the other (two lines where one was meant)
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=clock)
    plain, tunnel, idle = tflow.tclient_conn(), tflow.tclient_conn(), tflow.tclient_conn()
    for c in (plain, tunnel, idle):
        d.opened(c)
    d.tunnelled(_flow(tunnel))
    f = _flow(idle)
    d.began(f)
    d.ended(f)
    clock.now += 1
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


def test_only_tcp_connections_owe_a_head_and_a_closed_one_is_forgotten():
    clock = Clock()
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=clock)
    tcp, udp, gone = tflow.tclient_conn(), tflow.tclient_conn(), tflow.tclient_conn()
    udp.transport_protocol = "udp"  # HTTP/3: mitmproxy's QUIC layer has timeouts of its own
    for c in (tcp, udp, gone):
        d.opened(c)
    d.closed(gone)
    clock.now += 60
    assert [cid for cid, _ in d.late(60)] == [tcp.id]
    assert d.late(0) == []  # taken once: the connection is being closed


def test_late_is_oldest_first_and_stops_at_the_first_young_debt():
    clock = Clock()
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")), clock=clock)
    first, second = tflow.tclient_conn(), tflow.tclient_conn()
    d.opened(first)
    clock.now += 3
    d.opened(second)
    clock.now += 7
    assert [cid for cid, _ in d.late(10)] == [first.id]
    clock.now += 3
    assert [cid for cid, _ in d.late(10)] == [second.id]


def test_the_408_is_openais_error_and_closes_the_connection():
    raw = deadlines.timeout_answer(60)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head.lower() and b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": {
        "message": "No complete request head within 60 s (qwen_head_timeout): the gateway closed the connection. "
                   "Send the whole request head at once.",
        "type": "invalid_request_error", "param": None, "code": "request_timeout"}}


async def test_no_timer_for_a_timeout_of_zero_and_stop_ends_a_running_one():
    d = deadlines.HeadDeadlines(LogTally(logging.getLogger("qwen.test")))
    d.start(0)
    assert d._task is None  # qwen_head_timeout 0: the deadlines are off
    d.start(30, lambda cid, answer: None)
    task = d._task
    assert task is not None and not task.done()
    d.stop()
    await asyncio.sleep(0)
    assert task.cancelled() and d._task is None
