"""The composition (wiring.py): one turn for every transport, the checks before upstream handed in as one list
in their order (the drain, the context guard, then a named key's limits), the Responses transports given the turn and
the store, never the addon."""

from __future__ import annotations

from qwen_gateway.wiring import Wiring


def test_every_transport_runs_the_one_turn_with_the_checks_in_order():
    w = Wiring(observers=[])
    # the cache fixes before anything reads the request; the route before the guard
    assert w.turns.checks == (w.drain.check, w.fix_cache_noise, w.route, w.check_context, w.team.limit)
    assert w.relay.runner is w.turns and w.sockets.turns.runner is w.turns and w.background.runner is w.turns
    assert w.sockets.turns.endpoint is w.endpoints["/responses"]
    assert w.turns.open_upstream == w.engine.open and w.turns.settlement is w.settle
