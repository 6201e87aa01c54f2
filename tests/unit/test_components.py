"""The one place the outer packages are named (components.py): which upstream serves each kind of account, the pairs that
skip the chat form, the local answers and endpoints handed to the core, the observers in their order."""

from __future__ import annotations

import functools

from qwen_gateway import components
from qwen_gateway.accounts import KEY, OAUTH, WEB, Credential
from qwen_gateway.ingress import routing
from qwen_gateway.providers import TRANSLATED
from qwen_gateway.settings.config import Config
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE

PLAN = Credential("k", KEY, "https://coding-intl.dashscope.aliyuncs.com/v1", "sk-sp-x")
LOGIN = Credential("o", OAUTH, "https://portal.qwen.ai/v1", "t")
WEB_SESSION = Credential("w", WEB, "https://chat.qwen.ai", "t")


def test_each_provider_has_its_upstream_and_web_sessions_their_own():
    p = components.pairing(Config())
    assert p.upstream(LOGIN) is DASHSCOPE and p.upstream(PLAN) is DASHSCOPE
    assert p.upstream(WEB_SESSION) is not DASHSCOPE and p.upstream(WEB_SESSION).name == WEB_SESSION.provider
    assert set(p.upstreams) == {provider.name for provider in components.PROVIDERS}
    for provider in components.PROVIDERS:  # an upstream carries its provider's name: its legs are found by it
        assert p.upstreams[provider.name].name == provider.name


def test_an_account_is_served_by_the_provider_it_names_not_by_its_kind():
    p = components.pairing(Config())
    assert (LOGIN.provider, PLAN.provider, WEB_SESSION.provider) == ("dashscope", "dashscope", "qwenweb")
    own = Credential("gpu", KEY, "http://10.0.0.5:8000/v1", "k", provider="qwenweb")
    assert p.upstream(own) is p.upstreams["qwenweb"]


def test_embeddings_pass_through_and_messages_only_when_asked():
    off = components.pairing(Config())
    leg, base = off.leg("embeddings", DASHSCOPE, PLAN)
    assert (leg.suffix, leg.passthrough, base) == ("embeddings", True, None)
    assert off.leg("messages", DASHSCOPE, PLAN) == (TRANSLATED, None)
    on = components.pairing(Config(messages_passthrough=True))
    leg, base = on.leg("messages", DASHSCOPE, PLAN)
    assert (leg.suffix, leg.passthrough, base) == ("v1/messages", True,
                                                   "https://coding-intl.dashscope.aliyuncs.com/apps/anthropic")
    assert on.leg("messages", DASHSCOPE, LOGIN) == (TRANSLATED, None)  # an OAuth login has no Anthropic base


def test_every_local_route_routing_names_has_an_answer_here_or_in_the_core():
    named = set(routing.LOCAL.values()) | {name for _, _, name in routing.LOCAL_PREFIXES}
    answered_here = set(components.local_routes(lambda: None, lambda: None))  # type: ignore[arg-type, return-value]
    core = {"health", "metrics", "liveness", "readiness", "traces"}  # answered by the core itself
    assert answered_here <= named and named - answered_here == core


def test_endpoints_by_path_and_their_dialects():
    endpoints = components.endpoints(lambda: None, lambda: None)  # type: ignore[arg-type, return-value]
    assert sorted(endpoints) == ["/chat/completions", "/completions", "/embeddings", "/messages", "/responses",
                                 "/responses/compact"]
    assert endpoints["/messages"].dialect == "anthropic" and endpoints["/chat/completions"].dialect == "openai"
    assert set(components.client_formats()) == {"anthropic"}


def test_observers_in_the_order_they_are_called():
    names = [type(o).__name__ for o in components.default_observers()]
    assert names == ["CacheDoctor", "TokenEstimator", "Metrics", "RequestLine", "UsageLedger", "DebugLog", "Tracing",
                     "FlowAnnotator", "FlowCap"]  # the doctor's verdict in the metrics, the ledger, the annotator's
    # comment; the annotator before the cap: the cap adds to its comment


def test_a_batch_line_is_translated_as_the_chat_path_translates_a_request():
    """api/batches/translation.py gets the chat dialect's translation, the model map and DashScope's rules; the
    composition joins it to the engine's builder and the batch provider's upstream (`batch_answer`)."""
    from qwen_gateway.exchange import ClientRequest, Exchange
    import pytest
    from qwen_gateway.errors import GatewayError

    from qwen_gateway.api.batches import translation
    from qwen_gateway.upstream.engine import UpstreamEngine
    from qwen_gateway.upstream.retry import RetryPolicy

    ex = Exchange(ClientRequest("POST", "/v1/files", "http://gw/v1/files"))
    cred = Credential("ds", KEY, "http://127.0.0.1:9/compatible-mode/v1", "sk-1", default_model="qwen-plus")
    engine = UpstreamEngine(RetryPolicy(None), Config(), components.pairing(Config()))
    batch_line = functools.partial(translation.chat_line, build=engine.build)  # the live path's builder
    body = batch_line(ex, {"model": "gpt-4o", "stream": True, "max_completion_tokens": 9, "messages": [
        {"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}, cred, Config())
    assert body["model"] == "qwen-plus" and "stream" not in body  # mapped as chat maps it; a batch never streams
    assert body["messages"][0] == {"role": "system", "content": "be brief"}  # Qwen has no developer role
    with pytest.raises(GatewayError) as e:
        batch_line(ex, {"model": "gpt-4o", "messages": [], "temperature": 9}, cred, Config())
    assert e.value.status == 400  # what the chat path refuses
    with pytest.raises(GatewayError) as e:  # a retired model: answered as the chat path answers it, never sent
        batch_line(ex, {"model": "qwen4-max-preview", "messages": [{"role": "user", "content": "hi"}]},
                              cred, Config())
    assert (e.value.status, e.value.code) == (404, "model_not_found") and "Use `qwen4-max`" in e.value.message
    answer = components.batch_answer(ex, {"object": "chat.completion", "model": "qwen-plus", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}, "gpt-4o")
    assert answer["model"] == "gpt-4o" and answer["choices"][0]["message"]["content"] == "ok"


PAYG = Credential("p", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-x")


def test_responses_go_to_qwens_own_api_only_when_asked_on_payg_keys_and_served_models():
    assert components.pairing(Config()).leg("responses", DASHSCOPE, PAYG, "qwen3-coder-plus") == (TRANSLATED, None)
    on = components.pairing(Config(responses_native=True))
    leg, base = on.leg("responses", DASHSCOPE, PAYG, "qwen3-coder-plus")
    assert (leg.suffix, leg.passthrough, base) == ("responses", True, PAYG.base_url)
    assert on.leg("responses", DASHSCOPE, PAYG, "qwen-max") == (TRANSLATED, None)  # not served there
    assert on.leg("responses", DASHSCOPE, PAYG, "qwen3.6-plus") == (TRANSLATED, None)  # served, no session cache
    assert on.leg("responses", DASHSCOPE, PLAN, "qwen3-coder-plus") == (TRANSLATED, None)  # Coding Plan: chat only
    assert on.leg("responses", DASHSCOPE, LOGIN, "qwen3-coder-plus") == (TRANSLATED, None)
