"""turn/client_watch.py's ClientWatch, as Turns._whole uses it: whole answers given up when their client leaves, by one timer for every waiting request
(not a task and a timer per request: tests/e2e/test_workcount.py counts that), cancellations that are not the
watch's left alone."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from mitmproxy.connection import ConnectionState
from mitmproxy.test import tflow

from qwen_gateway.dispatch import Observers
from qwen_gateway.errors import GatewayError
from qwen_gateway.turn import client_watch
from qwen_gateway.turn.runner import Turns


def turns() -> Turns:
    return Turns(open_upstream=None, checks=(), observers=Observers([]), settlement=None,  # type: ignore[arg-type]
                 idle_timeout=lambda: 0)


async def answer_whole(t: Turns, client):
    answer, _ = await t._whole(SimpleNamespace(), SimpleNamespace(client=client))  # type: ignore[arg-type]
    return answer


@pytest.fixture
def patched(monkeypatch):
    """`_fetch` (the answer) awaits a future the test controls."""
    futures: list[asyncio.Future] = []

    async def whole(ex):
        fut = asyncio.get_running_loop().create_future()
        futures.append(fut)
        try:
            return await fut, None
        except asyncio.CancelledError:
            whole.cancelled += 1
            raise
    whole.cancelled = 0
    monkeypatch.setattr(Turns, "_fetch", lambda self, ex: whole(ex))
    monkeypatch.setattr(client_watch, "CLIENT_WATCH", 0.01)
    return futures, whole


async def test_clients_that_leave_are_answered_499_and_their_upstream_cancelled_by_one_timer(patched):
    futures, whole = patched
    t = turns()
    watch = t.watch
    clients = [tflow.tclient_conn() for _ in range(3)]
    for c in clients:
        c.state = ConnectionState.OPEN
    tasks = [asyncio.ensure_future(answer_whole(t, c)) for c in clients]
    await asyncio.sleep(0)
    handle = watch._handle
    assert handle is not None and len(watch._waiting) == 3  # one timer for the three of them
    clients[1].state = ConnectionState.CAN_WRITE  # the client closed its side
    futures[0].set_result("answer 0")
    assert await tasks[0] == "answer 0"
    with pytest.raises(GatewayError) as e:
        await tasks[1]
    assert e.value.status == 499 and e.value.code == "client_disconnected"
    assert whole.cancelled == 1 and not tasks[1].cancelling()
    futures[2].set_result("answer 2")
    assert await tasks[2] == "answer 2"
    assert not watch._waiting and not watch._left
    await asyncio.sleep(0.05)
    assert watch._handle is None  # nobody waits: no timer


async def test_a_cancellation_that_is_not_the_watchs_goes_on(patched):
    futures, whole = patched
    t = turns()
    watch = t.watch
    client = tflow.tclient_conn()
    client.state = ConnectionState.OPEN
    task = asyncio.ensure_future(answer_whole(t, client))
    await asyncio.sleep(0)
    task.cancel()  # mitmproxy shutting down, say
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not watch._waiting


async def test_an_answer_complete_before_the_watchs_cancel_landed_is_kept(patched):
    futures, whole = patched
    t = turns()
    watch = t.watch
    client = tflow.tclient_conn()
    client.state = ConnectionState.OPEN

    async def whole_that_finishes(ex):
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            return "answered anyway", None  # e.g. a step that swallows the cancellation and returns what it has
    t._fetch = whole_that_finishes  # type: ignore[method-assign]
    task = asyncio.ensure_future(answer_whole(t, client))
    await asyncio.sleep(0)
    client.state = ConnectionState.CAN_WRITE
    assert await task == "answered anyway"
    assert task.cancelling() == 0 and not watch._left
