"""A per-key budget on one model (`qwen-keys add|set NAME --model-monthly-usd MODEL=X`, tenancy/budgets.py): USD per
UTC month on that key's requests for that model. qwen-keys sets it (several models, 0 removes one) and lists it; a
request of the key for that model is refused once what the key spent on it this month reached it — in each dialect's
budget refusal — while its other models are served; a request it counts is refused what has no price. Through a real
mitmdump, on a state folder and on PostgreSQL: tests/e2e/test_e2e_keys_model_budget.py."""

from __future__ import annotations

import calendar
import dataclasses
import json

import pytest
from mitmproxy.test import taddons

from helpers.observe_testlib import config
from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.cli import keys
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.pricing import prices
from qwen_gateway.tenancy import budgets, refusals
from qwen_gateway.tenancy.ring import Keyring, KeyRecord, digest
from qwen_gateway.tenancy.store import KeyStore
from qwen_gateway.tenancy.team import Team

FLAG = "model-monthly-usd"
ALICE = KeyRecord("alice", digest(b"k"), budgets=((FLAG, "qwen3-max", 0.01),))


def run(tmp_path, capsys, *argv: str) -> tuple[int, str]:
    try:
        rc = keys.main([argv[0], "--state-dir", str(tmp_path), *argv[1:]])
    except SystemExit as e:
        rc = int(e.code or 0)
    return rc, capsys.readouterr().out


def test_qwen_keys_sets_a_budget_per_model_lists_it_and_zero_removes_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("QWEN_STATE_URL", raising=False)
    rc, out = run(tmp_path, capsys, "add", "alice", "--monthly-usd", "20", "--model-monthly-usd", "qwen3-max=5",
                  "--model-monthly-usd", "qwen-plus=1.5")
    assert rc == 0 and "monthly-usd $20.00, model-monthly-usd qwen-plus=$1.50, model-monthly-usd qwen3-max=$5.00" in out
    rc, out = run(tmp_path, capsys, "set", "alice", "--model-monthly-usd", "qwen-plus=0")
    assert rc == 0 and "Key alice: monthly-usd $20.00, model-monthly-usd qwen3-max=$5.00." in out
    store = KeyStore.local(tmp_path)
    try:
        assert store.key("alice").budgets == ((FLAG, "qwen3-max", 5.0),)
    finally:
        store.close()
    rc, out = run(tmp_path, capsys, "list", "--json")
    assert json.loads(out)[0]["model_monthly_usd"] == {"qwen3-max": {"limit": 5.0, "spent_this_month": 0.0}}
    rc, out = run(tmp_path, capsys, "list")
    assert "model-monthly-usd qwen3-max: $0 of $5.00" in out.splitlines()[2]
    rc, out = run(tmp_path, capsys, "list", "--wide")
    assert "BUDGETS" in out.splitlines()[0] and "model-monthly-usd qwen3-max: $0 of $5.00" in out
    rc, out = run(tmp_path, capsys, "set", "alice", "--model-monthly-usd", "5")
    assert rc == 2  # MODEL=X, said by argparse


def sent(team: Team, model: str, dialect: str = "openai") -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.requested_model, ex.dialect = model, dialect
    team.bind(ex, ALICE)
    return ex


async def test_a_key_that_spent_its_budget_on_one_model_is_refused_that_model_only():
    team = Team()
    team.ring = Keyring((ALICE,))
    team.book.charge("alice", requests=1, tokens=100, usd=0.02, model="qwen3-max")
    team.book.charge("alice", requests=1, tokens=100, usd=3.0, model="qwen-plus")
    with pytest.raises(GatewayError) as e:
        await team.limit(sent(team, "qwen3-max"))
    assert (e.value.status, e.value.code, e.value.headers) == (429, "insufficient_quota", {"x-should-retry": "false"})
    assert e.value.message.startswith("Key 'alice' has spent its monthly budget on qwen3-max: $0.02 of $0.01 this "
                                      "month (qwen-keys --model-monthly-usd). It resets on ")
    with pytest.raises(GatewayError) as e:
        await team.limit(sent(team, "qwen3-max", "anthropic"))
    assert e.value.status == 400 and e.value.message.startswith("You have reached your specified API usage limits.")
    assert e.value.message.endswith("(key 'alice': $0.02 of $0.01 on qwen3-max this month, qwen-keys "
                                    "--model-monthly-usd)")
    other = sent(team, "qwen-plus")
    await team.limit(other)  # another model: no budget counts it, nothing held
    assert other.key.hold is None


