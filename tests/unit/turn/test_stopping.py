"""Turns a stopping gateway ends (turn/stopping.py): a turn inside `running()` that is cut raises Stopping; any
other cancellation goes on as it was; a turn costs no generator to enter."""

from __future__ import annotations

import asyncio
import sys

import pytest

from qwen_gateway.turn.stopping import Interruptible, Stopping


async def running(cuts: Interruptible) -> asyncio.Task:
    """A turn inside `cuts.running()`, waiting there."""
    inside = asyncio.Event()

    async def turn():
        with cuts.running():
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
