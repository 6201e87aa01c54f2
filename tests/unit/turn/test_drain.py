"""The graceful drain's parts (turn/drain.py, turn/stopping.py), one by one; SIGTERM handed to it:
tests/unit/seams/test_shutdown_signals.py; through real mitmdump: test_e2e_drain.py."""

from __future__ import annotations

import asyncio
import logging

import pytest

from qwen_gateway.turn.drain import Drain
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.health_probes import Probes
from qwen_gateway.turn.stopping import Cuts, Stopping


async def test_a_cut_turn_ends_with_the_503_and_any_other_cancel_stays_a_cancel():
    cuts = Cuts()
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


async def test_the_drain_refuses_new_turns_waits_for_the_running_ones_then_stops(caplog):
    running = [2]
    stopped: list[bool] = []
    drain = Drain(in_progress=lambda: running[0])
    drain.probes = probes = Probes(lambda: None)
    drain.shutdown = lambda: stopped.append(True)
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
        assert not stopped  # two still run
        running[0] = 0
        for _ in range(100):
            if stopped:
                break
            await asyncio.sleep(0.02)
    assert stopped == [True]
    assert "2 requests in progress may finish within 30 s" in caplog.text
    assert "nothing in progress; stopping" in caplog.text


def test_with_nothing_in_progress_sigterm_stops_at_once_without_a_word(caplog):
    stopped: list[bool] = []
    drain = Drain(in_progress=lambda: 0)
    drain.shutdown = lambda: stopped.append(True)
    with caplog.at_level(logging.INFO, logger="qwen"):
        drain.signalled(30)
    assert stopped == [True] and drain.draining and caplog.messages == []


async def test_a_second_sigterm_or_the_deadline_stops_at_once(caplog):
    stopped: list[str] = []
    drain = Drain(in_progress=lambda: 1)
    drain.shutdown = lambda: stopped.append("stop")
    with caplog.at_level(logging.INFO, logger="qwen"):
        drain.signalled(3600)
        drain.signalled(3600)
    assert stopped == ["stop"] and "a second SIGTERM: stopping now" in caplog.text
    drain.cancel()
    late = Drain(in_progress=lambda: 1)
    late.shutdown = lambda: stopped.append("deadline")
    with caplog.at_level(logging.INFO, logger="qwen"):
        late.signalled(0)
        for _ in range(100):
            if "deadline" in stopped:
                break
            await asyncio.sleep(0.02)
    assert stopped == ["stop", "deadline"]
    assert "qwen_drain_s (0 s) is over with 1 request still in progress" in caplog.text
