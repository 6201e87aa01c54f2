"""The team gateway's parts, one by one: prices, billing by base URL, the key check, refusals, and what the ledger,
the request line and the mitmweb summary show. The rate limiter, the spend book, the rate headers and the log
lines: their own files (test_limits, test_spend, test_rate_headers, test_log_lines)."""

from __future__ import annotations

import calendar
import json

import pytest

from qwen_gateway.pricing import prices
from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.upstream.dashscope.plans import PRESETS, billing_of
from mitmproxy.test import tflow

from qwen_gateway.errors import Ended
from qwen_gateway.tenancy import refusals
from qwen_gateway.tenancy.ring import Keyring, KeyRecord, digest, new_key
from qwen_gateway.tenancy.limits import RPM
from qwen_gateway.tenancy.team import NO_KEY, PENDING, Team
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


# ---- the entrance ---------------------------------------------------------------------------------------------

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


async def test_a_key_revoked_between_its_check_and_its_turn_never_starts_unless_let_finish():
    alice = KeyRecord("alice", digest(b"k"))
    for end_in_flight, revoked in ((True, True), (False, True), (True, False)):
        team = Team()
        team.end_in_flight = end_in_flight
        team.ring = Keyring((alice,))
        ex = Exchange(ClientRequest("POST", "/v1/chat/completions", {}))
        team.bind(ex, team.check(b"k", ())[1])
        if revoked:
            team.ring = Keyring((KeyRecord("alice", digest(b"k"), revoked=True),))  # qwen-keys revoke, meanwhile
        if end_in_flight and revoked:
            with pytest.raises(Ended) as ended:
                await team.limit(ex)
            assert ended.value.status == 401 and "was revoked while this request ran" in ended.value.message
        else:
            await team.limit(ex)  # no limit: nothing to take


def test_a_key_whose_change_could_not_be_read_is_refused_until_it_is():
    team = Team()
    team.ring = Keyring((KeyRecord("alice", digest(b"k"), unread=True),))
    refusal, rec = team.check(b"k", ())
    assert refusal.status == 503 and refusal.code == "state_unavailable" and rec.name == "alice"


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
    from qwen_gateway.tenancy.store import KeyStore

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
