"""What OpenAI's clients read around an answer, as OpenAI sends it (issue #23 item 10): an `x-request-id` on
every answer, 404s of type `invalid_request_error`, a quota 429 without a Retry-After (OpenAI's clients do not
retry it) and marked not retryable, `/v1/models` with fixed `created` dates, unknown model ids 404."""

from __future__ import annotations

import json
import re

import pytest
from mitmproxy import http
from mitmproxy.test import taddons

from qwen_gateway.accounts import AccountUnavailable
from qwen_gateway import local_answers
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.upstream.dashscope.errors import classify
from qwen_gateway.errors import unavailable
from unit.test_addon import KEY_CRED, OAUTH_CRED, FakeQwen, StreamAnswer, chat_flow, make, relayed, through

REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def setup():
    gw, qwen = make(OAUTH_CRED, KEY_CRED)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        yield gw, qwen


@pytest.mark.parametrize("path,method,body", [
    ("/v1/chat/completions", "POST", CHAT),  # a whole answer
    ("/v1/models", "GET", b""),  # a local answer
    ("/v1/nonsense", "GET", b""),  # an error the gateway answers itself
    ("/v1/chat/completions", "POST", {"messages": "hi"}),  # a refused request
])
async def test_every_answer_carries_an_openai_request_id(setup, path, method, body):
    gw, _ = setup
    f = await through(gw, chat_flow(body, path=path, method=method))
    assert REQUEST_ID.fullmatch(f.response.headers.get("x-request-id", "")), dict(f.response.headers)


async def test_request_ids_differ_per_answer(setup):
    gw, _ = setup
    a = await through(gw, chat_flow(CHAT))
    b = await through(gw, chat_flow(CHAT))
    assert a.response.headers["x-request-id"] != b.response.headers["x-request-id"]


async def test_a_stream_carries_the_request_id_in_its_headers(setup):
    gw, _ = setup
    f = chat_flow({**CHAT, "stream": True})
    gw.requestheaders(f)
    await gw.request(f)
    await relayed(gw, gw.engine.client, f, StreamAnswer(b"data: [DONE]\n\n"))
    assert REQUEST_ID.fullmatch(f.response.headers.get("x-request-id", ""))


async def test_a_404_is_an_invalid_request_error_as_openai_sends_it(setup):
    gw, _ = setup
    for path in ("/v1/nonsense", "/v1/models/gpt-9000"):
        f = await through(gw, chat_flow(b"", path=path, method="GET"))
        assert f.response.status_code == 404
        assert json.loads(f.response.content)["error"]["type"] == "invalid_request_error", path


def test_qwens_404_reaches_the_client_as_an_invalid_request_error():
    err = classify(404, b'{"error": {"message": "model not found", "code": "model_not_found"}}')
    assert err.status == 404 and err.type == "invalid_request_error"
    assert GatewayError(404, "x").type == "invalid_request_error"


@pytest.mark.parametrize("name", ["qwen-nonexistent", "gpt-9000", "text-embedding-v99"])
async def test_unknown_model_ids_are_404(setup, name):
    gw, _ = setup
    f = await through(gw, chat_flow(b"", path=f"/v1/models/{name}", method="GET"))
    assert f.response.status_code == 404
    assert json.loads(f.response.content)["error"]["code"] == "model_not_found"


async def test_model_list_dates_are_fixed(setup, monkeypatch):
    gw, _ = setup
    first = json.loads((await through(gw, chat_flow(b"", path="/v1/models", method="GET"))).response.content)
    monkeypatch.setattr("time.time", lambda: 2_000_000_000.0)  # a later day: the dates stay
    again = json.loads((await through(gw, chat_flow(b"", path="/v1/models", method="GET"))).response.content)
    assert first == again
    assert all(isinstance(m["created"], int) and 1_600_000_000 < m["created"] < 1_800_000_000 for m in first["data"])
    one = json.loads((await through(gw, chat_flow(b"", path="/v1/models/qwen3-coder-plus",
                                                  method="GET"))).response.content)
    assert one == next(m for m in first["data"] if m["id"] == "qwen3-coder-plus")


