"""A USD budget cannot be passed by what has no price (issue 59): a named key with `--monthly-usd` is marked at the
entrance (`ex.key.usd_budget`), and the engine's check (Team.priced_only) refuses its request to a model its account
has no price for — 400 `model_unpriced` on `model`, naming the model as sent and the ways out — unless
qwen_unpriced_as prices it or the account's plan counts its own unit. The refusal counts as the key's refusal;
an answer priced as another model is charged to its budget."""

from __future__ import annotations

import dataclasses

import pytest
from mitmproxy.test import taddons

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.errors import NO_RETRY, GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.tenancy.ring import KeyRecord
from qwen_gateway.tenancy.team import Team
from qwen_gateway.pricing import prices

from helpers.observe_testlib import config


def team(table: prices.PriceTable, tmp_path) -> Team:
    t = Team()
    with taddons.context():
        t.configure(config(tmp_path, prices=table))
    return t


def sent(model: str, billing: str = "payg:intl", budget: float = 5.0) -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    Team.bind(ex, KeyRecord("alice", monthly_usd=budget))
    ex.attempt.cred = dataclasses.replace(Credential("emu", KEY, "https://dashscope-intl.aliyuncs.com/v1", "sk-1"),
                                          billing=billing)
    ex.attempt.model = model
    return ex


def test_only_a_key_with_a_usd_budget_is_marked_for_the_check():
    assert sent("m").key.usd_budget
    assert not sent("m", budget=0).key.usd_budget
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"))
    Team.bind(ex, KeyRecord("bob", monthly_usd=5.0, revoked=True))
    assert not ex.key.usd_budget


def test_a_model_without_a_price_is_refused_naming_it_and_the_ways_out(tmp_path):
    t = team(prices.builtin(), tmp_path)
    with pytest.raises(GatewayError) as e:
        t.priced_only(sent("qwen3.7-flash"))
    err = e.value
    assert (err.status, err.type, err.code, err.param) == (400, "invalid_request_error", "model_unpriced", "model")
    assert err.headers == NO_RETRY  # no retry changes a price (Claude Code re-sends a 400 otherwise)
    assert "qwen3.7-flash" in err.message and "'alice'" in err.message
    assert "qwen_prices_file" in err.message and "--daily-tokens" in err.message and "qwen_unpriced_as" in err.message
    assert "sk-1" not in err.message


@pytest.mark.parametrize("model,billing,table", [
    ("qwen3-coder-plus", "payg:intl", prices.builtin()),  # its own price
    ("qwen3.7-flash", "coding", prices.builtin()),  # the plan counts requests
    ("qwen3.7-flash", "payg:intl", prices.load("", unpriced_as="qwen3-max")),  # counted at qwen3-max's price
])
def test_a_priced_request_passes(tmp_path, model, billing, table):
    team(table, tmp_path).priced_only(sent(model, billing))


def test_the_refusal_is_the_keys_refusal_and_a_priced_as_answer_is_charged(tmp_path):
    t = team(prices.builtin(), tmp_path)
    refused = sent("qwen3.7-flash")
    refused.fail(400, "model_unpriced", "no price")
    t.finished(refused, None)  # type: ignore[arg-type]
    spent = t.book.spent("alice")
    assert (spent.refused_today, spent.requests_today, spent.usd_month) == (1, 0, 0.0)
    answered = sent("qwen3.7-flash")
    answered.result.usage = {"prompt_tokens": 1000, "completion_tokens": 10}
    answered.result.cost, answered.result.cost_unit, answered.result.priced_as = 0.00126, "USD", "qwen3-max"
    t.finished(answered, None)  # type: ignore[arg-type]
    assert t.book.spent("alice").usd_month == pytest.approx(0.00126)


def test_an_answer_without_a_price_is_counted_as_unpriced_never_as_nothing(tmp_path):
    """A key without a USD budget is answered by a model nothing prices: its month says so (qwen-keys list)."""
    t = team(prices.builtin(), tmp_path)
    answered = sent("qwen3.7-flash", budget=0)
    answered.result.usage = {"prompt_tokens": 100, "completion_tokens": 10}
    answered.result.cost_unit = "unpriced"
    t.finished(answered, None)  # type: ignore[arg-type]
    spent = t.book.spent("alice")
    assert (spent.requests_today, spent.usd_month, spent.unpriced_month) == (1, 0.0, 1)
