"""The engine's record of what it sends upstream (upstream/engine.py): every header as sent but the
credential, each header name judged once, not on every request."""

from __future__ import annotations

import threading

from qwen_gateway.settings import config
from qwen_gateway import components
from qwen_gateway.accounts import KEY, OAUTH, Credential
from qwen_gateway.api.chat import CHAT
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway import redact
from qwen_gateway.providers import TRANSLATED
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE
from qwen_gateway.upstream.engine import UpstreamEngine
from qwen_gateway.upstream.retry import RetryPolicy


def exchange() -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.endpoint, ex.attempt.upstream = CHAT, DASHSCOPE
    ex.attempt.cred = Credential("a", OAUTH, "https://portal.qwen.ai/v1", "tok-secret-123")
    ex.attempt.body = {"model": "coder-model", "messages": [{"role": "user", "content": "ping"}]}
    return ex


def test_the_record_shows_every_header_but_the_credential_each_name_judged_once(monkeypatch):
    lookups = []

    class Secret(set):
        def __contains__(self, name):
            lookups.append(name)
            return super().__contains__(name)

    monkeypatch.setattr(redact, "SECRET_HEADERS", Secret(redact.SECRET_HEADERS))
    redact.shown_headers.cache_clear()
    redact._hidden.cache_clear()
    engine = UpstreamEngine(RetryPolicy(None), config.Config(), components.pairing(config.Config()))
    for _ in range(2):
        ex = exchange()
        url, headers, body, _ = engine._wire(ex, None)
        assert url == ex.attempt.url == "https://portal.qwen.ai/v1/chat/completions"
        assert ("Authorization", "Bearer tok-secret-123") in headers  # sent...
        assert ex.attempt.headers == {**dict(headers), "Authorization": "Bearer <redacted>"}  # ...never recorded
        assert "tok-secret" not in str(ex.to_meta())
    assert len(lookups) <= len(headers) - 1  # at most once per name (Authorization needs none), not per request


def test_the_record_of_an_accounts_headers_is_made_once(monkeypatch):
    """The same header set on every request of an account: its redacted record is made on the first request, each
    exchange given its own copy of it."""
    judged = []
    real = redact._hidden
    monkeypatch.setattr(redact, "_hidden", lambda name: judged.append(name) or real(name))
    redact.shown_headers.cache_clear()
    engine = UpstreamEngine(RetryPolicy(None), config.Config(), components.pairing(config.Config()))
    first, second = exchange(), exchange()
    _, headers, _, _ = engine._wire(first, None)
    engine._wire(second, None)
    assert first.attempt.headers == second.attempt.headers == {**dict(headers), "Authorization": "Bearer <redacted>"}
    assert first.attempt.headers is not second.attempt.headers and len(judged) == len(headers)


class OwnEndpoint:
    """An endpoint of a pass-through pair whose own body may say None (the request needs the translation)."""

    def __init__(self, own):
        self.name, self.own, self.capability = "responses", own, CHAT.capability
        self.own_body = lambda body, ex: own


def native_exchange(own) -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/responses", "http://127.0.0.1:8080/v1/responses"))
    ex.endpoint = OwnEndpoint(own)  # type: ignore[assignment]
    ex.requested_model, ex.body = "qwen3-coder-plus", {"model": "qwen3-coder-plus", "input": "hi"}
    ex.chat_body = {"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": "hi"}]}
    ex.attempt.cred = Credential("a", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-1")
    return ex


def test_a_pass_through_pair_carries_the_own_body_or_translates_when_the_endpoint_says_none():
    cfg = config.Config(responses_native=True)
    engine = UpstreamEngine(RetryPolicy(None), cfg, components.pairing(cfg))
    ex = native_exchange({"model": "x", "input": "hi", "store": True})
    _, base = engine.build(ex)
    assert ex.attempt.leg.passthrough and ex.attempt.leg.suffix == "responses" and base == ex.attempt.cred.base_url
    assert ex.attempt.body == {"model": "qwen3-coder-plus", "input": "hi", "store": True}
    ex = native_exchange(None)
    _, base = engine.build(ex)
    assert ex.attempt.leg is TRANSLATED and base is None and ex.attempt.body["messages"][0]["content"] == "hi"


async def test_a_long_conversations_body_is_built_in_a_worker_thread(monkeypatch):
    """Issue 79 item 6: Qwen's body of a conversation longer than off_loop.MESSAGES is made by a worker thread
    (`chat_to_qwen` walks every message); a short one's on the loop, as before."""
    from qwen_gateway import off_loop
    from qwen_gateway.upstream.dashscope import request
    threads = []
    real = request.chat_to_qwen
    monkeypatch.setattr(request, "chat_to_qwen", lambda *a, **kw: threads.append(threading.get_ident()) or real(*a, **kw))
    engine = UpstreamEngine(RetryPolicy(None), config.Config(), components.pairing(config.Config()))
    for n in (off_loop.MESSAGES, off_loop.MESSAGES + 1):
        ex = exchange()
        ex.requested_model = "coder-model"
        ex.chat_body = {"model": "coder-model", "messages": [{"role": "user", "content": "ping"}] * n}
        await engine.built(ex)
        assert len(ex.attempt.body["messages"]) == n and ex.attempt.model == ex.attempt.body["model"]
    assert threads[0] == threading.get_ident() != threads[1]
