"""The team gateway's parts, one by one: prices, billing by base URL, the rate limiter and its leases, the spend
book, the key check, refusals, and what the ledger, the request line and the mitmweb summary show."""

from __future__ import annotations

import asyncio
import calendar
import json

import pytest

from qwen_gateway.pricing import prices
from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.auth.plans import PRESETS, billing_of
from mitmproxy.test import tflow

from qwen_gateway.ingress.client_keys import log_lines, rate_headers, refusals
from qwen_gateway.ingress.client_keys.ring import Keyring, KeyRecord, digest, new_key
from qwen_gateway.ingress.client_keys.limits import RPM, TPM, Answer, Limiter, MemoryGrants, Taken, shared_chunk
from qwen_gateway.ingress.client_keys.outage import OutageNote
from qwen_gateway.ingress.client_keys.spend import SpendBook
from qwen_gateway.ingress.client_keys.team import NO_KEY, PENDING, Team
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
    refused = grants.take_now("k", RPM, 1, 2, now=150.0)
    assert refused.granted == 0 and refused.retry_after == pytest.approx(10.0)
    assert refused.used == 2 and refused.reset_after == pytest.approx(40.0)  # when the newest leaves
    assert grants.take_now("k", RPM, 1, 2, now=160.5)[0] == 1  # the first left the window
    tpm_id = grants.take_now("k", TPM, 100, 300, now=200.0).grant
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
        got = self.take_now(name, kind, chunk, limit)
        return got if got.granted else self.take_now(name, kind, want, limit)

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
    assert team.check(b"flat", (b"flat",)) == (None, None)
    assert team.check(b"x", (b"flat",)) == (refusals.no_key(True, False, False), None)
    recs = (KeyRecord("alice", digest(alice.encode())), KeyRecord("bob", digest(bob.encode()), revoked=True))
    team.ring = Keyring(recs)
    assert team.check(alice.encode(), ()) == (None, recs[0])
    refusal, rec = team.check(bob.encode(), ())
    assert rec == recs[1] and refusal.status == 401 and "revoked" in refusal.message
    assert team.check(b"", ()) == (refusals.no_key(False, True, False), None)
    assert team.check(alice[:-1].encode(), ()) == (refusals.no_key(True, True, False), None)
    assert team.check(b"flat", (b"flat",)) == (None, None)  # the keys file keeps working
    team.ring = Keyring(recs[1:])  # revoked keys only: every request still needs a key, and none passes
    assert team.ring.required and team.check(b"", ())[0].status == 401
    team.ring = Keyring(locked=True)  # no key left, listening beyond loopback: shut
    assert team.check(b"", ())[0].status == 401 and team.status() == {"active": 0, "revoked": 0, "state": "read"}
    team.ring = Keyring(loaded=False)  # the shared database not read yet
    assert team.check(alice.encode(), ()) == (PENDING, None)
    assert team.check(b"flat", (b"flat",)) == (None, None)
    assert team.status() == {"state": "unread"}


async def test_a_gateway_that_never_read_its_keys_refuses_every_request_it_cannot_check():
    team = Team()
    team.ring = Keyring(loaded=False)  # no first read to wait for (no database configured): it failed
    for presented in (NO_KEY, digest(b"sk-qg-any")):
        refusal, rec = await team.late_check(presented, flat=False)
        assert refusal.status == 503 and refusal.code == "state_unavailable" and rec is None
        assert "named client keys" in refusal.message
    team.ring = Keyring((KeyRecord("alice", digest(b"k")),))  # read meanwhile
    assert await team.late_check(digest(b"k"), flat=False) == (None, team.ring.records[0])
    assert (await team.late_check(NO_KEY, flat=False))[0].message.startswith("You didn't provide an API key.")


def test_the_401_says_how_to_get_a_key_and_on_the_gateways_machine_where_they_are_listed():
    team = Team()
    team.ring = Keyring((KeyRecord("alice", digest(b"k")),))
    near, far = tflow.tflow(), tflow.tflow()
    near.client_conn.peername = ("127.0.0.1", 50000)
    far.client_conn.peername = ("10.1.2.3", 50000)
    for flow, listed in ((near, True), (far, False)):
        for presented, first in ((b"", "You didn't provide an API key."), (b"wrong", "Incorrect API key provided.")):
            refusal, _ = team.check(presented, (), flow)
            assert refusal.status == 401 and refusal.code == "invalid_api_key"
            assert refusal.message.startswith(first) and "qwen-keys add NAME" in refusal.message
            assert ("`qwen-keys list` shows the gateway's named keys" in refusal.message) is listed
    flat_only = Team()
    refusal, _ = flat_only.check(b"", (b"flat",), near)
    assert "qwen_client_keys_file" in refusal.message and "qwen-keys" not in refusal.message


