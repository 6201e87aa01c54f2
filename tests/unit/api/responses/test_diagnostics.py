"""OpenAI's prompt cache diagnostics on Qwen (api/responses/diagnostics.py): `prompt_cache_options.
comparison_response_id` read, `prompt_cache_diagnostics` in OpenAI's shape, on a whole Response and on each
stream event that carries the Response."""

from __future__ import annotations

import copy

import pytest
from openai.types.responses.response import PromptCacheDiagnosticsCacheMiss

from qwen_gateway.accounts import Conversation
from qwen_gateway.api.responses.diagnostics import asked, diagnose, encoder
from qwen_gateway.cache.diagnosis import Diagnoser
from qwen_gateway.errors import GatewayError
from qwen_gateway.observe.cache_doctor import CacheDoctor
from helpers.observe_testlib import answered, config, exchange

SYSTEM = "You are an agent. " * 300
USAGE = {"prompt_tokens": 4000, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}}


def chat(turns: int, model: str = "qwen3-coder-plus", tools: list | None = None) -> dict:
    messages = [{"role": "system", "content": SYSTEM}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"step {i} " * 50}, {"role": "assistant", "content": f"ok {i}"}]
    return {"model": model, "messages": messages[:-1], **({"tools": tools} if tools else {})}


class Gateway:
    def __init__(self) -> None:
        self.diagnoser = Diagnoser()
        self.doctor = CacheDoctor(self.diagnoser)
        self.doctor.configure(config())

    def ask(self, upstream: dict, response_id: str, compare_to: str | None = None, key: str = "",
            usage: dict = USAGE) -> dict | None:
        ex = exchange(upstream_body=copy.deepcopy(upstream), usage=usage)
        ex.conversation, ex.key.name = Conversation("conv", "session"), key
        ask = ex.cache_ask = asked({"prompt_cache_options": {"comparison_response_id": compare_to}}
                                   if compare_to else {})
        ask.answer_id = response_id  # what the endpoint does as it translates
        said = diagnose(self.diagnoser, ex, response_id)(usage) if ask.compare else None
        self.doctor.finished(ex, answered(ex))
        return said


def test_the_request_field_is_read_and_checked():
    assert not asked({}).compare  # kept under its id all the same
    assert asked({"prompt_cache_options": {"comparison_response_id": "resp_1"}}).compare_to == "resp_1"
    with pytest.raises(GatewayError):
        asked({"prompt_cache_options": {"comparison_response_id": 1}})


def test_any_recent_response_compares_and_each_outcome_has_openais_shape():
    gw = Gateway()
    gw.ask(chat(1), "resp_1")  # asked nothing: kept all the same
    stored = {"prompt_tokens": 4000, "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_input_tokens": 4000}}
    assert gw.ask(chat(2), "resp_2", "resp_1", usage=stored) == {"type": "cache_hit"}
    miss = gw.ask(chat(3, model="qwen3.6-plus"), "resp_3", "resp_2")
    assert PromptCacheDiagnosticsCacheMiss.model_validate(miss).reason == "model_changed"
    tools = gw.ask(chat(3, tools=[{"type": "function", "function": {"name": "Read"}}]), "resp_4", "resp_2")
    # the doctor's own figure: what resp_2 stored that this one did not read
    assert tools["reason"] == "tools_changed" and tools["cache_missed_tokens"] == 4000
    assert gw.ask(chat(3), "resp_5", "resp_nope") == {"type": "comparison_response_not_found"}
    assert gw.ask(chat(3), "resp_6", "resp_2", key="other") == {"type": "comparison_response_not_found"}


def test_the_stream_events_carrying_the_response_carry_the_field():
    calls = []

    def field(usage):
        calls.append(usage)
        return {"type": "cache_hit"}

    sent = []
    encode = encoder(sent.append, field)
    encode({"type": "response.created", "response": {"id": "resp_1", "usage": None}})
    encode({"type": "response.output_text.delta", "delta": "hi"})
    encode({"type": "response.completed", "response": {"id": "resp_1", "usage": {
        "input_tokens": 4000, "input_tokens_details": {"cached_tokens": 0}}}})
    assert [e.get("response", {}).get("prompt_cache_diagnostics") for e in sent] == [
        {"type": "cache_hit"}, None, {"type": "cache_hit"}]
    assert calls == [None, {"prompt_tokens": 4000, "prompt_tokens_details": {"cached_tokens": 0}}]
    append = sent.append
    assert encoder(append, None) is append  # none asked: the encoder as it was


def test_a_short_response_is_kept_for_a_later_comparison_all_the_same():
    gw = Gateway()
    short = {"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": "ping"}]}
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}}
    gw.ask(short, "resp_1", usage=usage)  # too short for Qwen's cache: the doctor follows no conversation of it
    assert gw.ask({**short, "model": "qwen3-coder-flash"}, "resp_2", "resp_1", usage=usage)["reason"] == \
        "model_changed"


def test_a_qwen_side_miss_is_unavailable_with_what_qwen_did_never_a_hit():
    """The same prefix, and Qwen read none of it: OpenAI's `unavailable` (no change to name), not `cache_hit`, which a
    typed client reads as the cache having served the request; `qwen_cache_miss` beside it (issue 71)."""
    gw = Gateway()
    wrote = {"prompt_tokens": 4000, "completion_tokens": 3, "prompt_tokens_details": {
        "cached_tokens": 0, "cache_creation_input_tokens": 4000, "cache_type": "ephemeral"}}
    gw.ask(chat(1), "resp_1", usage=wrote)
    said = gw.ask(chat(2), "resp_2", "resp_1", usage={**wrote, "prompt_tokens": 4400})
    assert said["type"] == "unavailable" and said["qwen_cache_miss"]["type"] == "evicted", said
