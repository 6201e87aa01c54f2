"""Turns a stopping gateway ends (turn/stopping.py): a turn inside `running()` that is cut raises Stopping; any
other cancellation goes on as it was; a turn costs no generator to enter."""

from __future__ import annotations

import asyncio
import sys

import pytest

from qwen_gateway.errors import Ended
from qwen_gateway.tenancy.refusals import ended_in_flight
from qwen_gateway.turn.stopping import Interruptible, Stopping


async def running(cuts: Interruptible, key: str = "") -> asyncio.Task:
    """A turn (of the named key `key`) inside `cuts.running()`, waiting there."""
    inside = asyncio.Event()

    async def turn():
        with cuts.running(key):
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(turn())
    await inside.wait()
    return task


async def test_a_cut_turn_stops_with_the_clients_error_and_is_forgotten():
    cuts = Interruptible()
    task = await running(cuts)
    assert cuts.cut() == 1
    with pytest.raises(Stopping) as stopped:
        await task
    assert stopped.value.status == 503 and stopped.value.__suppress_context__
    assert task.cancelling() == 0 and cuts.cut() == 0  # uncancelled, and no longer running


async def test_a_keys_turns_end_with_its_refusal_and_no_other_turn_is_touched():
    cuts = Interruptible()
    alice, alice_too, bob, nameless = [await running(cuts, k) for k in ("alice", "alice", "bob", "")]
    assert cuts.cut("alice", lambda: ended_in_flight("alice", "revoked")) == 2
    for task in (alice, alice_too):
        with pytest.raises(Ended) as ended:
            await task
        assert ended.value.status == 401 and ended.value.code == "invalid_api_key"
        assert "'alice' was revoked while this request ran" in ended.value.message
    assert alice.exception() is not alice_too.exception()  # one error each: tracebacks never shared
    assert not bob.done() and not nameless.done()
    assert cuts.cut() == 2  # the rest, at a stop
    for task in (bob, nameless):
        with pytest.raises(Stopping):
            await task


async def test_another_cancellation_goes_on():
    cuts = Interruptible()
    task = await running(cuts)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cuts.cut() == 0


async def test_outside_a_task_nothing_is_tracked():
    cuts = Interruptible()
    with cuts.running():
        pass
    assert cuts.cut() == 0


async def test_entering_a_turn_runs_no_generator():
    """A @contextmanager costs a generator and its wrapper's calls for every turn; three calls are the floor
    (running, __enter__, __exit__)."""
    cuts, calls = Interruptible(), []
    sys.setprofile(lambda frame, event, arg: calls.append(frame.f_code.co_name) if event == "call" else None)
    try:
        with cuts.running():
            pass
    finally:
        sys.setprofile(None)
    assert calls == ["running", "__init__", "__enter__", "__exit__"]
