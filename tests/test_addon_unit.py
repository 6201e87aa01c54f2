"""The addon's hooks in mitmproxy's own test style (taddons, tflow): no network."""

import json

import pytest
from mitmproxy import http
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow

from qwen_gateway.addon import REDACTED, QwenGateway
from qwen_gateway.auth.base import KEY, OAUTH, AccountUnavailable, Credential


class StaticPool:
    """The pool interface over fixed credentials (the real pool is tested in test_auth_*)."""

    def __init__(self, *creds: Credential) -> None:
        self.creds = list(creds)
        self.reports: list[tuple[str, str]] = []

    async def acquire(self, exclude=()):
        for c in self.creds:
            if c.account not in exclude:
                return c
        raise AccountUnavailable("no account left")

    async def refreshed(self, account):
        return next(c for c in self.creds if c.account == account)

    def report(self, account, outcome, *, retry_after=None):
        self.reports.append((account, outcome))

    def status(self):
        return [{"name": c.account, "kind": c.kind, "state": "ok", "base_url": c.base_url} for c in self.creds]


OAUTH_CRED = Credential("default", OAUTH, "https://portal.qwen.ai/v1", "secret-oauth-token")
KEY_CRED = Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-secret",
                      default_model="qwen3-coder-plus")


def chat_flow(body, *, host="api.openai.com", path="/v1/chat/completions", reverse=False, method="POST"):
    f = tflow.tflow()
    f.request = http.Request.make(method, f"https://{host}{path}", json.dumps(body) if isinstance(body, dict)
                                  else body, {"authorization": "Bearer sk-client-key", "content-type":
                                              "application/json", "host": host})
    if reverse:
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:https://portal.qwen.ai")
    return f


def loaded(tctx, gw):
    """What `-s addons/qwen.py` does: configure() sees every option once."""
    gw.configure(set(tctx.options.keys()))
    return gw


@pytest.fixture
def gw_ctx():
    gw = QwenGateway(pool=StaticPool(OAUTH_CRED, KEY_CRED))
    with taddons.context(gw) as tctx:
        yield loaded(tctx, gw), tctx


async def test_chat_request_is_rerouted_with_injected_credential(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "hi"}], "stream": True})
    await gw.request(f)
    assert f.response is None
    assert f.request.url == "https://portal.qwen.ai/v1/chat/completions"
    assert f.request.headers["authorization"] == "Bearer secret-oauth-token"
    assert f.request.headers["host"] == "portal.qwen.ai"
    assert f.request.headers["x-dashscope-authtype"] == "qwen-oauth"
    assert f.request.headers["user-agent"].startswith("QwenCode/")
    assert "sk-client-key" not in str(f.request.headers)
    body = json.loads(f.request.content)
    assert body["model"] == "coder-model"
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


