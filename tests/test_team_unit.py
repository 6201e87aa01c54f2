"""The team gateway's parts, one by one: prices, billing by base URL, the rate limiter and its leases, the spend
book, the key check, refusals, and what the ledger, the request line and the mitmweb summary show."""

from __future__ import annotations

import asyncio
import calendar
import json

import pytest

from qwen_gateway import prices
from qwen_gateway.auth.base import KEY, Credential
from qwen_gateway.auth.plans import PRESETS, billing_of
from qwen_gateway.door import refusals
from qwen_gateway.door.keyring import Keyring, KeyRecord, digest, new_key
from qwen_gateway.door.limits import RPM, TPM, Limiter, MemoryGrants, Taken, shared_chunk
from qwen_gateway.door.spend import SpendBook
from qwen_gateway.door.team import INVALID, PENDING, Team
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.mitmweb.flowview import summary_line
from qwen_gateway.observe.ledger import row_of
from qwen_gateway.observe.requestlog import format_line

USAGE = {"prompt_tokens": 1_000, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 400}}


# ---- prices -----------------------------------------------------------------------------------------------

def test_the_built_in_table_prices_by_billing_model_and_prompt_tier():
    t = prices.builtin()
    amount, unit = t.cost("payg:intl", "qwen3-coder-plus", USAGE)
    assert unit == "USD" and amount == pytest.approx((600 * 1.0 + 400 * 0.2 + 200 * 5.0) / 1e6)
    big = {"prompt_tokens": 40_000, "completion_tokens": 10}  # over 32K: every token at the second tier
    assert t.cost("payg:intl", "qwen3-coder-plus", big)[0] == pytest.approx((40_000 * 1.8 + 10 * 9.0) / 1e6)
    assert t.cost("payg:intl", "qwen3-coder-plus-2025-09-23", USAGE) == t.cost("payg:intl", "qwen3-coder-plus", USAGE)
    thinking = {"prompt_tokens": 100, "completion_tokens": 100, "completion_tokens_details": {"reasoning_tokens": 50}}
    assert t.cost("payg:intl", "qwen-plus", thinking)[0] == pytest.approx((100 * 0.4 + 100 * 4.0) / 1e6)
    assert t.cost("payg:cn", "qwen3-coder-plus", USAGE)[0] < t.cost("payg:intl", "qwen3-coder-plus", USAGE)[0]
    assert t.cost("coding", "qwen3-coder-plus", USAGE) == (1.0, "requests")
    assert t.cost("token", "qwen3.6-plus", USAGE) == (1200.0, "tokens")
    assert t.cost("", "qwen3-coder-plus", USAGE) is None  # an OAuth login, a web session: no known price
    assert t.cost("payg:intl", "no-such-model", USAGE) is None
    assert t.cost("payg:intl", "qwen3-coder-plus", None) is None
    assert "model-pricing" in t.source and "2026" in t.source


def test_a_user_file_overrides_and_extends_the_table(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({
        "payg:intl": {"qwen3-coder-plus": {"input": 10, "output": 20}},
        "*": {"my-model": {"tiers": [{"up_to": 100, "input": 1, "output": 2}, {"input": 3, "output": 4}]}},
        "coding": {"unit": "tokens"}}))
    t = prices.load(str(f))
    assert t.cost("payg:intl", "qwen3-coder-plus", USAGE)[0] == pytest.approx((1000 * 10 + 200 * 20) / 1e6)
    assert t.cost("payg:intl", "qwen3-max", USAGE) == prices.builtin().cost("payg:intl", "qwen3-max", USAGE)
    assert t.cost("", "my-model", {"prompt_tokens": 50, "completion_tokens": 1})[0] == pytest.approx(52 / 1e6)
    assert t.cost("payg:us", "my-model", {"prompt_tokens": 500, "completion_tokens": 1})[0] == pytest.approx(1504 / 1e6)
    assert t.cost("coding", "x", USAGE) == (1200.0, "tokens")
    assert str(f) in t.source


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "is not JSON"),
    ("[]", "must hold an object of billings"),
    ('{"payg:intl": {"m": {"input": 1}}}', "needs input and output"),
    ('{"payg:intl": {"m": {"tiers": [{"input": 1, "output": 1}, {"input": 2, "output": 2}]}}}', "needs up_to"),
    ('{"coding": {"unit": "euros"}}', '"unit" is "requests" or "tokens"'),
    ('{"*": {"m": {"input": -1, "output": 1}}}', "numbers ≥ 0"),
])
def test_a_bad_price_file_is_refused_with_what_is_wrong(tmp_path, content, message):
    f = tmp_path / "prices.json"
    f.write_text(content)
    with pytest.raises(ValueError, match="qwen_prices_file") as e:
        prices.load(str(f))
    assert message in str(e.value)
    with pytest.raises(ValueError, match="cannot read"):
        prices.load(str(tmp_path / "missing.json"))


