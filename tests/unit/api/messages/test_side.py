"""Claude Code's side requests to api.anthropic.com, answered locally (api/messages/side.py): nothing goes to
Anthropic, each gets the empty valid answer Claude Code needs, an unknown one a 404."""

from __future__ import annotations

import json

import pytest
from mitmproxy.test import tflow

from qwen_gateway.api.messages import side
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.settings.config import Config


async def asked(method: str, path: str, query: str = ""):
    f = tflow.tflow()
    f.request.method, f.request.path = method, path + query
    ex = Exchange(ClientRequest(method, path, f"https://api.anthropic.com{path}"))
    return ex, await side.answer(ex, f, Config())


async def test_webfetchs_domain_check_is_answered_locally():
    """WebFetch fetches only after a 200 with `can_fetch: true` (tests/e2e/test_e2e_claude_code_webfetch.py runs it)."""
    from mitmproxy.test import tflow

    from qwen_gateway.api.messages import side
    from qwen_gateway.settings.config import Config
    f = tflow.tflow()
    f.request.method, f.request.path = "GET", "/api/web/domain_info?domain=docs.example.com"
    ex = Exchange(ClientRequest("GET", "/api/web/domain_info", "https://api.anthropic.com/api/web/domain_info"))
    resp = await side.answer(ex, f, Config())
    assert resp.status_code == 200 and json.loads(resp.content) == {"domain": "docs.example.com", "can_fetch": True}
    f.request.path = "/api/web/domain_info"
    with pytest.raises(GatewayError) as e:
        await side.answer(ex, f, Config())
    assert e.value.status == 400


@pytest.mark.parametrize("method, path", sorted(side.ANSWERS))
async def test_each_known_side_request_gets_its_answer_and_a_note(method, path):
    ex, resp = await asked(method, path)
    assert resp.status_code == 200 and json.loads(resp.content) == side.ANSWERS[(method, path)]
    assert any("answered locally" in n for n in ex.notes)


async def test_policy_limits_are_none():
    # left unanswered, Claude Code retries this for about 17 s before its first model call
    _, resp = await asked("GET", "/api/claude_code/policy_limits")
    assert json.loads(resp.content) == {"restrictions": {}}


async def test_feature_flags_under_any_sdk_path_are_none():
    _, resp = await asked("POST", "/api/eval/sdk-abc123")
    assert resp.status_code == 200 and json.loads(resp.content) == {"features": {}}


async def test_managed_settings_are_a_204_without_a_body():
    # a 200 would need uuid, checksum and settings
    _, resp = await asked("GET", "/api/claude_code/settings")
    assert resp.status_code == 204 and resp.content == b"" and "content-length" not in resp.headers


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_hello_is_an_empty_200(method):
    _, resp = await asked(method, "/api/hello")
    assert resp.status_code == 200 and resp.content == b""


@pytest.mark.parametrize("method, path", [("GET", "/api/unknown"), ("POST", "/api/hello"),
                                          ("GET", "/api/event_logging/batch"), ("GET", "/api/eval/sdk-1")])
async def test_anything_else_is_a_404_that_says_nothing_is_forwarded(method, path):
    with pytest.raises(GatewayError) as e:
        await asked(method, path)
    assert (e.value.status, e.value.code) == (404, "unknown_url")
    assert f"{method} {path}" in e.value.message and "does not forward anything to Anthropic" in e.value.message
