"""The Responses WebSocket's record on its flow (api/responses/socket.py's `trim_messages`, run by the addon's
`websocket_message` hook before mitmproxy relays the newest message): the newest messages kept, and of each one
already relayed at most KEEP_MESSAGE_BYTES."""

from __future__ import annotations

from mitmproxy.test import tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from qwen_gateway.api.responses.socket import KEEP_FLOW_MESSAGES, KEEP_MESSAGE_BYTES, trim_messages


def text(content: bytes, from_client: bool = True) -> WebSocketMessage:
    return WebSocketMessage(Opcode.TEXT, from_client, content)


def test_the_newest_messages_are_kept():
    flow = tflow.twebsocketflow()
    flow.websocket.messages = [text(b"%d" % i) for i in range(2 * KEEP_FLOW_MESSAGES + 1)]
    trim_messages(flow)
    assert [m.content for m in flow.websocket.messages] == [b"%d" % i for i in range(KEEP_FLOW_MESSAGES + 1,
                                                                                      2 * KEEP_FLOW_MESSAGES + 1)]


def test_a_relayed_message_keeps_at_most_its_first_bytes_and_the_newest_is_untouched():
    flow = tflow.twebsocketflow()
    big = "é".encode() * KEEP_MESSAGE_BYTES  # 2 bytes a character: cut between two characters
    flow.websocket.messages = [text(big), text(big)]
    trim_messages(flow)
    older, newest = flow.websocket.messages
    assert newest.content == big  # still to be relayed: as the client sent it
    assert older.content.startswith("é".encode() * (KEEP_MESSAGE_BYTES // 2))
    assert older.content.endswith(b" ... (%d bytes; the rest is not kept on the flow)" % len(big))
    assert len(older.content) < KEEP_MESSAGE_BYTES + 100
    assert older.text.startswith("é")  # still text
    small = text(b"x" * 100)
    flow.websocket.messages = [small, text(b"y")]
    trim_messages(flow)
    assert small.content == b"x" * 100


async def test_lanes_run_beside_each_other_each_in_the_order_sent():
    import asyncio

    from qwen_gateway.api.responses.socket import MAX_LANES, Lanes

    gates = {lane: asyncio.Event() for lane in ("a", "b")}
    ran: list[tuple[str | None, object]] = []
    rests = []

    async def run(message, size, lane):
        ran.append((lane, message))
        if lane in gates:
            await gates[lane].wait()

    async def drain():
        pass

    lanes = Lanes(run, drain, lambda: rests.append(len(ran)))
    assert await lanes.put("a", "a1", 2) and await lanes.put("a", "a2", 2) and await lanes.put("b", "b1", 2)
    await asyncio.sleep(0)
    assert ran == [("a", "a1"), ("b", "b1")]  # b is not behind a; a2 waits for a1
    for i in range(MAX_LANES - 2):
        assert await lanes.put(f"more{i}", i, 1)
    assert not await lanes.put("one too many", "x", 1)
    await asyncio.sleep(0)
    assert rests == []  # lanes a and b still run
    gates["a"].set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert ("a", "a2") in ran and not rests
    gates["b"].set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert lanes.queues == {} and len(rests) == 1  # the last lane's end: the connection rests
    assert await lanes.put("a", "a3", 2)  # a lane that ended opens again


async def test_closing_cancels_every_lane_and_rests_no_more():
    import asyncio

    from qwen_gateway.api.responses.socket import Lanes

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
    await lanes.put(None, "x", 1)
    await lanes.put("b", "y", 1)
    await asyncio.sleep(0)
    await lanes.close()
    assert sorted(cancelled, key=str) == [None, "b"] and rests == []
