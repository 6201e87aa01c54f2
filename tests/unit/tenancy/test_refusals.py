"""The refusals at the entrance of a gateway with client keys (tenancy/refusals.py): which ones tell the client not to
retry. A refusal no retry can fix (a missing or wrong key, a key where none is taken, a revoked key, a spent
budget, a request larger than the key's minute) carries `x-should-retry: false`, which the openai and anthropic
SDKs and Claude Code honour: without it they retried a 401 or a 503 in silence for about three minutes. A rate
limit or a database away is over in seconds: the SDKs may retry those (after Retry-After)."""

from __future__ import annotations

import pytest

from qwen_gateway.tenancy import refusals
from qwen_gateway.tenancy.ring import KeyRecord
from qwen_gateway.dialects import ANTHROPIC as ANTHROPIC_DIALECT

ANTHROPIC = ANTHROPIC_DIALECT.name

KEY = KeyRecord("alice", b"", rpm=3, tpm=1000, daily_tokens=100, monthly_usd=1.0)
NOW = 1_790_000_000.0

NO_RETRY = [
    *(refusals.no_key(presented, named, local) for presented in (True, False) for named in (True, False)
      for local in (True, False)),
    refusals.key_in_url(),
    refusals.basic_auth(),
    refusals.revoked(KeyRecord("bob", b"", revoked=True)),
    refusals.too_large(KEY, 5000),
    refusals.over_daily(KEY, 120, now=NOW),
    refusals.over_monthly(KEY, 1.5, now=NOW),
    refusals.over_daily(KEY, 120, ANTHROPIC, now=NOW),  # Anthropic's spend-limit 400: Claude Code re-sends a 400
    refusals.over_monthly(KEY, 1.5, ANTHROPIC, now=NOW),
]
RETRY = [
    refusals.rate_limited(KEY, "rpm", 20.0),
    refusals.rate_limited(KEY, "tpm", 0.5),
    refusals.keys_unread(),
    refusals.counts_unreachable(KEY),
]


@pytest.mark.parametrize("refusal", NO_RETRY, ids=lambda e: f"{e.status}-{e.code}-{e.message[:30]}")
def test_a_refusal_no_retry_can_fix_says_so(refusal):
    assert refusal.headers.get("x-should-retry") == "false"
    assert "retry-after" not in refusal.headers  # nothing to wait for


@pytest.mark.parametrize("refusal", RETRY, ids=lambda e: f"{e.status}-{e.code}")
def test_a_refusal_over_in_seconds_may_be_retried(refusal):
    assert "x-should-retry" not in refusal.headers
    assert int(refusal.headers["retry-after"]) >= 1
