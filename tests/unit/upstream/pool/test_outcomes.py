"""What the pool does with each outcome (upstream/pool/outcomes.py)."""

from __future__ import annotations

import time

import pytest

from qwen_gateway.upstream.pool import outcomes
from qwen_gateway.upstream.pool.pool import AccountPool


def test_an_unknown_outcome_is_refused_and_an_unreachable_server_cools_alone(state):
    pool = AccountPool([], state)
    with pytest.raises(ValueError, match="unknown outcome"):
        outcomes.report(pool, "a", "exploded")
    outcomes.report(pool, "a", "unreachable", retry_after=8, detail="/health answered 503")
    row = state.get("a")
    assert row["last_error"] == "unreachable: /health answered 503" and row["cooldown_until"] > time.time() + 7
