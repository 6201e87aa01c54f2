"""`qwen-auth check` on a team's own server (upstream/selfhosted/drift.py): what it reads of the answers."""

from __future__ import annotations

import json

import httpx

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.drift_report import Report
from qwen_gateway.upstream.selfhosted import drift

CRED = Credential("gpu", KEY, "http://gpu.local:8000/v1", "sk-team", default_model="team-model", provider="selfhosted")


def server(window: int | None, chat) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer sk-team"
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "team-model", "owned_by": "sglang",
                                                       **({"max_model_len": window} if window else {})}]})
        if request.url.path == "/version":
            return httpx.Response(404)
        return chat(json.loads(request.content))
    return httpx.Client(transport=httpx.MockTransport(answer))


def test_a_window_the_server_does_not_say_is_skipped_never_guessed():
    report = Report("gpu")
    drift.check(server(None, lambda body: httpx.Response(500)), CRED, report)
    assert not report.differences and report.requests == 0
    assert report.skipped == ["window: the server does not say team-model's"]


def test_thinking_inside_the_answer_names_the_reasoning_parser_and_usage_is_counted():
    def chat(body: dict) -> httpx.Response:
        content = "<think>hm</think>hi" if body.get("chat_template_kwargs") else "hi"
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}],
                                         "usage": {"total_tokens": 7}})
    report = Report("gpu")
    drift.check(server(262144, chat), CRED, report, deep=True)
    assert [f.what for f in report.differences] == ["reasoning"]
    assert report.matched[-1].startswith("tool calls") and report.requests == 2 and report.spent == 14
