"""The graceful drain's parts (turn/drain.py, turn/stopping.py), one by one; SIGTERM handed to it:
tests/unit/seams/test_shutdown_signals.py; through real mitmdump: test_e2e_drain.py."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from qwen_gateway.turn import drain as drain_module
from qwen_gateway.turn.drain import Drain
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.health_probes import Probes
from qwen_gateway.turn.stopping import Interruptible, Stopping


async def test_a_cut_turn_ends_with_the_503_and_any_other_cancel_stays_a_cancel():
    cuts = Interruptible()
    started = asyncio.Event()

    async def turn() -> None:
        with cuts.running():
            started.set()
            await asyncio.sleep(3600)

    cut, left = asyncio.create_task(turn()), asyncio.create_task(turn())
    await started.wait()
    await asyncio.sleep(0)
    left.cancel()  # a client gone: not the gateway's stop
    with pytest.raises(asyncio.CancelledError):
        await left
    assert cuts.cut() == 1 and cuts.cut() == 0  # once
    with pytest.raises(Stopping) as e:
        await cut
    assert (e.value.status, e.value.code, e.value.headers) == (
        503, "gateway_shutting_down", {"retry-after": "5", "connection": "close"})
    assert not cut.cancelling()  # uncancelled: the transport goes on to send the error


def exchange() -> Exchange:
    return Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1/v1/chat/completions", "", 2))


class Connections:
    """What the drain sees of the connections: when the last request came, and those owed an answer."""

    def __init__(self) -> None:
        self.last_head = float("-inf")
        self.owed = 0

    def answers_owed(self, since: float) -> int:
        return self.owed


@pytest.fixture
def quick(monkeypatch):
    """The drain's waits made short (what it waits for, not how long, is what these tests show)."""
    monkeypatch.setattr(drain_module, "QUIET_S", 0.05)
    monkeypatch.setattr(drain_module, "POLL_S", 0.01)


def watched(running: list[int], connections: Connections | None = None) -> tuple[Drain, list[str]]:
    """A drain whose listeners' close and mitmproxy's shutdown are noted, in order."""
    steps: list[str] = []

    async def close_listeners() -> None:
        steps.append("listeners closed")

    drain = Drain(in_progress=lambda: running[0], connections=connections, close_listeners=close_listeners)
    drain.shutdown = lambda: steps.append("stopped")
    drain.started()  # the gateway runs (mitmproxy's `running`)
    return drain, steps


async def until(check, limit: int = 500) -> None:
    for _ in range(limit):  # bounded: 5 s
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_the_drain_refuses_new_turns_waits_for_the_running_ones_then_stops(caplog, quick):
    running = [2]
    drain, steps = watched(running, Connections())
    drain.probes = probes = Probes(lambda: None)
    await drain.check(exchange())  # not draining: nothing refused
    with caplog.at_level(logging.INFO, logger="qwen"):
        drain.signalled(30)
        assert "draining" in probes.not_ready()
        with pytest.raises(GatewayError) as e:
            await drain.check(exchange())
        assert e.value.status == 503 and e.value.headers["retry-after"] == "5"
        with pytest.raises(GatewayError):
            drain.refuse_new()
        await asyncio.sleep(0.2)
        assert not steps  # two still run: the listeners stay open
        running[0] = 0
        await until(lambda: steps)
        await until(lambda: len(steps) == 2)
    assert steps == ["listeners closed", "stopped"]
    assert "2 requests in progress may finish within 30 s" in caplog.text
    assert "nothing in progress; stopping" in caplog.text