def test_budget_refusals_name_the_budget_and_when_it_resets():
    rec = KeyRecord("ci", daily_tokens=1000, monthly_usd=5)
    now = calendar.timegm((2026, 12, 31, 22, 30, 0))
    daily = refusals.over_daily(rec, 1234, now=now)
    assert daily.status == 429 and daily.code == daily.type == "insufficient_quota"
    assert "1,234 of 1,000 tokens today" in daily.message and "in 1 h 30 min" in daily.message
    assert daily.headers == {"x-should-retry": "false"}  # no Retry-After: hours away, beyond any window
    monthly = refusals.over_monthly(rec, 5.25, now=now)
    assert "$5.25 of $5.00 this month" in monthly.message and "resets on 2027-01-01" in monthly.message
    limited = refusals.rate_limited(KeyRecord("ci", rpm=5), RPM, 12.2)
    assert limited.headers == {"retry-after": "13"} and limited.type == "requests"


def test_on_the_messages_api_a_spent_budget_is_anthropics_spend_limit_400():
    rec = KeyRecord("ci", daily_tokens=1000, monthly_usd=5)
    now = calendar.timegm((2026, 12, 31, 22, 30, 0))
    daily = refusals.over_daily(rec, 1234, "anthropic", now)
    assert daily.status == 400 and daily.type == "invalid_request_error"
    assert daily.headers == {"x-should-retry": "false"}  # Claude Code re-sends a 400 (fewer betas) otherwise
    assert daily.message.startswith("You have reached your specified API usage limits. You will regain access on "
                                    "2027-01-01 at 00:00 UTC. (key 'ci': 1,234 of 1,000 tokens today")
    monthly = refusals.over_monthly(rec, 5.25, "anthropic", calendar.timegm((2026, 5, 31, 12, 0, 0)))
    assert monthly.status == 400 and "regain access on 2026-06-01 at 00:00 UTC." in monthly.message


def test_rate_limit_headers_as_each_api_writes_them():
    assert [rate_headers.duration(s) for s in (0, 0.25, 1, 59.2, 60, 62, 360)] == \
        ["0s", "250ms", "1s", "1m0s", "1m0s", "1m2s", "6m0s"]
    now = calendar.timegm((2026, 5, 31, 12, 0, 0))
    states = [("requests", 5, 4, 60.0), ("tokens", 1000, 900, 0.5)]
    assert rate_headers.headers("openai", states, now) == {
        "x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "4", "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "500ms"}
    assert rate_headers.headers("anthropic", states, now) == {
        "anthropic-ratelimit-requests-limit": "5", "anthropic-ratelimit-requests-remaining": "4",
        "anthropic-ratelimit-requests-reset": "2026-05-31T12:01:00Z", "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "900", "anthropic-ratelimit-tokens-reset": "2026-05-31T12:00:01Z",
        # the key's one budget counts input and output tokens together: Anthropic's input and output headers say so
        "anthropic-ratelimit-input-tokens-limit": "1000", "anthropic-ratelimit-input-tokens-remaining": "900",
        "anthropic-ratelimit-input-tokens-reset": "2026-05-31T12:00:01Z",
        "anthropic-ratelimit-output-tokens-limit": "1000", "anthropic-ratelimit-output-tokens-remaining": "900",
        "anthropic-ratelimit-output-tokens-reset": "2026-05-31T12:00:01Z"}


async def test_the_limiter_says_what_is_left_and_when_the_window_is_empty():
    limiter = Limiter(MemoryGrants())
    assert limiter.state("k", RPM, 3) == (3, 0.0)  # nothing taken: all of it, now
    await limiter.take("k", RPM, 1, 3)
    await limiter.take("k", RPM, 1, 3)
    left, reset = limiter.state("k", RPM, 3)
    assert left == 1 and 59 < reset <= 60
    await limiter.take("k", RPM, 1, 3)
    assert isinstance(await limiter.take("k", RPM, 1, 3), float)  # refused
    assert limiter.state("k", RPM, 3)[0] == 0
    leased = Limiter(CountingGrants())  # a lease: what it still holds is the key's to use
    await leased.take("big", RPM, 1, 6000)
    assert leased.state("big", RPM, 6000)[0] == 6000 - 100 + 99
    assert MemoryGrants().take_now("x", RPM, 1, 1, now=10.0) == Answer(1, 1, 0.0, 1, 60.0)


