"""The Responses WebSocket's record on its flow (turn/socket_flow.py's `trim_messages`, run by the addon's
`websocket_message` hook before mitmproxy relays the newest message, and `trim_ended` at `websocket_end`): the
newest messages kept, and of each one already relayed — of every one, once the socket ended — at most
KEEP_MESSAGE_BYTES."""

from __future__ import annotations

from mitmproxy.test import tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from qwen_gateway.turn.socket_flow import (KEEP_FLOW_MESSAGES, KEEP_MESSAGE_BYTES, trim_ended,
                                                     trim_messages)


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



def test_a_socket_that_ended_keeps_its_newest_messages_cut_too():
    """mitmproxy's flow outlives its socket in reference cycles: the newest message, up to qwen_max_body_mb, is cut
    as the older ones were once the socket ends."""
    flow = tflow.twebsocketflow()
    flow.websocket.messages = [text(b"a" * (2 * KEEP_MESSAGE_BYTES)), text(b"b" * (3 * KEEP_MESSAGE_BYTES))]
    trim_messages(flow)
    assert len(flow.websocket.messages[-1].content) == 3 * KEEP_MESSAGE_BYTES  # the newest, whole while live
    trim_ended(flow)
    assert all(len(m.content) < KEEP_MESSAGE_BYTES + 100 for m in flow.websocket.messages)
    assert flow.websocket.messages[-1].content.endswith(b"(786432 bytes; the rest is not kept on the flow)")