async def test_with_nothing_in_progress_the_door_stays_open_while_requests_come_then_closes_then_stops(caplog, quick):
    """The issue: an idle gateway stopped at once, and a request 0.02–0.2 s after the signal was accepted and cut."""
    connections = Connections()
    drain, steps = watched([0], connections)
    with caplog.at_level(logging.INFO, logger="qwen"):
        drain.signalled(30)
        for _ in range(20):  # requests keep coming (each refused 503 by the check): the listeners stay open
            connections.last_head = time.monotonic()
            await asyncio.sleep(0.01)
            assert steps == []
        await until(lambda: len(steps) == 2)  # none for a while: closed, then stopped
    assert steps == ["listeners closed", "stopped"]
    assert caplog.messages == [
        "qwen: SIGTERM: draining: nothing in progress; new requests are answered 503, readiness is 503",
        "qwen: drain: nothing in progress; stopping"]


async def test_a_connection_accepted_before_the_close_has_its_request_answered_before_the_stop(quick):
    connections = Connections()
    running = [0]
    drain, steps = watched(running, connections)

    async def close_listeners() -> None:
        steps.append("listeners closed")
        connections.owed = 1  # accepted just before: its request is on its way

    drain.close_listeners = close_listeners
    drain.signalled(30)
    await until(lambda: steps)
    await asyncio.sleep(0.1)
    assert steps == ["listeners closed"]
    connections.owed, running[0] = 0, 1  # its head came: an exchange (refused 503 at once)
    await asyncio.sleep(0.1)
    assert steps == ["listeners closed"]
    running[0] = 0
    await until(lambda: len(steps) == 2)
    assert steps == ["listeners closed", "stopped"]


async def test_a_second_sigterm_or_the_deadline_stops_at_once(caplog):
    stopped: list[str] = []
    drain = Drain(in_progress=lambda: 1)
    drain.shutdown = lambda: stopped.append("stop")
    drain.started()
    with caplog.at_level(logging.INFO, logger="qwen"):
        drain.signalled(3600)
        drain.signalled(3600)
    assert stopped == ["stop"] and "a second SIGTERM: stopping now" in caplog.text
    drain.cancel()
    late = Drain(in_progress=lambda: 1)  # what runs past the deadline is cut by the stop (turn/stopping.py)
    late.shutdown = lambda: stopped.append("deadline")
    late.started()
    with caplog.at_level(logging.INFO, logger="qwen"):
        late.signalled(0)
        for _ in range(100):
            if "deadline" in stopped:
                break
            await asyncio.sleep(0.02)
    assert stopped == ["stop", "deadline"]
    assert "qwen_drain_s (0 s) is over with 1 request still in progress" in caplog.text


async def test_a_sigterm_while_the_gateway_starts_drains_once_it_has_started(caplog):
    """Issue 68: the drain begins (new turns refused, readiness 503) but its wait, and the stop that ends it, wait for
    the start: mitmproxy's `done` must run, the listeners be known."""
    steps: list[str] = []
    drain = Drain(in_progress=lambda: 0)
    drain.shutdown = lambda: steps.append("stopped")
    with caplog.at_level(logging.INFO, logger="qwen"):
        drain.signalled(30)
    assert drain.draining and "SIGTERM during start-up" in caplog.text
    with pytest.raises(Stopping):
        await drain.check(None)  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert steps == []  # not before the start
    drain.started()
    await until(lambda: steps)
    for _ in range(100):
        if steps:
            break
        await asyncio.sleep(0.02)
    assert steps == ["stopped"]


def test_while_it_drains_every_http1_answer_closes_its_connection_after_it():
    from mitmproxy.test import tflow

    d = Drain(in_progress=lambda: 0)
    before = tflow.tflow(resp=True)
    d.closing(before)
    assert "connection" not in before.response.headers  # not draining: kept alive as the client asked
    d.draining = True
    answer, upgrade, h2 = tflow.tflow(resp=True), tflow.tflow(resp=True), tflow.tflow(resp=True)
    upgrade.response.status_code = 101
    h2.request.http_version = "HTTP/2.0"
    for flow in (answer, upgrade, h2, tflow.tflow()):
        d.closing(flow)
    assert answer.response.headers["connection"] == "close"
    assert "connection" not in upgrade.response.headers  # a WebSocket's upgrade: the session goes on
    assert "connection" not in h2.response.headers  # HTTP/2 has no such header (its streams end on their own)
