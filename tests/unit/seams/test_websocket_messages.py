"""The message limit inside mitmproxy's WebSocket layer (seams/websocket_messages.py), driven with real events as
mitmproxy's own layer tests do: on the gateway's own WebSockets a message over the limit — one frame in many
reads, or many frames — is refused as it is read (the error event, a close 1009, the server side closed, the rest
dropped); a message within it, and every other WebSocket, go to mitmproxy's code untouched; on another
mitmproxy's layer the seam stays out."""

from __future__ import annotations

import json
import logging

import pytest
import wsproto
import wsproto.events
from helpers import another_mitmproxy
from mitmproxy import options
from mitmproxy.proxy import commands, context, events
from mitmproxy.proxy.layers import websocket as ws_layer
from mitmproxy.test import tflow

from qwen_gateway.seams import fingerprint, websocket_messages
from qwen_gateway.seams.websocket_messages import FRAME_COST, Bound

LIMIT = 64 << 10
OURS = "ours.example"  # the flows the bound `owns`


@pytest.fixture
def bounded():
    before = websocket_messages._bound
    refused: list[str] = []

    def refusal(flow) -> str:
        refused.append(flow.id)
        return json.dumps({"type": "error", "code": "request_too_large"})

    assert websocket_messages.install(Bound(LIMIT, lambda flow: flow.server_conn.address[0] == OURS, refusal))
    yield refused
    websocket_messages.install(before)


def started(owned: bool = True) -> tuple[ws_layer.WebsocketLayer, context.Context]:
    flow = tflow.twebsocketflow()
    flow.websocket.messages = []
    flow.server_conn.address = (OURS if owned else "elsewhere.example", 80)
    ctx = context.Context(flow.client_conn, options.Options())
    ctx.server = flow.server_conn
    layer = ws_layer.WebsocketLayer(ctx, flow)
    [hook] = list(layer.handle_event(events.Start()))
    assert isinstance(hook, ws_layer.WebsocketStartHook)
    assert list(layer.handle_event(events.HookCompleted(hook))) == []
    return layer, ctx


def client_frames(*messages: wsproto.events.Event, conn: wsproto.Connection | None = None) -> bytes:
    """What a WebSocket client sends (masked frames); `conn`: the client, for a message sent in several calls."""
    conn = conn or wsproto.Connection(wsproto.ConnectionType.CLIENT)
    return b"".join(conn.send(m) for m in messages)


def feed(layer, ctx, data: bytes) -> list:
    """The layer's commands for the client's bytes, each hook completed as mitmproxy's server would."""
    out, cmds = [], list(layer.handle_event(events.DataReceived(ctx.client, data)))
    while cmds:
        out += cmds
        hooks = [c for c in cmds if isinstance(c, commands.StartHook) and c.blocking]
        cmds = list(layer.handle_event(events.HookCompleted(hooks[-1]))) if hooks else []
    return out


def sent_to(cmds: list, conn) -> bytes:
    return b"".join(c.data for c in cmds if isinstance(c, commands.SendData) and c.connection == conn)


def server_reads(data: bytes) -> list[wsproto.events.Event]:
    server = wsproto.Connection(wsproto.ConnectionType.SERVER)
    server.receive_data(data)
    return list(server.events())


def client_reads(data: bytes) -> list[wsproto.events.Event]:
    client = wsproto.Connection(wsproto.ConnectionType.CLIENT)
    client.receive_data(data)
    return list(client.events())


