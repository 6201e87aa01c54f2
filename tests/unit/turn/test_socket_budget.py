"""The Responses WebSocket's budget of bytes held ahead of turns (turn/socket_budget.py): a message counted
from its first byte in mitmproxy until its turn has ended — gathered, in transit to the gateway's server, held —
per connection and for all together; the refusals past each; what a connection held given back when it closes."""

from __future__ import annotations

from qwen_gateway.turn.socket_budget import MiB, ReadAhead, close_code


def test_a_message_counts_once_from_its_first_byte_to_its_turns_end():
    budget = ReadAhead(per_connection=64 * MiB, limit=256 * MiB)
    assert budget.gathering("c1", 5 * MiB) is None and budget.total == 5 * MiB
    assert budget.gathering("c1", 8 * MiB) is None and budget.total == 8 * MiB  # its size so far, not a sum
    budget.relayed("c1", 8 * MiB)  # whole: from mitmproxy's gathering to its transit
    budget.gathering("c1", 1 * MiB)  # the next message begins
    assert budget.total == 9 * MiB
    account, held, refused = budget.received("c1")
    assert (held, refused, account.held, budget.total) == (8 * MiB, None, 8 * MiB, 9 * MiB)
    account.release(held)  # its turn ended
    account.release(held)  # (once: nothing more to give)
    assert account.held == 0 and budget.total == 1 * MiB


def test_a_connection_past_its_own_budget_is_refused_429_and_all_together_503():
    budget = ReadAhead()
    budget.configure(max_message=32 * MiB, limit=96 * MiB)
    assert budget.per_connection == 64 * MiB
    for _ in range(2):
        budget.gathering("c1", 32 * MiB)
        budget.relayed("c1", 32 * MiB)
        budget.received("c1")
    refused = budget.gathering("c1", 1)
    assert refused.status == 429 and refused.code == "websocket_read_ahead_limit_reached"
    assert "64 MiB" in refused.message and close_code(refused) == 1008
    assert budget.gathering("c2", 31 * MiB) is None  # within 96 MiB together (with c1's refused byte)
    refused = budget.gathering("c3", 2 * MiB)
    assert refused.status == 503 and refused.code == "server_overloaded" and close_code(refused) == 1013
    assert "96 MiB" in refused.message and "qwen_websocket_read_ahead_mb" in refused.message


def test_a_connection_that_closes_gives_back_all_it_held():
    budget = ReadAhead(per_connection=64 * MiB, limit=96 * MiB)
    budget.gathering("c1", 30 * MiB)
    budget.relayed("c1", 30 * MiB)
    account, held, _ = budget.received("c1")
    budget.relayed("c1", 20 * MiB)  # relayed, not read by the server yet
    budget.gathering("c1", 10 * MiB)
    budget.gathering("c2", 6 * MiB)
    assert budget.total == 66 * MiB
    budget.close("c1")
    assert budget.total == 6 * MiB
    account.release(held)  # its turn cancelled after the close: nothing given twice
    budget.close("c1")
    assert budget.total == 6 * MiB
    assert budget.gathering("c3", 60 * MiB) is None  # there is room again


def test_the_server_refuses_what_mitmproxy_gathered_unbounded():
    """Without the seam (another mitmproxy) nothing is counted while gathered: the server's read refuses it."""
    budget = ReadAhead(per_connection=64 * MiB, limit=256 * MiB)
    budget.relayed("c1", 40 * MiB)
    assert budget.received("c1")[2] is None
    budget.relayed("c1", 40 * MiB)
    refused = budget.received("c1")[2]
    assert refused is not None and refused.status == 429