def test_accounts_are_billed_by_their_base_url():
    assert {p.name: billing_of(p.base_url) for p in PRESETS.values()} == {
        "dashscope-intl": "payg:intl", "dashscope-cn": "payg:cn", "dashscope-us": "payg:us",
        "coding-plan": "coding", "coding-plan-intl": "coding", "token-plan-cn": "token", "token-plan-intl": "token"}
    assert billing_of("https://ws-1.cn-beijing.maas.aliyuncs.com/compatible-mode/v1") == "payg:cn"
    assert billing_of("https://ws-1.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1") == "payg:intl"
    assert billing_of("https://ws-1.us-east-1.maas.aliyuncs.com/compatible-mode/v1") == "payg:us"
    assert billing_of("https://portal.qwen.ai/v1") == billing_of("http://127.0.0.1:9999/v1") == ""


# ---- the rate limiter -------------------------------------------------------------------------------------

async def test_one_gateway_admits_exactly_the_limit_under_concurrency():
    limiter = Limiter(MemoryGrants())
    got = await asyncio.gather(*(limiter.take("k", RPM, 1, 5) for _ in range(20)))
    taken = [g for g in got if isinstance(g, Taken)]
    assert len(taken) == 5
    assert all(55 <= g <= 60 for g in got if not isinstance(g, Taken))  # seconds until the oldest leaves


def test_the_window_slides_and_settling_changes_what_counts():
    grants = MemoryGrants()
    assert grants.take_now("k", RPM, 1, 2, now=100.0)[0] == 1
    assert grants.take_now("k", RPM, 1, 2, now=130.0)[0] == 1
    granted, _, retry = grants.take_now("k", RPM, 1, 2, now=150.0)
    assert granted == 0 and retry == pytest.approx(10.0)
    assert grants.take_now("k", RPM, 1, 2, now=160.5)[0] == 1  # the first left the window
    _, tpm_id, _ = grants.take_now("k", TPM, 100, 300, now=200.0)
    grants.settle("k", TPM, tpm_id, 150)  # Qwen reported 250 tokens, not the 100 reserved
    assert grants.take_now("k", TPM, 60, 300, now=201.0)[0] == 0
    assert grants.take_now("k", TPM, 50, 300, now=201.0)[0] == 50


class CountingGrants(MemoryGrants):
    """A backend with leases (as the shared database's): counts its round trips."""

    lease = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.settled: list[int] = []

    def chunk(self, limit: int, want: int) -> int:
        return shared_chunk(limit, want)

    def try_now(self, name, kind, want, limit):
        return None  # it must be asked, as the database is

    async def take(self, name, kind, want, chunk, limit):
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: other requests run meanwhile
        granted, grant, retry = self.take_now(name, kind, chunk, limit)
        return (granted, grant, retry) if granted else self.take_now(name, kind, want, limit)

    def settle(self, name, kind, grant, delta):
        self.settled.append(delta)
        super().settle(name, kind, grant, delta)


async def test_leases_make_round_trips_rare_for_generous_limits_and_exact_for_small_ones():
    generous = CountingGrants()
    limiter = Limiter(generous)
    got = await asyncio.gather(*(limiter.take("big", RPM, 1, 6000) for _ in range(300)))
    assert all(isinstance(g, Taken) for g in got)
    assert generous.calls == 3  # chunks of 6000/60 = 100: one round trip per 100 requests
    small = CountingGrants()
    limiter = Limiter(small)
    got = await asyncio.gather(*(limiter.take("small", RPM, 1, 5) for _ in range(20)))
    assert sum(isinstance(g, Taken) for g in got) == 5 and small.calls == 20  # chunk 1: every request asks
    limiter = Limiter(generous)
    assert isinstance(await limiter.take("leftover", RPM, 1, 6000), Taken)
    limiter._leases[("leftover", RPM)].until = 0  # the lease expired unspent
    limiter.sweep()
    assert generous.settled == [-99]  # what it did not spend is given back


