"""The route step (turn/model_route.py): which rule a request meets, decided before the context guard from the
prompt estimate the gateway already has (no second count), cheap for ordinary requests; and what the engine,
the request line and the flow make of it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from qwen_gateway.accounts import KEY, OAUTH, Capability
from qwen_gateway.mitmweb.flowview import summary_line
from qwen_gateway.models.model_map import ModelMap
from qwen_gateway.models.routes import parse_routes
from qwen_gateway.observe.requestlog import format_line
from qwen_gateway.tokens import ESTIMATE
from qwen_gateway.turn import context_overflow, model_route
from qwen_gateway.turn.context_guard import context_check
from qwen_gateway.upstream.engine import UpstreamEngine
from helpers.observe_testlib import chat_body, config, exchange

IMAGE = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}


@dataclass(frozen=True)
class Chat:
    name: str = "chat.completions"
    capability: Capability = Capability.CHAT


def request(body: dict, *, key: str = "", agent: str = "", dialect: str = "openai", tokens: int | None = None,
            method: str | None = None):
    ex = exchange(body=body, model=body["model"], upstream=False, status=None, usage=None)
    ex.endpoint = Chat()  # type: ignore[assignment]
    ex.chat_body, ex.dialect, ex.key.name = body, dialect, key
    ex.client = dataclasses.replace(ex.client, user_agent=agent)
    ex.count.tokens, ex.count.method = tokens, method
    return ex


def cfg(*rules: str, default_model: str = "qwen3-max"):
    return config(models=ModelMap(default_model), routes=parse_routes(rules))


async def test_a_prompt_over_the_catalogue_window_goes_to_the_long_context_sibling():
    ex = request(chat_body("1234567 " * 140_000), tokens=400_000, method="tiktoken")
    await model_route.route(ex, cfg())
    assert ex.routed is not None and (ex.routed.reason, ex.routed.model) == ("long-context", "qwen4-max")
    assert "route long-context (long-context=sibling): about 400000 prompt tokens > 258048" in ex.notes[0]


@pytest.mark.parametrize("rules", [(), ("long-context=off",)])
async def test_a_prompt_over_the_longest_window_is_refused_here_not_uploaded(rules):
    """qwen4-max takes at most 991,808 prompt tokens (source K) and no sibling takes more: the client gets its
    context error at once instead of a 6 MB upload Qwen refuses."""
    ex = request(chat_body("1234567 " * 1_100_000, model="qwen4-max"), tokens=1_200_000, method="tiktoken")
    with pytest.raises(context_overflow.ContextOverflow) as caught:
        await model_route.route(ex, cfg(*rules))
    assert (caught.value.tokens, caught.value.limit, caught.value.param) == (1_200_000, 991_808, "messages")
    assert "refused here, no longer model takes it" in ex.notes[-1]
    ex = request(chat_body("1234567 " * 1_100_000, model="qwen4-max"), tokens=1_020_000, method="sampled:cl100k_base")
    await model_route.route(ex, cfg(*rules))  # a sampled count within its margin: Qwen decides
    assert ex.routed is None


async def test_a_short_body_is_never_counted(monkeypatch):
    async def counted(ex):
        raise AssertionError("counted")
    monkeypatch.setattr(model_route, "prompt_tokens", counted)
    ex = request(chat_body("hello"))
    await model_route.route(ex, cfg())
    assert ex.routed is None


async def test_the_estimators_count_is_used_not_a_second_one(monkeypatch):
    calls = []

    async def count(ex):
        calls.append(ex)
        ex.count.tokens, ex.count.method = 300_000, "tiktoken"
        return 300_000
    monkeypatch.setattr(model_route, "prompt_tokens", count)
    ex = request(chat_body("1234567 " * 40_000), tokens=70_000, method=ESTIMATE)
    await model_route.route(ex, cfg())
    assert len(calls) == 1 and ex.routed.model == "qwen4-max"
    assert context_overflow.prompt_tokens is not count  # the guard's own is the same function, left as it is


async def test_a_model_the_catalogue_gives_no_window_is_not_routed_for_length():
    ex = request(chat_body("1234567 " * 140_000), tokens=400_000, method="tiktoken")
    await model_route.route(ex, cfg(default_model="qwen3-coder-plus"))
    assert ex.routed is None


async def test_the_guard_then_judges_the_routed_model():
    ex = request(chat_body("1234567 " * 140_000, model="gpt-4o"), tokens=400_000, method="tiktoken")
    c = dataclasses.replace(cfg(), context_limits={"gpt-4o": 258_048})
    assert await context_check(ex, c) is not None  # without the route: refused
    await model_route.route(ex, c)
    assert await context_check(ex, c) is None


async def test_images_fast_and_scopes():
    img = chat_body("x", model="gpt-4o")
    img["messages"][0]["content"] = [{"type": "text", "text": "what?"}, IMAGE]
    ex = request(img)
    await model_route.route(ex, cfg())
    assert (ex.routed.reason, ex.routed.model) == ("images", "")  # the account's vision model (the engine's)
    ex = request(img, key="ci")
    await model_route.route(ex, cfg("images@key:ci=qwen3-vl-plus"))
    assert ex.routed.model == "qwen3-vl-plus"
    ex = request(img, key="ci")
    await model_route.route(ex, cfg("images@key:ci=off"))
    assert ex.routed is None
    haiku = chat_body("title?", model="claude-haiku-4-5-20251001")
    ex = request(haiku, dialect="anthropic", agent="claude-cli/2.1.3 (external, cli)")
    await model_route.route(ex, cfg())
    assert ex.routed is None  # no fast rule: today's behaviour (the haiku alias)
    await model_route.route(ex, cfg("fast@agent:claude-cli=qwen3.6-flash"))
    assert (ex.routed.reason, ex.routed.model) == ("fast", "qwen3.6-flash")
    ex = request(chat_body("x", model="gpt-4o-mini"), agent="OpenAI/Python 1.99")
    await model_route.route(ex, cfg("fast@agent:claude-cli=qwen3.6-flash"))
    assert ex.routed is None


@dataclass(frozen=True)
class Cred:
    kind: str
    default_model: str | None = None
    model_map: dict = dataclasses.field(default_factory=dict)
    account: str = "a"


def test_the_engine_asks_the_routes_model_of_each_account_and_says_so():
    engine = UpstreamEngine.__new__(UpstreamEngine)
    engine.config = cfg()
    ex = request(chat_body("x"))
    from qwen_gateway.models.routes import Routed
    ex.routed = Routed("images", "", "images=vision")
    assert engine._routed(ex, "qwen3-coder-plus", Cred(KEY)) == "qwen3.6-plus"
    assert ex.attempt.route == "images"
    assert ex.notes == ["images sent to qwen3.6-plus: qwen3-coder-plus cannot read images (route: images=vision)"]
    assert engine._routed(ex, "qwen3-coder-plus", Cred(OAUTH)) == "coder-model"
    assert engine._routed(ex, "qwen3-coder-plus", Cred(KEY, default_model="qwen3.7-plus")) == "qwen3.7-plus"
    assert engine._routed(ex, "qwen3-vl-plus", Cred(KEY)) == "qwen3-vl-plus" and ex.attempt.route == ""
    ex.routed, ex.count.tokens = Routed("long-context", "qwen4-max", "long-context=sibling"), 300_000
    assert engine._routed(ex, "qwen3-max", Cred(KEY)) == "qwen4-max" and ex.attempt.route == "long-context"
    # an account whose own map gives a model the prompt fits, or one with no window in the catalogue: as it is
    assert engine._routed(ex, "qwen3.6-plus", Cred(KEY)) == "qwen3.6-plus" and ex.attempt.route == ""
    assert engine._routed(ex, "qwen3-coder-plus", Cred(KEY)) == "qwen3-coder-plus" and ex.attempt.route == ""


def test_the_route_on_the_request_line_the_flow_and_the_record():
    ex = exchange(model="gpt-4o", upstream_model="qwen4-max")
    from qwen_gateway.models.routes import Routed
    ex.routed, ex.attempt.route = Routed("long-context", "qwen4-max", "long-context=sibling"), "long-context"
    assert "POST /v1/chat/completions gpt-4o→qwen4-max (route: long-context) acct=default" in format_line(ex)
    assert summary_line(ex).startswith("gpt-4o → qwen4-max (route: long-context) · acct default")
    assert ex.to_meta()["routed"] == {"reason": "long-context", "model": "qwen4-max", "rule": "long-context=sibling"}
    plain = exchange(model="gpt-4o", upstream_model="qwen3-coder-plus")
    assert "gpt-4o→qwen3-coder-plus acct=default" in format_line(plain) and "routed" not in plain.to_meta()


async def test_a_longest_prompt_qwen_named_is_held_to_as_the_catalogues():
    """Qwen's "Range of input length should be [1, N]" learned for a model the catalogue gives no window: the
    next over-long prompt is answered here (and routed when a sibling takes it)."""
    from qwen_gateway.models.learned import INPUT, LearnedFacts
    learned = LearnedFacts()
    learned.learn("qwen3-coder-plus", INPUT, 300_000)
    ex = request(chat_body("1234567 " * 140_000), tokens=400_000, method="tiktoken")
    with pytest.raises(context_overflow.ContextOverflow) as caught:
        await model_route.route(ex, cfg(default_model="qwen3-coder-plus"), learned)
    assert caught.value.limit == 300_000
    ex = request(chat_body("1234567 " * 140_000), tokens=400_000, method="tiktoken")
    await model_route.route(ex, cfg(default_model="qwen3-coder-plus"))  # nothing learned: Qwen decides
    assert ex.routed is None