def test_quota_429_has_no_retry_after_and_is_marked_not_retryable():
    """OpenAI's quota 429 is not worth retrying; a Retry-After until the quota resets (hours) makes clients
    sleep that long. A rate limit keeps its Retry-After (seconds)."""
    import time
    quota = unavailable(AccountUnavailable("every account is out of quota", retry_at=time.time() + 36000))
    assert quota.status == 429 and quota.code == "insufficient_quota"
    assert "retry-after" not in quota.headers and quota.headers.get("x-should-retry") == "false"
    throttled = unavailable(AccountUnavailable("cooling down", retry_at=time.time() + 5, throttled=True))
    assert throttled.headers["retry-after"] and "x-should-retry" not in throttled.headers


async def test_quota_answer_from_the_pool_reaches_the_client_without_retry_after():
    class Exhausted(FakeQwen):
        pass

    class QuotaPool:
        async def acquire(self, exclude=(), *, capability=None, conversation=None):
            import time
            raise AccountUnavailable("every account is out of quota", retry_at=time.time() + 36000)

        def report(self, *a, **k): ...
        def status(self): return []
        def reload(self): ...
        def flush(self): ...
        def close(self): ...

    from qwen_gateway.addon import QwenGateway
    gw = QwenGateway(pool=QuotaPool(), upstream=Exhausted(), observers=[])
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = await through(gw, chat_flow(CHAT))
    assert f.response.status_code == 429 and "retry-after" not in f.response.headers
    assert json.loads(f.response.content)["error"]["code"] == "insufficient_quota"


@pytest.mark.parametrize("event,expected", [
    ({"error": {"message": "boom", "type": "InternalError.Algo", "code": "InternalError"}}, "server_error"),
    ({"error": {"message": "Throttling: rate limit", "code": "Throttling.RateQuota"}}, "requests"),
    ({"error": {"message": "bad", "type": "invalid_request_error", "code": "invalid_parameter_error"}},
     "invalid_request_error"),
])
def test_a_mid_stream_error_event_has_an_openai_error_type(event, expected):
    """Qwen's own error types (DashScope's `InternalError.Algo`, …) are not OpenAI's: the client's error event
    carries OpenAI's (openai-python raises APIError with it; people match on it)."""
    from qwen_gateway.api.chat import ChatStreamTranslator
    from qwen_gateway.turn.stream_rewriter import StreamRewriter
    from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE
    rw = StreamRewriter(DASHSCOPE.chunks("coder-model"), ChatStreamTranslator(False))
    out = rw.run(b"data: " + json.dumps(event).encode() + b"\n\n")
    sent = json.loads(out.decode().split("data: ", 1)[1].split("\n", 1)[0])
    assert sent["error"]["type"] == expected and sent["error"]["message"], sent


@pytest.mark.parametrize("fields", [
    [], [(b"content-type", b"application/json")], [(b"X-Request-Id", b"old"), (b"x-request-id", b"older")],
    [(b"content-type", b"a"), (b"x-ratelimit-limit-requests", b"1")], [(b"\xc3\x84-h", b"v")]])
def test_headers_set_as_mitmproxys_setter_sets_them(fields):
    values = {"x-request-id": "req_1", "X-RateLimit-Limit-Requests": "10", "x-ratelimit-limit-requests": "11",
              "Ä-h": "w", "x-\udcff": "\udcfe"}
    fast, slow = http.Headers(fields), http.Headers(fields)
    local_answers.set_headers(fast, values)
    for name, value in values.items():
        slow[name] = value
    assert fast.fields == slow.fields


def test_stamping_a_whole_answer_scans_its_headers_once(monkeypatch):
    """An answer built by the gateway lacks the stamped headers: appended at once, not through the setter's
    scan of every field per header."""
    set_through_mitmproxy = []
    real = http.Headers.__setitem__
    monkeypatch.setattr(http.Headers, "__setitem__", lambda h, k, v: set_through_mitmproxy.append(k) or real(h, k, v))
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.key.limit_headers = {"x-ratelimit-limit-requests": "10"}
    resp = local_answers.json_response(200, {"ok": True})
    local_answers.Formats({}).stamp(ex, resp)
    assert resp.headers.fields == ((b"content-type", b"application/json"), (b"content-length", b"11"),
                                   (b"x-request-id", b"req_" + ex.id.encode()), (b"x-ratelimit-limit-requests", b"10"))
    assert set_through_mitmproxy == []