async def test_below_its_budget_a_request_for_the_model_holds_against_it_until_it_ends():
    team = Team()
    team.ring = Keyring((ALICE,))
    ex = sent(team, "qwen3-max")
    await team.limit(ex)
    assert ex.key.hold is not None and ex.key.hold[0].model == "qwen3-max"
    ex.result.usage, ex.result.cost, ex.result.cost_unit = {"prompt_tokens": 10, "completion_tokens": 5}, 0.004, "USD"
    team.finished(ex, None)  # type: ignore[arg-type]
    assert ex.key.hold is None and team.book.spent("alice").models["qwen3-max"].usd_month == pytest.approx(0.004)


def test_its_refusal_resets_on_the_first_of_the_next_month():
    line = budgets.Line(budgets.BY_FLAG[FLAG], "qwen3-max", 5.0)
    refusal = refusals.spent_budget(line, "alice", 5.25, now=calendar.timegm((2026, 12, 31, 22, 30, 0)))
    assert "resets on 2027-01-01 at 00:00 UTC, in 1 h 30 min" in refusal.message


def attempt(team: Team, requested: str, sent_as: str, ex: Exchange | None = None) -> Exchange:
    """A request for `requested` (or `ex`, past the entrance), on an account that sends it as `sent_as` (its default
    for an OpenAI name)."""
    ex = ex or sent(team, requested)
    ex.attempt.cred = dataclasses.replace(Credential("emu", KEY, "https://dashscope-intl.aliyuncs.com/v1", "sk-1"),
                                          billing="payg:intl")
    ex.attempt.model = sent_as
    return ex


async def test_the_model_as_sent_counts_even_when_the_entrance_estimated_another():
    """gpt-4o is `coder-model` to the model map, which a key account sends as its own default: the entrance holds
    for no budget of the model, and the engine's check of the attempt refuses it (before anything is sent)."""
    team = Team()
    team.ring = Keyring((ALICE,))
    team.book.charge("alice", requests=1, tokens=100, usd=0.02, model="qwen3-max")
    ex = sent(team, "gpt-4o")
    await team.limit(ex)
    assert ex.key.hold is None and ex.key.usd_budget
    attempt(team, "gpt-4o", "qwen3-max", ex)
    with pytest.raises(GatewayError) as e:
        team.priced_only(ex)
    assert e.value.code == "insufficient_quota" and "monthly budget on qwen3-max" in e.value.message
    team.priced_only(attempt(team, "gpt-4o", "qwen3-coder-plus"))  # another model as sent: served
    ex.result.usage, ex.result.cost, ex.result.cost_unit = {"prompt_tokens": 1, "completion_tokens": 1}, 0.5, "USD"
    team.finished(ex, None)  # type: ignore[arg-type]
    assert team.book.spent("alice").models["qwen3-max"].usd_month == pytest.approx(0.52)  # counted as sent


def test_an_unpriced_request_is_refused_only_on_the_budgeted_model(tmp_path):
    team = Team()
    with taddons.context():
        team.configure(config(tmp_path, prices=prices.builtin()))
    team.priced_only(attempt(team, "qwen3.7-flash", "qwen3.7-flash"))  # unpriced, and no budget counts it: served
    budgeted = dataclasses.replace(ALICE, budgets=((FLAG, "qwen3.7-flash", 5.0),))
    ex = attempt(team, "qwen3.7-flash", "qwen3.7-flash")
    team.bind(ex, budgeted)
    with pytest.raises(GatewayError) as e:
        team.priced_only(ex)
    assert e.value.code == "model_unpriced" and "a monthly USD budget on qwen3.7-flash (qwen-keys " \
        "--model-monthly-usd)" in e.value.message and "--model-monthly-usd qwen3.7-flash=0" in e.value.message