async def test_unclaimed_hosts_pass_untouched(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow({"x": 1}, host="example.com")
    before = f.request.get_state()
    await gw.request(f)
    assert f.response is None and f.request.get_state() == before


async def test_reverse_mode_claims_every_path(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow({}, host="portal.qwen.ai", path="/v1/nonsense", reverse=True)
    await gw.request(f)
    assert f.response.status_code == 404
    assert json.loads(f.response.content)["error"]["code"] == "unknown_url"


@pytest.mark.parametrize("body,status,param", [
    (b"{not json", 400, None),
    (b"[1,2]", 400, None),
    ({"model": "gpt-4o"}, 400, "messages"),
    ({"model": "gpt-4o", "messages": "hi"}, 400, "messages"),
    ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
])
async def test_bad_input_gets_openai_errors(gw_ctx, body, status, param):
    gw, _ = gw_ctx
    f = chat_flow(body)
    await gw.request(f)
    assert f.response.status_code == status
    err = json.loads(f.response.content)["error"]
    assert set(err) == {"message", "type", "code", "param"} and err["param"] == param
    assert f.request.host == "api.openai.com"  # nothing was rerouted, nothing was sent


async def test_wrong_method_and_local_models(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow(b"", method="GET")
    await gw.request(f)
    assert f.response.status_code == 405
    f = chat_flow(b"", path="/v1/models", method="GET")
    await gw.request(f)
    ids = [m["id"] for m in json.loads(f.response.content)["data"]]
    assert "coder-model" in ids and "gpt-4o" in ids
    f = chat_flow(b"", path="/v1/models/gpt-4o", method="GET")
    await gw.request(f)
    assert json.loads(f.response.content)["id"] == "gpt-4o"
    f = chat_flow(b"", path="/v1/models/nope", method="GET")
    await gw.request(f)
    assert f.response.status_code == 404


async def test_health_has_no_secrets(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow(b"", path="/health", method="GET", reverse=True)
    await gw.request(f)
    text = f.response.content.decode()
    assert json.loads(text)["status"] == "ok"
    assert "secret" not in text


async def test_non_stream_answer_is_translated_and_token_redacted(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    qwen = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "coder-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "<think>hmm</think>Hello",
                                                 "reasoning_content": None}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cached_tokens": 1}}
    f.response = http.Response.make(200, json.dumps(qwen), {"content-type": "application/json"})
    gw.responseheaders(f)
    assert f.request.headers["authorization"] == REDACTED
    await gw.response(f)
    out = json.loads(f.response.content)
    assert out["model"] == "gpt-4o-mini"
    assert out["choices"][0]["message"]["content"] == "Hello"
    assert out["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}
    assert f.metadata["qwen"]["upstream_model"] == "coder-model"
    assert "secret" not in json.dumps(f.metadata)


async def test_stream_callable_is_installed_for_sse(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    await gw.request(f)
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream", "content-length": "0"})
    gw.responseheaders(f)
    assert callable(f.response.stream) and "content-length" not in f.response.headers
    out = f.response.stream(b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
                            b"data: [DONE]\n\n")
    out += f.response.stream(b"")
    f.response.raw_content = None
    await gw.response(f)
    assert f.response.raw_content == b"".join(out)
    assert b'"model":"gpt-4o"' in f.response.raw_content


async def test_upstream_error_maps_to_openai_status(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    await gw.request(f)
    f.response = http.Response.make(400, json.dumps({"error": {"code": "invalid_parameter_error", "message":
                                    "Range of input length should be [1, 983616]", "type": "invalid_request_error",
                                    "param": None}}), {"content-type": "application/json"})
    gw.responseheaders(f)
    await gw.response(f)
    assert f.response.status_code == 400
    assert json.loads(f.response.content)["error"]["code"] == "context_length_exceeded"


async def test_key_account_gets_its_own_model_and_qwen_codes_shape():
    gw = QwenGateway(pool=StaticPool(KEY_CRED))
    with taddons.context(gw) as tctx:
        loaded(tctx, gw)
        f = chat_flow({"model": "gpt-4o", "messages": [{"role": "system", "content": "s"},
                                                      {"role": "user", "content": "hi"}]})
        await gw.request(f)
        assert f.request.url == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions"
        assert f.request.headers["x-dashscope-authtype"] == "openai"  # qwen-code's value for keys
        body = json.loads(f.request.content)
        assert body["model"] == "qwen3-coder-plus"
        assert body["messages"][0]["content"] == [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]


async def test_no_account_fails_closed_with_openai_error():
    gw = QwenGateway(pool=StaticPool())
    with taddons.context(gw) as tctx:
        loaded(tctx, gw)
        f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
        await gw.request(f)
        assert f.response.status_code == 503
        assert f.request.host == "api.openai.com" and f.response.headers["content-type"] == "application/json"


def test_model_map_option_is_validated():
    gw = QwenGateway(pool=StaticPool(OAUTH_CRED))
    with taddons.context(gw) as tctx:
        tctx.configure(gw, qwen_model_map=["gpt-4o=qwen3-coder-plus"])
        assert gw.models.resolve("gpt-4o") == "qwen3-coder-plus"
        with pytest.raises(Exception):
            tctx.configure(gw, qwen_model_map=["broken"])


async def test_replayed_flow_gets_a_fresh_credential_and_original_request(gw_ctx):
    gw, _ = gw_ctx
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, reverse=True)
    await gw.request(f)
    assert f.metadata["qwen"]["client"]["key"] == "sk-… (13 chars)"
    f.response = http.Response.make(401, b'{"error":{"code":"invalid_api_key","message":"x"}}')
    gw.responseheaders(f)
    assert f.request.headers["authorization"] == REDACTED
    # mitmweb's replay sends the stored (rewritten, redacted) request through the hooks again
    f.response = None
    f.is_replay = "request"
    await gw.request(f)
    assert f.response is None
    assert f.request.headers["authorization"] == "Bearer secret-oauth-token"
    assert f.metadata["qwen"]["notes"] == ["replayed"]
    assert json.loads(f.request.content)["model"] == "coder-model"
