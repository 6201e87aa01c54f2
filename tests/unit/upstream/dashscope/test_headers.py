"""Where a DashScope request goes and the headers it carries (upstream/dashscope/headers.py, through
`DashScope.wire`): the same request every time, its URL worked out once per API base. A Qwen OAuth login
speaks qwen-code's protocol with qwen-code's headers; a key account sends the client's own identity, never
qwen-code's (a plan's terms decide who may call it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from qwen_gateway.accounts import KEY, OAUTH, Credential
from qwen_gateway.upstream.dashscope import headers
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE

UA = "QwenCode/0.14.5 (linux; x64)"
SCRIPT = "OpenAI/Python 1.99.0"
QWEN_CODE_ONLY = ("x-dashscope-useragent", "x-dashscope-authtype")


def cred(base: str, kind: str = OAUTH) -> Credential:
    return Credential("a", kind, base, "tok-123")


def names(wire) -> list[str]:
    return [k.lower() for k, _ in wire.headers]


def test_an_oauth_login_sends_qwen_codes_headers_whatever_the_client():
    wire = DASHSCOPE.wire(cred("https://portal.qwen.ai/v1"), "chat/completions", {"stream": False}, user_agent=UA,
                          client_agent=SCRIPT, stream=False, attempt=2,
                          api_headers=(("anthropic-version", "2023-06-01"),))
    assert wire.url == "https://portal.qwen.ai/v1/chat/completions"
    assert wire.headers == [
        ("Host", "portal.qwen.ai"), ("Accept", "application/json"), ("Content-Type", "application/json"),
        ("Accept-Encoding", "identity"), ("Authorization", "Bearer tok-123"), ("User-Agent", UA),
        ("X-DashScope-CacheControl", "enable"), ("X-DashScope-UserAgent", UA), ("X-DashScope-AuthType", "qwen-oauth"),
        ("X-Stainless-Lang", "js"), ("X-Stainless-Package-Version", headers.OPENAI_NODE_VERSION),
        ("X-Stainless-OS", "Linux"), ("X-Stainless-Arch", headers.ARCH), ("X-Stainless-Runtime", "node"),
        ("X-Stainless-Runtime-Version", "v20.19.0"), ("X-Stainless-Retry-Count", "2"),
        ("anthropic-version", "2023-06-01")]


def test_a_key_account_sends_the_clients_own_user_agent_and_none_of_qwen_codes_headers():
    # a stream-only model's whole answer is asked as a stream; a port that is not the scheme's stays in Host
    wire = DASHSCOPE.wire(cred("http://127.0.0.1:9/v1/", KEY), "/chat/completions", {"stream": True},
                          user_agent=UA, client_agent=SCRIPT, stream=False, attempt=1)
    assert wire.url == "http://127.0.0.1:9/v1/chat/completions"
    assert wire.headers == [
        ("Host", "127.0.0.1:9"), ("Accept", "text/event-stream"), ("Content-Type", "application/json"),
        ("Accept-Encoding", "identity"), ("Authorization", "Bearer tok-123"), ("User-Agent", SCRIPT),
        ("X-DashScope-CacheControl", "enable")]  # the prompt cache's switch: not an identity
    assert not any(n.startswith("x-stainless-") or n in QWEN_CODE_ONLY for n in names(wire))


def test_a_key_account_names_the_gateway_for_a_client_that_sent_no_user_agent():
    wire = DASHSCOPE.wire(cred("https://coding-intl.dashscope.aliyuncs.com/v1", KEY), "chat/completions", {},
                          user_agent=UA, stream=False, attempt=0)
    agent = dict(wire.headers)["User-Agent"]
    assert agent == headers.GATEWAY_AGENT and agent.startswith("qwen-gateway/") and agent != "qwen-gateway/"
    assert "QwenCode" not in str(wire.headers)


def test_the_gateways_version_comes_from_the_package_else_a_constant(monkeypatch):
    assert headers.gateway_version() == headers.metadata.version("qwen-gateway")

    def missing(name):
        raise headers.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(headers.metadata, "version", missing)
    assert headers.gateway_version() == headers.FALLBACK_VERSION
    pyproject = tomllib.loads((Path(__file__).resolve().parents[4] / "pyproject.toml").read_text())
    assert headers.FALLBACK_VERSION == pyproject["project"]["version"]  # kept with the package's


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
