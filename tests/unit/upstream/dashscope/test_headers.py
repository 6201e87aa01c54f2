"""Where a DashScope request goes and the headers qwen-code sends (upstream/dashscope/headers.py, through
`DashScope.wire`): the same request every time, its URL worked out once per API base."""

from __future__ import annotations

from qwen_gateway.accounts import KEY, OAUTH, Credential
from qwen_gateway.upstream.dashscope import headers
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE

UA = "QwenCode/0.14.5 (linux; x64)"


def cred(base: str, kind: str = OAUTH) -> Credential:
    return Credential("a", kind, base, "tok-123")


def test_the_wire_of_a_request_and_of_its_retries():
    wire = DASHSCOPE.wire(cred("https://portal.qwen.ai/v1"), "chat/completions", {"stream": False}, user_agent=UA,
                          stream=False, attempt=2, api_headers=(("anthropic-version", "2023-06-01"),))
    assert wire.url == "https://portal.qwen.ai/v1/chat/completions"
    assert wire.headers == [
        ("Host", "portal.qwen.ai"), ("Accept", "application/json"), ("Content-Type", "application/json"),
        ("Accept-Encoding", "identity"), ("Authorization", "Bearer tok-123"), ("User-Agent", UA),
        ("X-DashScope-CacheControl", "enable"), ("X-DashScope-UserAgent", UA), ("X-DashScope-AuthType", "qwen-oauth"),
        ("X-Stainless-Lang", "js"), ("X-Stainless-Package-Version", headers.OPENAI_NODE_VERSION),
        ("X-Stainless-OS", "Linux"), ("X-Stainless-Arch", headers.ARCH), ("X-Stainless-Runtime", "node"),
        ("X-Stainless-Runtime-Version", "v20.19.0"), ("X-Stainless-Retry-Count", "2"),
        ("anthropic-version", "2023-06-01")]
    # a stream-only model's whole answer is asked as a stream; a port that is not the scheme's stays in Host
    wire = DASHSCOPE.wire(cred("http://127.0.0.1:9/v1/", KEY), "/chat/completions", {"stream": True},
                          user_agent=UA, stream=False, attempt=0)
    assert wire.url == "http://127.0.0.1:9/v1/chat/completions"
    assert dict(wire.headers)["Host"] == "127.0.0.1:9"
    assert dict(wire.headers)["Accept"] == "text/event-stream"
    assert dict(wire.headers)["X-DashScope-AuthType"] == "openai"
    assert dict(wire.headers)["X-Stainless-Retry-Count"] == "0"


def test_an_api_base_is_parsed_once(monkeypatch):
    """The URL of every request under the same API base is the same: urlsplit once, not per request."""
    calls = []
    real = headers.urlsplit
    monkeypatch.setattr(headers, "urlsplit", lambda url: calls.append(url) or real(url))
    c = cred("https://once.example/compatible-mode/v1")
    for attempt in range(3):
        wire = DASHSCOPE.wire(c, "chat/completions", {}, user_agent=UA, stream=False, attempt=attempt)
        assert wire.url == "https://once.example/compatible-mode/v1/chat/completions"
    assert calls == ["https://once.example/compatible-mode/v1/chat/completions"]