# ---- spend ------------------------------------------------------------------------------------------------

def test_the_spend_book_counts_days_and_months_in_utc_and_keeps_what_was_not_written():
    noon = calendar.timegm((2026, 5, 31, 12, 0, 0))
    book = SpendBook()
    book.charge("k", requests=1, tokens=100, usd=0.5, now=noon)
    assert book.spent("k", noon).tokens_today == 100 and book.spent("k", noon).usd_month == 0.5
    pending = book.take_pending()
    assert list(pending) == [("k", "2026-05-31")]
    book.written(pending, ok=False)  # the database was down: kept for the next batch
    assert book.pending[("k", "2026-05-31")].tokens == 100
    tomorrow = noon + 86400  # June: a new day and a new month
    assert book.spent("k", tomorrow).tokens_today == 0 and book.spent("k", tomorrow).usd_month == 0


# ---- the door ---------------------------------------------------------------------------------------------

def test_the_key_check():
    alice, bob = new_key(), new_key()
    team = Team()
    assert team.check(b"", ()) == (None, None)  # no keys at all: open
    assert team.check(b"flat", (b"flat",)) == (None, None) and team.check(b"x", (b"flat",)) == (INVALID, None)
    recs = (KeyRecord("alice", digest(alice.encode())), KeyRecord("bob", digest(bob.encode()), revoked=True))
    team.ring = Keyring(recs)
    assert team.check(alice.encode(), ()) == (None, recs[0])
    refusal, rec = team.check(bob.encode(), ())
    assert rec == recs[1] and refusal.status == 401 and "revoked" in refusal.message
    assert team.check(b"", ()) == (INVALID, None) and team.check(alice[:-1].encode(), ()) == (INVALID, None)
    assert team.check(b"flat", (b"flat",)) == (None, None)  # the keys file keeps working
    team.ring = Keyring(loaded=False)  # the shared database not read yet
    assert team.check(alice.encode(), ()) == (PENDING, None)
    assert team.check(b"flat", (b"flat",)) == (None, None)


def test_budget_refusals_name_the_budget_and_when_it_resets():
    rec = KeyRecord("ci", daily_tokens=1000, monthly_usd=5)
    now = calendar.timegm((2026, 12, 31, 22, 30, 0))
    daily = refusals.over_daily(rec, 1234, now)
    assert daily.status == 429 and daily.code == daily.type == "insufficient_quota"
    assert "1,234 of 1,000 tokens today" in daily.message and "in 1 h 30 min" in daily.message
    assert daily.headers == {"retry-after": "5400", "x-should-retry": "false"}
    monthly = refusals.over_monthly(rec, 5.25, now)
    assert "$5.25 of $5.00 this month" in monthly.message and "resets on 2027-01-01" in monthly.message
    limited = refusals.rate_limited(KeyRecord("ci", rpm=5), RPM, 12.2)
    assert limited.headers == {"retry-after": "13"} and limited.type == "requests"


# ---- where the key's name and the cost show ----------------------------------------------------------------

def test_the_ledger_the_request_line_and_the_summary_show_the_key_name_and_cost_never_the_key():
    key = new_key()
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions", f"{key[:3]}…"))
    ex.route, ex.requested_model, ex.upstream_model, ex.status = "chat.completions", "gpt-4o", "qwen3-coder-plus", 200
    ex.cred = Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-x", billing="payg:intl")
    ex.usage, ex.key_name = USAGE, "alice"
    ex.cost, ex.cost_unit = prices.builtin().cost("payg:intl", "qwen3-coder-plus", USAGE)
    row = row_of(ex)
    assert row["key_name"] == "alice" and row["cost"] == ex.cost and row["cost_unit"] == "USD"
    line = format_line(ex)
    assert "key=alice" in line and "cost=$0.001680" in line
    summary = summary_line(ex)
    assert "key alice" in summary and "$0.001680" in summary
    meta = json.dumps(ex.to_meta())
    assert '"key": "alice"' in meta and key not in meta + line + summary