# ---- the keys' lifecycle ----------------------------------------------------------------------------------

def test_what_the_log_says_as_the_keys_change():
    none, alice = Keyring(), Keyring((KeyRecord("alice", b"a"),))
    revoked = Keyring((KeyRecord("alice", b"a", revoked=True),))
    say = lambda old, new, first=False, flat=False: log_lines.change(old, new, first=first, where="", flat=flat,  # noqa: E731
                                                                     exposed=["regular@8080 (on 0.0.0.0)"])
    assert say(Keyring(loaded=False), alice, first=True).startswith("qwen: named client keys: 1 active, 0 revoked")
    assert say(Keyring(loaded=False), none, first=True) is None  # no keys: nothing to say
    assert "every request now needs a key" in say(none, alice)
    assert "none active, 1 revoked: every request is refused" in say(alice, revoked)
    assert "no longer requires a key" in say(revoked, none)
    assert "keys file" in say(revoked, none, flat=True)
    assert "listens beyond loopback (regular@8080 (on 0.0.0.0))" in say(revoked, Keyring(locked=True))
    assert say(alice, alice) is None


def test_a_deleted_keys_spend_is_forgotten_and_a_failing_write_is_said_once(caplog):
    caplog.set_level("INFO", "qwen")
    book = SpendBook()
    book.charge("gone", requests=1, tokens=10)
    book.charge("kept", requests=1, tokens=10)
    writing = book.take_pending()
    book.charge("gone", requests=1, tokens=5)
    book.forget("gone")
    assert set(book.totals) == {"kept"} and not book.pending and list(book.writing) == [k for k in writing if k[0] == "kept"]
    note = OutageNote("qwen: failing: %s", "qwen: back")
    for _ in range(5):
        note.failed(ConnectionError())
    note.worked()
    note.worked()
    assert [r.getMessage() for r in caplog.records] == ["qwen: failing: ConnectionError", "qwen: back"]


# ---- where the key's name and the cost show ----------------------------------------------------------------

def test_the_ledger_the_request_line_and_the_summary_show_the_key_name_and_cost_never_the_key():
    key = new_key()
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions", f"{key[:3]}…"))
    ex.route, ex.requested_model, ex.attempt.model, ex.result.status = "chat.completions", "gpt-4o", "qwen3-coder-plus", 200
    ex.attempt.cred = Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-x", billing="payg:intl")
    ex.result.usage, ex.key.name = USAGE, "alice"
    ex.result.cost, ex.result.cost_unit = prices.builtin().cost("payg:intl", "qwen3-coder-plus", USAGE)
    row = row_of(ex)
    assert row["key_name"] == "alice" and row["cost"] == ex.result.cost and row["cost_unit"] == "USD"
    line = format_line(ex)
    assert "key=alice" in line and "cost=$0.001680" in line
    summary = summary_line(ex)
    assert "key alice" in summary and "$0.001680" in summary
    meta = json.dumps(ex.to_meta())
    assert '"key": "alice"' in meta and key not in meta + line + summary


@pytest.mark.parametrize(("listen_host", "shut"), [("0.0.0.0", True), ("127.0.0.1", False)])
async def test_the_last_key_deleted_keeps_a_gateway_listening_beyond_loopback_shut(tmp_path, caplog, listen_host,
                                                                                   shut):
    from mitmproxy.test import taddons

    from qwen_gateway.settings.auth import AuthSettings
    from qwen_gateway.settings.config import Config
    from qwen_gateway.ingress.client_keys.store import KeyStore

    caplog.set_level("INFO", "qwen")
    store = KeyStore.local(tmp_path)
    store.add("alice", digest(b"k"), {})
    team = Team()
    with taddons.context() as tctx:
        tctx.options.update(listen_host=listen_host, mode=["regular"])
        team.configure(Config(auth=AuthSettings(qwen_dir=tmp_path, state_dir=tmp_path, oauth_base_url="",
                                                default_api_base="")))
        assert team.status() == {"active": 1, "revoked": 0, "state": "read"}
        store.delete("alice")
        store.close()
        await team.source._flush()  # what the gateway does every second: the file changed, read again
    assert team.ring.locked is shut and (team.check(b"", ())[0] is not None) is shut
    said = [r.getMessage() for r in caplog.records if "no named client key is left" in r.getMessage()]
    assert len(said) == 1 and ("listens beyond loopback (regular (on 0.0.0.0))" in said[0]) is shut, said
