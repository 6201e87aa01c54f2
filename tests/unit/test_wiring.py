"""The composition (wiring.py): one turn for every transport, the checks before upstream handed in as one list
in their order (the drain, the context guard, then a named key's limits), the Responses transports given the turn and
the store, never the addon."""

from __future__ import annotations

from qwen_gateway.wiring import Wiring


def test_every_transport_runs_the_one_turn_with_the_checks_in_order():
    w = Wiring(observers=[])
    # the cache fixes before anything reads the request; the route before the guard; the team's cache turns last
    assert w.turns.checks == (w.drain.check, w.fix_cache_noise, w.route, w.check_context, w.team.limit,
                              w.diagnoser.recall)
    assert w.relay.runner is w.turns and w.sockets.turns.runner is w.turns and w.background.runner is w.turns
    assert w.sockets.turns.dialect.endpoint is w.endpoints["/responses"]
    assert w.turns.open_upstream == w.engine.open and w.turns.settlement is w.settle


def test_a_stream_is_copied_onto_its_flow_only_for_a_reader(tmp_path):
    """Decided when options are configured (relay.stream_capture): plain options copy nothing, a flow file
    (save_stream_file, -w) the stream's first MiB."""
    from mitmproxy.addons import save
    from mitmproxy.test import taddons

    from qwen_gateway.addon import QwenGateway
    from qwen_gateway.turn.relay import STREAM_CAPTURE

    gw = QwenGateway()
    with taddons.context(gw, save.Save()) as tctx:
        gw.configure(set(tctx.options.keys()))
        assert gw.relay.capture == 0
        tctx.options.update(save_stream_file=str(tmp_path / "flows.mitm"))
        gw.configure({"save_stream_file"})
        assert gw.relay.capture == STREAM_CAPTURE


def test_the_collector_paused_at_load_runs_again_even_if_the_start_fails(monkeypatch):
    """addons/qwen.py pauses CPython's collector as it loads (seams/collector.py); the start's last step turns it on:
    a step before it that raises must not leave the gateway serving with no collection at all."""
    import pytest
    from mitmproxy.test import taddons

    from qwen_gateway import wiring

    settled: list[object] = []
    w = Wiring(observers=[])
    monkeypatch.setattr(wiring.collector, "settle", settled.append)
    monkeypatch.setattr(w, "_start", lambda: 1 / 0)
    with taddons.context(), pytest.raises(ZeroDivisionError):  # a master, as mitmproxy's `running` has
        w.start()
    assert len(settled) == 1


def test_an_upstream_client_replaced_outside_an_event_loop_leaves_no_coroutine_unawaited(tmp_path):
    """A configure with no running loop (a script, these tests) that replaces the upstream client: its close
    was a coroutine made and dropped (RuntimeWarning: never awaited); there is nothing open to close then."""
    import gc
    import warnings

    from mitmproxy.addons import save
    from mitmproxy.test import taddons

    from qwen_gateway.addon import QwenGateway

    gw = QwenGateway()
    with warnings.catch_warnings(record=True) as caught, taddons.context(gw, save.Save()) as tctx:
        warnings.simplefilter("always")
        gw.configure(set(tctx.options.keys()))
        tctx.options.update(save_stream_file=str(tmp_path / "flows.mitm"))
        gw.configure({"save_stream_file"})
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]


def test_the_stores_keep_each_keys_newest_qwen_stored_per_key_as_it_is_now(tmp_path, monkeypatch):
    """Read at each use of the store, so a change made while the gateway runs (mitmweb's options) holds at once,
    for the stored Responses and the stored chat completions alike."""
    from mitmproxy.test import taddons

    from qwen_gateway.addon import QwenGateway
    from qwen_gateway.api.stored_chat.endpoint import chats_of

    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path))
    gw = QwenGateway()
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        chats = chats_of(gw._responses)
        assert gw._responses().per_key == chats().per_key == 10_000
        tctx.options.update(qwen_stored_per_key=3)
        gw.configure({"qwen_stored_per_key"})
        assert gw._responses().per_key == chats().per_key == 3
