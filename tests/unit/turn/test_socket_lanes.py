"""A Responses WebSocket's lanes (turn/socket_lanes.py): FIFO within a `stream_id`, lanes side by side, at
most MAX_LANES at once, the connection told when the last one ends, each message's `done` once its turn has run
(its read-ahead given back); closing cancels every lane's turn."""

from __future__ import annotations

import asyncio

from qwen_gateway.turn.socket_lanes import MAX_LANES, Lanes


async def test_lanes_run_beside_each_other_each_in_the_order_sent():
    gates = {lane: asyncio.Event() for lane in ("a", "b")}
    ran: list[tuple[str | None, object]] = []
    rests = []

    async def run(message, size, lane):
        ran.append((lane, message))
        if lane in gates:
            await gates[lane].wait()

    async def drain():
        pass

    done: list[object] = []

    def answered(message):
        return lambda: done.append(message)

    lanes = Lanes(run, drain, lambda: rests.append(len(ran)))
    assert await lanes.put("a", "a1", 2, answered("a1")) and await lanes.put("a", "a2", 2, answered("a2"))
    assert await lanes.put("b", "b1", 2, answered("b1"))
    await asyncio.sleep(0)
    assert ran == [("a", "a1"), ("b", "b1")]  # b is not behind a; a2 waits for a1
    for i in range(MAX_LANES - 2):
        assert await lanes.put(f"more{i}", i, 1, answered(i))
    assert not await lanes.put("one too many", "x", 1, answered("x"))
    await asyncio.sleep(0)
    assert rests == [] and "a1" not in done and "x" not in done  # lanes a and b still run
    gates["a"].set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert ("a", "a2") in ran and not rests and done[-2:] == ["a1", "a2"]
    gates["b"].set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert lanes.queues == {} and len(rests) == 1  # the last lane's end: the connection rests
    assert sorted(map(str, done)) == sorted(["a1", "a2", "b1", *map(str, range(MAX_LANES - 2))])
    assert await lanes.put("a", "a3", 2, answered("a3"))  # a lane that ended opens again


async def test_closing_cancels_every_lane_and_rests_no_more():
    cancelled = []
    rests = []

    async def run(message, size, lane):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(lane)
            raise

    async def drain():
        pass

    lanes = Lanes(run, drain, lambda: rests.append(1))
    await lanes.put(None, "x", 1, lambda: None)
    await lanes.put("b", "y", 1, lambda: None)
    await asyncio.sleep(0)
    await lanes.close()
    assert sorted(cancelled, key=str) == [None, "b"] and rests == []
