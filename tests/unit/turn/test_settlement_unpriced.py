"""What an answer cost, priced once by the settlement (turn/settlement.py) for every observer: a model nothing
prices is *unpriced* on the exchange and its flow record (the unit `unpriced`, no amount: never $0), one priced by
`qwen_unpriced_as` says whose price counted it, and the unpriced models that carried traffic are kept for /health."""

from __future__ import annotations

import dataclasses

from mitmproxy.test import tflow

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.pricing import prices
from qwen_gateway.pricing.unpriced import UnpricedSeen

from unit.turn.test_settlement import parts

USAGE = {"prompt_tokens": 1000, "completion_tokens": 10}


def answered(model: str, table: prices.PriceTable, billing: str = "payg:intl"):
    settle, _, _, _, ex = parts()
    settle.prices = lambda: table
    ex.attempt.cred = dataclasses.replace(Credential("acct", KEY, "https://dashscope-intl.aliyuncs.com/v1", "k"),
                                          billing=billing)
    ex.attempt.model, ex.result.usage = model, dict(USAGE)
    f = tflow.tflow(resp=True)
    settle.answered(f, ex)
    return settle, ex, f.metadata["qwen"]


def test_an_answer_whose_model_has_no_price_is_unpriced_not_zero():
    settle, ex, meta = answered("qwen3.7-flash", prices.builtin())
    assert (ex.result.cost, ex.result.cost_unit, ex.result.priced_as) == (None, prices.UNPRICED, "")
    assert meta["cost"] == {"amount": None, "unit": "unpriced"}
    assert settle.unpriced.listed() == [{"model": "qwen3.7-flash", "billing": "payg:intl", "requests": 1}]


def test_an_answer_priced_by_qwen_unpriced_as_says_whose_price_counted_it():
    settle, ex, meta = answered("qwen3.7-flash", prices.load("", unpriced_as="qwen3-max"))
    assert (ex.result.cost_unit, ex.result.priced_as) == (prices.USD, "qwen3-max")
    assert meta["cost"] == {"amount": (1000 * 1.2 + 10 * 6.0) / 1e6, "unit": "USD", "priced_as": "qwen3-max"}
    assert settle.unpriced.listed() == []  # counted at a price: not unpriced


def test_a_priced_answer_is_not_listed_and_keeps_its_cost():
    settle, ex, meta = answered("qwen3-coder-plus", prices.builtin())
    assert meta["cost"] == {"amount": (1000 * 1.0 + 10 * 5.0) / 1e6, "unit": "USD"}
    assert settle.unpriced.listed() == []


def test_the_unpriced_models_seen_are_counted_and_bounded():
    seen = UnpricedSeen(most=2)
    for model in ("a", "b", "a", "c"):
        seen.count("", model)
    assert seen.listed() == [{"model": "a", "billing": "", "requests": 2}, {"model": "b", "billing": "", "requests": 1}]
    assert seen.more == 1  # a third model was not kept: said, not silently dropped


def test_a_batch_bill_that_is_unpriced_is_not_priced_again():
    """A batch's results priced by api/batches/ (at the batch rate) as unpriced stay so: not re-priced in full."""
    settle, _, _, _, ex = parts()
    settle.prices = lambda: prices.load("", unpriced_as="qwen3-max")  # would price it, in full, if asked
    ex.result.usage, ex.result.cost_unit, ex.attempt.model = dict(USAGE), prices.UNPRICED, "qwen3.7-flash"
    settle.answered(tflow.tflow(resp=True), ex)
    assert (ex.result.cost, ex.result.cost_unit) == (None, prices.UNPRICED)


def test_an_answer_qwen_reported_no_usage_for_costs_an_unknown_amount_never_0():
    """Issue 79, item 5: a whole answer whose usage is missing (or a stream that ended without it) is counted as
    unknown — `usage_unknown`, no amount — on every path; a plan counted in requests still counts the request."""
    for usage in (None, {}):
        settle, _, _, _, ex = parts()
        settle.prices = prices.builtin
        ex.attempt.cred = Credential("acct", KEY, "https://dashscope-intl.aliyuncs.com/v1", "k")
        ex.attempt.model, ex.result.usage = "qwen3-coder-plus", usage
        f = tflow.tflow(resp=True)
        settle.answered(f, ex)
        assert (ex.result.cost, ex.result.cost_unit) == (None, prices.USAGE_UNKNOWN)
        assert f.metadata["qwen"]["cost"] == {"amount": None, "unit": "usage_unknown"}
    settle, _, _, _, ex = parts()
    settle.prices = prices.builtin
    ex.attempt.cred = dataclasses.replace(Credential("plan", KEY, "https://coding-intl.dashscope.aliyuncs.com/v1",
                                                     "k"), billing="coding")
    ex.attempt.model = "qwen3-coder-plus"
    settle.answered(tflow.tflow(resp=True), ex)
    assert (ex.result.cost, ex.result.cost_unit) == (1.0, prices.REQUESTS)


def test_what_never_reached_an_answer_is_not_counted_as_unknown_usage():
    settle, _, _, _, ex = parts()
    settle.prices = prices.builtin
    ex.attempt.cred = Credential("acct", KEY, "https://dashscope-intl.aliyuncs.com/v1", "k")
    ex.attempt.model = "qwen3-coder-plus"
    ex.fail(400, "invalid_request_error", "no")
    settle.answered(tflow.tflow(resp=True), ex)
    assert (ex.result.cost, ex.result.cost_unit) == (None, "")
