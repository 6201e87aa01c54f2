"""Batch advice (api/batches/advice.py): the prefix a batch's lines share, per Qwen model and as Qwen reads the
prompt, and what the lines cost as a batch and one by one in real time from the catalogue's prices."""

from __future__ import annotations

import pytest

from qwen_gateway.api.batches.advice import MIN_PREFIX, Advice, Prefixes
from qwen_gateway.pricing.prices import UNPRICED, builtin

SYSTEM = "You grade answers to arithmetic questions against the rubric below. " * 180  # ~3,000 tokens
TOOLS = [{"type": "function", "function": {"name": "grade", "description": "Record a grade",
                                           "parameters": {"type": "object", "properties": {"g": {"type": "integer"}}}}}]
PRICES = builtin()


def line(i: int, model: str = "qwen-plus", system: object = SYSTEM, tools: list | None = None) -> dict:
    body: dict = {"model": model, "messages": [{"role": "system", "content": system},
                                               {"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}]}
    if tools:
        body["tools"] = tools
    return body


def price(billing: str = "payg:intl"):
    return lambda model, usage, batch: PRICES.charge(billing, model, usage, batch=batch)


def advice_of(bodies: list[dict], billing: str = "payg:intl") -> Advice:
    shared = Prefixes()
    for b in bodies:
        shared.add(b)
    return shared.advice(price(billing))


def test_identical_system_and_tools_are_the_shared_prefix_up_to_the_first_user_message():
    advice = advice_of([line(i, tools=TOOLS) for i in range(50)])
    (model,) = advice.models
    assert model.model == "qwen-plus" and model.lines == 50 and model.advised
    # the system prompt and the tool, not the questions: about 12,000 characters / 4
    assert 2_900 < model.prefix_tokens < 3_200, model
    assert model.input_tokens > 50 * model.prefix_tokens


def test_lines_that_diverge_at_the_first_message_share_only_the_model():
    bodies = [{"model": "qwen-plus", "messages": [{"role": "user", "content": f"{i} " + SYSTEM}]} for i in range(5)]
    (model,) = advice_of(bodies).models
    assert model.prefix_tokens == 0 and not model.advised and "1,024" in model.why_not
    assert "5 lines share no prefix: no advice" in advice_of(bodies).text()


def test_lines_of_different_models_share_nothing_across_models():
    advice = advice_of([line(0, "qwen-plus"), line(1, "qwen-flash")])
    assert [(m.model, m.lines, m.advised) for m in advice.models] == [("qwen-plus", 1, False),
                                                                      ("qwen-flash", 1, False)]
    assert advice.advised == []
    mixed = advice_of([line(i, "qwen-plus" if i % 2 else "qwen-flash") for i in range(6)])
    assert [(m.model, m.lines, m.advised) for m in mixed.models] == [("qwen-flash", 3, True), ("qwen-plus", 3, True)]


def test_a_string_and_a_one_part_text_list_are_the_same_content():
    as_parts = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    advice = advice_of([line(0), line(1, system=as_parts), line(2)])
    (model,) = advice.models
    assert model.advised and model.prefix_tokens > MIN_PREFIX


def test_both_estimates_come_from_the_catalogue_prices():
    bodies = [line(i) for i in range(50)]
    (model,) = advice_of(bodies).models
    tier = PRICES.models["payg:intl"]["qwen-plus"][0]
    p = model.prefix_tokens
    per_line = tokens_of(bodies)
    batch = sum(per_line) * tier.input * 0.5 / 1e6
    realtime = (sum(per_line) - 50 * p) * tier.input / 1e6 + p * tier.input * 1.25 / 1e6 + \
        49 * p * tier.input * 0.10 / 1e6
    assert model.unit == "USD"
    assert model.batch == pytest.approx(batch, rel=1e-9) and model.realtime == pytest.approx(realtime, rel=1e-9)
    assert model.realtime < model.batch  # 50 lines reading a 3,000-token prefix at 10 % beat the batch's 50 %
    text = advice_of(bodies).text()
    assert "real time estimated cheaper" in text and "output unknown" in text and "unknown, counted as not" in text


def tokens_of(bodies: list[dict]) -> list[int]:
    shared = Prefixes()
    for b in bodies:
        shared.add(b)
    return shared.groups["qwen-plus"].tokens


def test_a_model_without_a_price_is_unpriced_never_zero():
    (model,) = advice_of([line(i, "my-own-model") for i in range(5)]).models
    assert model.advised and model.batch is None and model.realtime is None and model.unit == UNPRICED
    assert "unpriced" in model.line() and "unknown" in model.line() and "$0" not in model.line()


def test_the_advice_survives_its_json_and_an_older_record_has_none():
    advice = advice_of([line(i) for i in range(3)])
    assert Advice.loads(advice.dumps()) == advice
    assert Advice.loads("") is None and Advice.loads("not json") is None and Advice.loads('[{"x": 1}]') is None


def test_a_shared_block_no_marker_ends_is_not_counted_as_read():
    """The lines as built carry markers (the system prompt's, each line's whole prompt): a shared document in the
    first user message no marker ends is stored by no line, so real time reads none of it (issue 71)."""
    from qwen_gateway.api.batches.advice import Prefixes
    document = "A long shared document. " * 600
    shared = Prefixes()
    for i in range(3):
        shared.add({"model": "qwen-plus", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Grade.", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": document},
            {"role": "user", "content": [{"type": "text", "text": f"q{i}", "cache_control": {"type": "ephemeral"}}]}]})
    price = lambda model, usage, batch: None  # noqa: E731  (unpriced: the figures are not what this looks at)
    (model,) = shared.advice(price).models
    assert model.prefix_tokens > 3000 and model.readable_tokens == 0 and "keeps ~0 tokens" in model.line()