def test_a_message_within_the_limit_goes_to_mitmproxy_untouched(bounded):
    layer, ctx = started()
    cmds = feed(layer, ctx, client_frames(wsproto.events.TextMessage("a" * (LIMIT // 2))))
    assert any(isinstance(c, ws_layer.WebsocketMessageHook) for c in cmds)
    [message] = server_reads(sent_to(cmds, ctx.server))
    assert message.data == "a" * (LIMIT // 2)
    assert layer.flow.websocket.messages[-1].content == b"a" * (LIMIT // 2)
    assert bounded == []


def test_a_frame_over_the_limit_is_refused_as_it_is_read_and_the_rest_dropped(bounded):
    layer, ctx = started()
    whole = client_frames(wsproto.events.TextMessage("a" * (4 * LIMIT)))
    cmds = []
    for at in range(0, LIMIT - 8192, 8192):  # within the limit, read by read: nothing refused, nothing relayed
        cmds += feed(layer, ctx, whole[at:at + 8192])
    assert cmds == []
    assert type(layer.client_ws.frame_buf[-1]) is bytearray  # grown in place
    cmds = feed(layer, ctx, whole[LIMIT - 8192:LIMIT])
    error, close = client_reads(sent_to(cmds, ctx.client))
    assert json.loads(error.data) == {"type": "error", "code": "request_too_large"}
    assert isinstance(close, wsproto.events.CloseConnection) and close.code == 1009
    [server_close] = server_reads(sent_to(cmds, ctx.server))
    assert isinstance(server_close, wsproto.events.CloseConnection) and server_close.code == 1009
    assert any(isinstance(c, commands.CloseConnection) and c.connection == ctx.server for c in cmds)
    assert any(isinstance(c, ws_layer.WebsocketEndHook) for c in cmds)
    record = layer.flow.websocket
    assert (record.close_code, record.closed_by_client, layer.flow.live) == (1009, False, False)
    assert [m.content for m in record.messages] == [error.data.encode()]  # the refusal, not the message
    assert layer.client_ws.frame_buf == [b""] and bounded == [layer.flow.id]
    # what the client still sends is dropped, until DISCARD_LIMIT or until it closes
    assert feed(layer, ctx, whole[LIMIT:]) == []
    assert feed(layer, ctx, b"") == []
    [closed] = list(layer.handle_event(events.ConnectionClosed(ctx.client)))
    assert isinstance(closed, commands.CloseConnection) and closed.connection == ctx.client


def test_a_client_that_sends_on_and_on_is_closed_after_the_discard_limit(bounded, monkeypatch):
    monkeypatch.setattr(websocket_messages, "DISCARD_LIMIT", 4 * LIMIT)
    layer, ctx = started()
    whole = client_frames(wsproto.events.TextMessage("a" * (2 * LIMIT)))
    for at in range(0, 2 * LIMIT, 8192):
        feed(layer, ctx, whole[at:at + 8192])
    assert feed(layer, ctx, b"x" * (2 * LIMIT)) == []
    [closed] = feed(layer, ctx, b"x" * (2 * LIMIT))
    assert isinstance(closed, commands.CloseConnection) and closed.connection == ctx.client


def test_each_frame_of_a_message_costs_what_holding_it_costs(bounded):
    layer, ctx = started()
    client = wsproto.Connection(wsproto.ConnectionType.CLIENT)
    frames = [wsproto.events.TextMessage("a", message_finished=False) for _ in range(LIMIT // (1 + FRAME_COST) - 1)]
    assert feed(layer, ctx, client_frames(*frames, conn=client)) == []  # just within: FRAME_COST + 1 byte each
    cmds = feed(layer, ctx, client_frames(*frames[:2], conn=client))
    assert isinstance(client_reads(sent_to(cmds, ctx.client))[-1], wsproto.events.CloseConnection)
    assert len(bounded) == 1


def test_the_count_starts_again_with_each_message(bounded):
    layer, ctx = started()
    for _ in range(8):  # eight messages of 3/4 of the limit: each within it
        cmds = feed(layer, ctx, client_frames(*[wsproto.events.TextMessage("a" * (LIMIT // 16), message_finished=False)
                                                for _ in range(11)], wsproto.events.TextMessage("b")))
        assert [type(e) for e in server_reads(sent_to(cmds, ctx.server))][-1] is wsproto.events.TextMessage
    assert bounded == [] and len(layer.flow.websocket.messages) == 8


def test_a_message_past_the_read_ahead_budget_is_refused_as_it_is_read(bounded):
    """`Bound.gathering` is told what the message holds after each read, and refuses with its own close code."""
    sizes: list[int] = []

    def gathering(flow, size):
        sizes.append(size)
        return (1013, json.dumps({"type": "error", "code": "server_overloaded"})) if size > LIMIT // 2 else None

    websocket_messages.install(Bound(LIMIT, lambda flow: True, None, gathering))
    layer, ctx = started()
    feed(layer, ctx, client_frames(wsproto.events.TextMessage("b" * 100)))  # a whole message: counted, relayed
    whole = client_frames(wsproto.events.TextMessage("a" * LIMIT))
    cmds = []
    for at in range(0, len(whole), 8192):
        cmds = feed(layer, ctx, whole[at:at + 8192])
        if cmds:
            break
    error, close = client_reads(sent_to(cmds, ctx.client))
    assert json.loads(error.data)["code"] == "server_overloaded" and close.code == 1013
    [server_close] = server_reads(sent_to(cmds, ctx.server))
    assert server_close.code == 1013 and layer.flow.websocket.close_code == 1013
    assert sizes[0] == FRAME_COST and sizes[1] < sizes[-1] and LIMIT // 2 < sizes[-1] <= LIMIT // 2 + 8192 + FRAME_COST
    assert feed(layer, ctx, whole[at + 8192:]) == []  # the rest dropped


def test_other_websockets_keep_mitmproxys_code(bounded):
    layer, ctx = started(owned=False)
    assert layer._handle_event == layer.relay_messages
    assert feed(layer, ctx, client_frames(wsproto.events.TextMessage("a" * (2 * LIMIT), message_finished=False))) == []
    assert bounded == []


def test_a_message_from_the_server_is_not_the_clients(bounded):
    layer, ctx = started()
    server = wsproto.Connection(wsproto.ConnectionType.SERVER)
    data = server.send(wsproto.events.TextMessage("s" * (2 * LIMIT)))
    cmds = list(layer.handle_event(events.DataReceived(ctx.server, data)))
    hooks = [c for c in cmds if isinstance(c, ws_layer.WebsocketMessageHook)]
    assert hooks and bounded == []  # the gateway's own events are not bounded here


@pytest.fixture
def never_installed(monkeypatch):
    """The process as if the seam had never been installed (an earlier test of this process may have)."""
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
    if "start" in websocket_messages._original:
        monkeypatch.setattr(ws_layer.WebsocketLayer, "_handle_event", websocket_messages._original["start"])
    monkeypatch.setattr(websocket_messages, "_original", {})
    monkeypatch.setattr(websocket_messages, "_bound", websocket_messages._bound)


def test_on_another_mitmproxys_websocket_layer_messages_are_left_to_it_with_one_line(never_installed, tmp_path,
                                                                                     monkeypatch, caplog):
    other = another_mitmproxy.release("mitmproxy.proxy.layers.websocket", tmp_path, monkeypatch)
    monkeypatch.setattr(ws_layer, "WebsocketLayer", other.WebsocketLayer)
    state = vars(other.WebsocketLayer)["_handle_event"]
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not websocket_messages.install(Bound(LIMIT, lambda flow: True))
        assert not websocket_messages.install(Bound(2 * LIMIT, lambda flow: True))  # configured again: no new line
    assert vars(other.WebsocketLayer)["_handle_event"] is state and not websocket_messages.installed()
    [line] = caplog.messages
    assert line.startswith("qwen: WebSocket messages bounded in mitmproxy's WebSocket layer: left out, as this "
                           "mitmproxy")
    assert "changed: WebsocketLayer, WebsocketLayer.relay_messages)" in line
    assert "gathered whole by mitmproxy" in line


def test_a_state_another_addon_replaced_is_not_the_code_either(never_installed, tmp_path, monkeypatch, caplog):
    other = another_mitmproxy.release("mitmproxy.proxy.layers.websocket", tmp_path, monkeypatch)
    monkeypatch.setattr(ws_layer.WebsocketLayer, "relay_messages", other.WebsocketLayer.relay_messages)
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not websocket_messages.install(Bound(LIMIT))
    assert "changed: WebsocketLayer.relay_messages)" in caplog.messages[0]
