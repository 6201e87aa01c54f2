"""The gateway addon in mitmproxy's own test style (taddons, tflow): no network. Qwen is a fake upstream
client handed to the engine, so every upstream request is seen here."""

import asyncio
import json

import httpx
import pytest
from mitmproxy import exceptions, http
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow
from mitmproxy.tools.web.app import flow_to_json

from qwen_gateway.accounts import KEY, OAUTH, AccountUnavailable, Capability, Credential
from qwen_gateway.addon import QwenGateway
from qwen_gateway.dispatch import BATCH_S
from qwen_gateway.turn import in_process
from qwen_gateway.models.learned import LearnedFacts
from qwen_gateway.turn.relay import STREAM_CAPTURE, TOKEN_HEADER


class StaticPool:
    """The pool interface over fixed credentials (the real pool is tested in test_auth_*)."""

    def __init__(self, *creds: Credential) -> None:
        self.creds = list(creds)
        self.reports: list[tuple[str, str]] = []

    async def acquire(self, exclude=(), *, capability=Capability.CHAT, conversation=None):
        for c in self.creds:
            if c.account not in exclude:
                return c
        raise AccountUnavailable("no account left")

    async def refreshed(self, account, *, refused=None):
        return next(c for c in self.creds if c.account == account)

    def report(self, account, outcome, *, retry_after=None, detail=None, window=None):
        self.reports.append((account, outcome))

    def status(self):
        return [{"name": c.account, "kind": c.kind, "state": "ok", "base_url": c.base_url} for c in self.creds]

    def reload(self):
        pass

    def flush(self):
        pass

    def close(self):
        pass


OAUTH_CRED = Credential("default", OAUTH, "https://portal.qwen.ai/v1", "secret-oauth-token")
KEY_CRED = Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-secret",
                      default_model="qwen3-coder-plus")
ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "coder-model",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "<think>hmm</think>Hello",
                                               "reasoning_content": None}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cached_tokens": 1}}


class Sent:
    def __init__(self, url: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.url = httpx.URL(url)
        self.headers = httpx.Headers(headers)
        self.content = body


class FakeResponse:
    def __init__(self, status: int, body: dict) -> None:
        self.status_code = status
        self.headers = {"content-type": "application/json"}
        self.body = json.dumps(body).encode()

    async def aiter_raw(self):
        yield self.body

    async def aread(self) -> bytes:
        return self.body

    async def aclose(self) -> None:
        pass


class StreamAnswer:
    """Qwen's streamed answer: its chunks as they arrive (then, with `hang`, nothing more until cancelled)."""

    def __init__(self, *chunks: bytes, hang: bool = False) -> None:
        self.status_code = 200
        self.headers = {"content-type": "text/event-stream"}
        self.chunks, self.hang = chunks, hang

    async def aiter_raw(self):
        for chunk in self.chunks:
            yield chunk
        if self.hang:
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        pass


class FakeQwen:
    """The engine's upstream client: answers like Qwen and keeps every request it got."""

    def __init__(self, *answers: tuple[int, dict]) -> None:
        self.answers = list(answers)
        self.requests: list[Sent] = []

    async def send(self, url, headers, body, *, head_timeout, read_timeout) -> FakeResponse:
        self.requests.append(Sent(url, headers, body))
        next_one = self.answers.pop(0) if self.answers else (200, ANSWER)
        if isinstance(next_one, StreamAnswer):
            return next_one
        status, answer = next_one
        return FakeResponse(status, answer)

    async def aclose(self) -> None:
        pass

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


def chat_flow(body, *, host="api.openai.com", path="/v1/chat/completions", reverse=False, method="POST",
              auth=b"Bearer sk-client-key"):
    f = tflow.tflow()
    f.request = http.Request.make(method, f"https://{host}{path}", json.dumps(body) if isinstance(body, dict)
                                  else body, [(b"authorization", auth), (b"content-type", b"application/json"),
                                              (b"host", host.encode())])
    f.request.headers["host"] = host  # as the client wrote it (Request.make drops IPv6 brackets)
    if reverse:
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:https://portal.qwen.ai")
    return f


async def through(gw, f):
    """A flow through the request-side hooks, as mitmproxy runs them."""
    gw.requestheaders(f)
    await gw.request(f)
    if f.response is not None:
        gw.responseheaders(f)
        gw.response(f)
        await asyncio.sleep(0)  # a turn of the event loop: mitmproxy sends the answer, recording observers run
    return f


async def relayed(gw, qwen, f, answer: StreamAnswer) -> bytes:
    """What happens once mitmproxy connects to the relay (turn/relay.py): the turn runs — translated, the
    engine's answer opened (here `answer`) and pumped —, the relay writes its head (mitmproxy's responseheaders)
    and the client's events, chunked. The client's bytes; with a hanging answer, the connection is closed after
    its first events, as mitmproxy closes it when the client goes away."""
    qwen.answers.append(answer)
    host, port = gw.relay.address
    reader, writer = await (in_process.open_connection(host, port) if host == in_process.HOST
                            else asyncio.open_connection(host, port))
    token = f.request.headers[TOKEN_HEADER].encode()
    writer.write(b"POST %s HTTP/1.1\r\nhost: relay\r\n%s: %s\r\ncontent-length: 0\r\n\r\n"
                 % (f.request.path.encode(), TOKEN_HEADER.encode(), token))
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    fields = [tuple(line.split(": ", 1)) for line in head[1:] if ": " in line]
    f.response = http.Response.make(status, b"", [(k.encode(), v.encode()) for k, v in fields])
    chunked = any(k.lower() == "transfer-encoding" for k, _ in fields)
    if not chunked:
        f.response.content = await reader.readexactly(int(dict((k.lower(), v) for k, v in fields)["content-length"]))
        writer.close()
        return f.response.content
    f.response.headers.pop("content-length", None)  # the relay's head: chunked
    gw.responseheaders(f)
    out = bytearray()
    while True:
        size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), 10))[:-2], 16)
        data = await reader.readexactly(size + 2)
        if not size:
            break
        out += data[:-2]
        if answer.hang:
            break
    writer.close()
    await asyncio.sleep(0)
    return bytes(out)


def make(*creds, qwen=None, **options):
    qwen = qwen or FakeQwen()
    gw = QwenGateway(pool=StaticPool(*creds), upstream=qwen, observers=[])
    return gw, qwen


@pytest.fixture
def setup():
    gw, qwen = make(OAUTH_CRED, KEY_CRED)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))  # what `-s addons/qwen.py` does
        yield gw, qwen, tctx


async def test_whole_answer_comes_from_the_engine_with_the_credential_outside_the_flow(setup):
    gw, qwen, _ = setup
    f = await through(gw, chat_flow({"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "brief"},
                                                                          {"role": "user", "content": "hi"}]}))
    (up,) = qwen.requests
    assert str(up.url) == "https://portal.qwen.ai/v1/chat/completions"
    assert up.headers["authorization"] == "Bearer secret-oauth-token"
    assert up.headers["x-dashscope-authtype"] == "qwen-oauth" and up.headers["user-agent"].startswith("QwenCode/")
    assert "sk-client-key" not in str(up.headers)
    body = qwen.bodies()[0]
    assert body["model"] == "coder-model" and body["messages"][0]["content"] == "brief"  # short: no cache marker
    out = json.loads(f.response.content)
    assert out["model"] == "gpt-4o-mini" and out["choices"][0]["message"]["content"] == "Hello"
    assert out["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}
    # the flow keeps the client's request (its key dropped) and never held the credential
    assert f.request.path == "/v1/chat/completions" and "authorization" not in f.request.headers
    meta = f.metadata["qwen"]
    assert meta["upstream_model"] == "coder-model" and meta["client"]["key"] == "sk-… (13 chars)"
    assert meta["upstream"]["headers"]["Authorization"] == "Bearer <redacted>"
    text = json.dumps(f.get_state(), default=repr) + json.dumps(meta)
    assert "secret" not in text and "sk-client-key" not in text
    assert gw.pool.reports == [("default", "ok")]


async def test_stream_is_pointed_at_the_relay_without_credential(setup):
    gw, qwen, _ = setup
    gw.relay.capture = STREAM_CAPTURE  # a reader of the flow's body (mitmweb, -w: relay.stream_capture)
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    gw.requestheaders(f)
    await gw.request(f)
    assert f.response is None and qwen.requests == []  # the relay asks the engine once mitmproxy connects
    assert (f.request.host, f.request.port) == gw.relay.address and f.request.scheme == "http"
    assert f.request.host_header == "api.openai.com" and f.request.headers[TOKEN_HEADER]
    assert "secret" not in json.dumps(f.get_state(), default=repr)
    # mitmproxy connects to the relay: the turn translates Qwen's events, mitmproxy passes them on
    out = await relayed(gw, qwen, f, StreamAnswer(
        b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"))
    assert TOKEN_HEADER not in f.request.headers
    assert f.response.stream is True and "content-length" not in f.response.headers
    assert qwen.requests and "secret" not in json.dumps(f.get_state(), default=repr)
    f.response.raw_content = None
    gw.response(f)
    assert f.response.raw_content == out and b'"model":"gpt-4o"' in f.response.raw_content



def _from_a_client(f, *, host: str, tls: bool, listener=("127.0.0.1", 8080)):
    """As mitmproxy hands the flow over: in reverse mode the request's URL is the reverse target's."""
    if isinstance(f.client_conn.proxy_mode, mode_specs.ReverseMode):
        f.request.scheme, f.request.host, f.request.port = "https", "portal.qwen.ai", 443
    f.request.headers["host"] = host
    f.client_conn.sockname = listener
    f.client_conn.timestamp_tls_setup = 1.0 if tls else None  # tls_established
    return f


def _shown(f) -> str:
    """The URL mitmweb's Path column shows (its `pretty_url`: scheme, pretty host, a port unless the
    scheme's default, path)."""
    r = flow_to_json(f)["request"]
    default = {"http": 80, "https": 443}[r["scheme"]]
    return f"{r['scheme']}://{r['pretty_host']}{'' if r['port'] == default else ':' + str(r['port'])}{r['path']}"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_the_flow_shows_the_url_the_client_called(setup, stream):
    """Issue 32: mitmweb's Path column read `https://127.0.0.1/v1/…` for whole answers (the reverse target's
    scheme and port) and `http://127.0.0.1:1/v1/…` for streams (the relay's port). Once answered, a flow
    shows what the client called, in reverse mode and through the explicit proxy."""
    gw, _, _ = setup
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    cases = [(chat_flow(body, host="127.0.0.1:8080", reverse=True), "127.0.0.1:8080", False,
              "http://127.0.0.1:8080/v1/chat/completions"),
             (chat_flow(body, host="localhost:8080", reverse=True), "localhost:8080", False,
              "http://localhost:8080/v1/chat/completions"),
             (chat_flow(body), "api.openai.com", True, "https://api.openai.com/v1/chat/completions")]
    for f, host, tls, called in cases:
        f = _from_a_client(f, host=host, tls=tls)
        gw.requestheaders(f)
        await gw.request(f)
        if stream:
            assert (f.request.host, f.request.port) == gw.relay.address  # connected to the relay...
            f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
            gw.responseheaders(f)  # ...and shown as called once its answer arrives
            assert _shown(f) == called
        gw.response(f)
        assert _shown(f) == called and f.metadata["qwen"]["client"]["url"] == called


@pytest.mark.parametrize("complete", [True, False])
async def test_a_client_that_leaves_after_the_whole_stream_got_its_answer(setup, complete):
    """The client reads [DONE] and closes before mitmproxy has seen the relay's end of the stream: mitmproxy
    calls `error` ("Client disconnected."), but the client had the whole answer. Recorded as served (it
    was a 502 upstream_connection_error); a client gone mid-stream is 499 client_disconnected (it was the
    same 502, as if Qwen had failed)."""
    from mitmproxy import flow as mflow

    gw, qwen, _ = setup
    gw.relay.capture = STREAM_CAPTURE  # a reader of the flow's body (mitmweb, -w)
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    gw.requestheaders(f)
    await gw.request(f)
    first = b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
    rest = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    out = await relayed(gw, qwen, f, StreamAnswer(first, rest) if complete else StreamAnswer(first, hang=True))
    f.response.raw_content = None  # mitmproxy keeps no streamed body
    f.error = mflow.Error("Client disconnected.")
    gw.error(f)
    meta = f.metadata["qwen"]
    if complete:
        assert meta["status"] == 200 and "error" not in meta
        assert f.response.raw_content == out and b"[DONE]" in f.response.raw_content
    else:
        assert meta["status"] == 499 and meta["error"] == {"status": 499, "code": "client_disconnected",
                                                           "message": "Client disconnected."}


@pytest.mark.parametrize("path", ["/v1/traces/ingest", "/traces/ingest"])
async def test_agents_sdk_traces_are_accepted_and_dropped(setup, path):
    """The Agents SDK uploads its traces to api.openai.com: the gateway answers 204 itself (they go nowhere,
    Qwen has no tracing API), so the SDK does not log a client error on every run."""
    gw, qwen, _ = setup
    f = chat_flow({"data": [{"object": "trace.span", "id": "span_1"}]}, path=path)
    await through(gw, f)
    assert f.response.status_code == 204 and not f.response.content and qwen.requests == []
    assert "content-length" not in f.response.headers
    assert f.metadata["qwen"]["route"] == "traces"

async def test_unclaimed_hosts_pass_untouched(setup):
    gw, qwen, _ = setup
    f = chat_flow({"x": 1}, host="example.com")
    before = f.request.get_state()
    await through(gw, f)
    assert f.response is None and f.request.get_state() == before and qwen.requests == []


@pytest.mark.parametrize("host", ["API.OpenAI.com", "api.openai.com."])
async def test_intercepted_host_matching_ignores_case_and_trailing_dot(setup, host):
    gw, qwen, _ = setup
    f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, host=host))
    assert f.response.status_code == 200 and len(qwen.requests) == 1


async def test_codex_model_list_on_chatgpt_com_is_answered_and_the_rest_of_the_host_passes(setup):
    """Codex (built-in provider) refreshes its catalog from chatgpt.com with the user's key: answered here, an
    empty catalog (Codex keeps its own); every other chatgpt.com path is not the gateway's."""
    gw, qwen, _ = setup
    f = chat_flow(b"", host="chatgpt.com", method="GET", path="/backend-api/codex/models?client_version=0.169.0")
    f.client_conn.sni = "chatgpt.com"
    await through(gw, f)
    assert f.response.status_code == 200 and json.loads(f.response.content) == {"models": []}
    assert f.response.headers["etag"] and "authorization" not in f.request.headers
    other = chat_flow(b"", host="chatgpt.com", method="GET", path="/backend-api/plugins/export/curated")
    other.client_conn.sni = "chatgpt.com"
    before = other.request.get_state()
    await through(gw, other)
    assert other.response is None and other.request.get_state() == before and qwen.requests == []


def telemetry_flow(content_type: bytes = b"application/x-protobuf"):
    f = chat_flow(b"\x0a\x03otel-metrics-payload", host="ab.chatgpt.com", path="/otlp/v1/metrics")
    f.request.headers["content-type"] = content_type.decode()
    f.client_conn.sni = "ab.chatgpt.com"
    return f


async def test_codex_telemetry_is_answered_with_an_empty_otlp_success_and_dropped(setup):
    """Codex's OTLP metrics (ab.chatgpt.com, claimed with api.openai.com): OTLP/HTTP's full success in the
    request's encoding, the metrics themselves not kept on the flow."""
    gw, qwen, _ = setup
    f = await through(gw, telemetry_flow())
    assert (f.response.status_code, f.response.content) == (200, b"")
    assert f.response.headers["content-type"] == "application/x-protobuf"
    assert f.request.content == b"" and qwen.requests == []
    assert any("telemetry" in n for n in f.metadata["qwen"]["notes"])
    f = await through(gw, telemetry_flow(b"application/json"))
    assert (f.response.status_code, f.response.content) == (200, b"{}")


async def test_codex_telemetry_passes_when_told_to(setup):
    gw, _, tctx = setup
    tctx.options.update(qwen_codex_telemetry="pass")
    f = telemetry_flow()
    before = f.request.get_state()
    await through(gw, f)
    assert f.response is None and f.request.get_state() == before


async def test_a_claimed_path_needs_every_name_to_agree(setup):
    """The path is claimed on chatgpt.com only: a Host header naming it inside a tunnel to another server
    name (SNI) claims nothing, and the same path on another host is not the gateway's."""
    gw, _, _ = setup
    f = chat_flow(b"", host="chatgpt.com", method="GET", path="/backend-api/codex/models")
    f.client_conn.sni = "example.com"
    await through(gw, f)
    assert f.response is None
    g = await through(gw, chat_flow(b"", host="example.com", method="GET", path="/backend-api/codex/models"))
    assert g.response is None


async def test_reverse_mode_claims_every_path(setup):
    gw, _, _ = setup
    f = await through(gw, chat_flow({}, host="localhost", path="/v1/nonsense", reverse=True))
    assert f.response.status_code == 404
    assert json.loads(f.response.content)["error"]["code"] == "unknown_url"
    assert f.metadata["qwen"]["route"] == "unknown" and f.metadata["qwen"]["status"] == 404


@pytest.mark.parametrize("body,status,param", [
    (b"{not json", 400, None),
    (b"[1,2]", 400, None),
    (b"[" * 100000, 400, None),
    ({"model": "gpt-4o"}, 400, "messages"),
    ({"model": "gpt-4o", "messages": "hi"}, 400, "messages"),
    ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    ({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),  # required, as OpenAI has it
])
async def test_bad_input_gets_openai_errors(setup, body, status, param):
    gw, qwen, _ = setup
    f = await through(gw, chat_flow(body))
    assert f.response.status_code == status
    err = json.loads(f.response.content)["error"]
    assert set(err) == {"message", "type", "code", "param"} and err["param"] == param
    assert f.request.host == "api.openai.com" and qwen.requests == []  # nothing rerouted, nothing sent


async def test_wrong_method_and_local_models(setup):
    gw, _, _ = setup
    assert (await through(gw, chat_flow(b"", method="PUT"))).response.status_code == 405
    # GET /v1/chat/completions lists the stored chat completions (api/stored_chat)
    assert json.loads((await through(gw, chat_flow(b"", method="GET"))).response.content)["object"] == "list"
    f = await through(gw, chat_flow(b"", path="/v1/models", method="GET"))
    ids = [m["id"] for m in json.loads(f.response.content)["data"]]
    assert "coder-model" in ids and "gpt-4o" in ids
    f = await through(gw, chat_flow(b"", path="/v1/models/gpt-4o", method="GET"))
    assert json.loads(f.response.content)["id"] == "gpt-4o"
    assert (await through(gw, chat_flow(b"", path="/v1/models/nope", method="GET"))).response.status_code == 404


async def test_health_has_no_secrets(setup):
    gw, _, _ = setup
    f = await through(gw, chat_flow(b"", path="/health", method="GET", reverse=True))
    text = f.response.content.decode()
    assert json.loads(text)["status"] == "ok" and "secret" not in text


async def test_upstream_error_maps_to_openai_status():
    gw, qwen = make(OAUTH_CRED, qwen=FakeQwen((400, {"error": {
        "code": "invalid_parameter_error", "message": "Range of input length should be [1, 983616]",
        "type": "invalid_request_error", "param": None}})))
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        assert f.response.status_code == 400
        assert json.loads(f.response.content)["error"]["code"] == "context_length_exceeded"
        assert gw.pool.reports == [("default", "error")]


async def test_401_refreshes_once_and_retries_before_the_client_sees_anything():
    gw, qwen = make(OAUTH_CRED, qwen=FakeQwen((401, {"error": {"code": "invalid_api_key", "message": "x"}})))
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        assert f.response.status_code == 200 and len(qwen.requests) == 2
        assert qwen.requests[1].headers["x-stainless-retry-count"] == "1"
        assert f.metadata["qwen"]["retry_reasons"] == ["refreshed"]


async def test_key_account_gets_its_own_model_qwen_codes_body_and_the_clients_identity():
    gw, qwen = make(KEY_CRED)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "system", "content": "s"},
                                                                    {"role": "user", "content": "hi"}]}))
        (up,) = qwen.requests
        assert str(up.url) == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions"
        assert "x-dashscope-authtype" not in up.headers  # qwen-code's identity: never on a key account
        body = qwen.bodies()[0]
        assert body["model"] == "qwen3-coder-plus"
        assert body["messages"][0]["content"] == "s"  # a short prompt: no cache marker (tests/unit/upstream/dashscope/test_markers.py)


async def test_no_account_fails_closed_with_openai_error():
    gw, qwen = make()
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        assert f.response.status_code == 503 and f.response.headers["content-type"] == "application/json"
        assert f.request.host == "api.openai.com" and qwen.requests == []


async def test_model_map_option_is_validated():
    gw, _ = make(OAUTH_CRED)
    with taddons.context(gw) as tctx:
        with pytest.raises(SystemExit):  # while mitmproxy starts: the process ends (ingress/startup.py)
            tctx.configure(gw, qwen_model_map=["broken"])
        tctx.configure(gw, qwen_model_map=["gpt-4o=qwen3-coder-plus"])
        assert gw.config.models.resolve("gpt-4o") == "qwen3-coder-plus"
        gw.running()
        with pytest.raises(exceptions.OptionsError, match="qwen_model_map"):  # at run time: refused, kept
            tctx.configure(gw, qwen_model_map=["broken"])
        assert gw.config.models.resolve("gpt-4o") == "qwen3-coder-plus"
        await gw.done()


async def test_replayed_flow_runs_again_with_a_fresh_credential(setup):
    gw, qwen, _ = setup
    f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                                    reverse=True))
    assert f.metadata["qwen"]["client"]["key"] == "sk-… (13 chars)"
    # mitmweb's replay sends the stored client request (its key gone) through the hooks again
    f.response = None
    f.is_replay = "request"
    f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("regular")
    await through(gw, f)
    assert f.response.status_code == 200 and len(qwen.requests) == 2
    assert qwen.requests[1].headers["authorization"] == "Bearer secret-oauth-token"


# ---- fail closed by construction --------------------------------------------------------------------------

async def test_malformed_authorization_bytes_with_client_keys_get_401_and_reach_nothing(monkeypatch):
    monkeypatch.setenv("QWEN_GATEWAY_KEYS", "good-key")
    gw, qwen = make(OAUTH_CRED)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
                                        auth=b"Bearer \xc3\x28", reverse=True))
        assert f.response.status_code == 401 and qwen.requests == []
        f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
                                        auth=b"Bearer good-key", reverse=True))
        assert f.response.status_code == 200


class Boom(Exception):
    pass


def _raise(*a, **kw):
    raise Boom("injected")


async def _araise(*a, **kw):
    raise Boom("injected")


STEPS = [  # (object path, attribute, replacement): every step of the request path
    ("qwen_gateway.ingress.routing", "claims", _raise),
    ("qwen_gateway.ingress.routing", "route", _raise),
    ("qwen_gateway.tenancy.team.Team", "check", _raise),
    ("qwen_gateway.tenancy.team.Team", "limit", _araise),
    ("qwen_gateway.ingress.access", "check_declared_size", _raise),
    ("qwen_gateway.ingress.body", "parse_json", _raise),
    ("qwen_gateway.wiring", "context_check", _araise),
    ("qwen_gateway.upstream.dashscope.upstream.DashScope", "chat_body", _raise),
    ("qwen_gateway.upstream.dashscope.request", "chat_to_qwen", _raise),
    ("qwen_gateway.turn.whole_answer", "translated", _raise),
    ("qwen_gateway.local_answers.LocalAnswers", "answer", _araise),
    ("qwen_gateway.upstream.retry.RetryPolicy", "acquire", _araise),
    ("qwen_gateway.upstream.engine.UpstreamEngine", "open", _araise),
    ("qwen_gateway.addon.QwenGateway", "_open", _raise),
    ("qwen_gateway.addon.QwenGateway", "_relay", _araise),
]


@pytest.mark.parametrize("target,name,fn", STEPS, ids=[f"{t.rsplit('.', 1)[-1]}.{n}" for t, n, _ in STEPS])
@pytest.mark.parametrize("mode", ["reverse", "regular"])
@pytest.mark.parametrize("stream", [False, True])
async def test_an_exception_in_any_step_is_an_openai_error_and_reaches_nothing(monkeypatch, target, name, fn,
                                                                              mode, stream):
    import importlib
    parts = target.split(".")
    obj = importlib.import_module(".".join(parts[:2]))
    for attr in parts[2:]:
        obj = getattr(obj, attr)
    monkeypatch.setattr(obj, name, fn)
    gw, qwen = make(OAUTH_CRED)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        for path, method in (("/v1/chat/completions", "POST"), ("/v1/models", "GET")):
            f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": stream},
                          path=path, method=method, reverse=mode == "reverse")
            await through(gw, f)
            # either answered locally (an OpenAI error, or a real answer when the step was not on this path), or
            # sent only to the relay; never left to go to its original host
            if f.response is None:
                assert stream and (f.request.host, f.request.port) == gw.relay.address
            else:
                assert f.response.headers["content-type"].startswith("application/json")
                if f.response.status_code >= 400:
                    assert set(json.loads(f.response.content)["error"]) == {"message", "type", "param", "code"}
            assert f.request.host in ("api.openai.com", "127.0.0.1", in_process.HOST)
        assert all(r.url.host in ("portal.qwen.ai",) for r in qwen.requests)


@pytest.mark.parametrize("point", ["configure", "running", "client_request", "upstream_request", "stream_started",
                                   "finished", "done"])
async def test_a_failing_observer_is_logged_and_never_changes_the_flow(point, caplog):
    from qwen_gateway.observer import Observer

    calls = []

    class Failing(Observer):
        pass

    def boom(self, *a):
        calls.append(point)
        raise Boom(point)

    setattr(Failing, point, boom)
    qwen = FakeQwen()
    gw = QwenGateway(pool=StaticPool(OAUTH_CRED), observers=[Failing()], upstream=qwen)
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        if point == "running":
            gw.running()
        stream = point == "stream_started"
        f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
                                         "stream": stream}))
        if stream:  # mitmproxy connects to the relay: the turn streams the answer
            out = await relayed(gw, qwen, f, StreamAnswer(b'data: {"choices":[{"index":0,"delta":{"content":"x"},'
                                                         b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'))
            assert f.response.stream is True and b"[DONE]" in out
        else:
            assert f.response.status_code == 200 and json.loads(f.response.content)["choices"]
        if point == "finished":
            await asyncio.sleep(BATCH_S * 2)  # told with its batch, off the request's path
        if point == "done":
            await gw.done()
    assert calls and "failed" in caplog.text


# ---- what an attacker tries (issue: nothing leaks, nothing passes, nothing exhausts) -----------------------

@pytest.mark.parametrize("host,origin,status", [
    ("evil.example:8080", None, 403),  # DNS rebinding: the page's own name in Host
    ("localhost:8080", "https://evil.example", 403),  # a cross-site page
    ("localhost:8080", "null", 403),  # a sandboxed page or file://
    ("localhost:8080", "http://localhost:3000", 200),  # a local web app
    ("127.0.0.1:8080", None, 200),
    ("[::1]:8080", None, 200),
])
async def test_host_and_origin_of_browser_attacks_are_refused(setup, host, origin, status):
    gw, qwen, _ = setup
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, host=host, reverse=True)
    if origin:
        f.request.headers["origin"] = origin
    await through(gw, f)
    assert f.response.status_code == status
    assert len(qwen.requests) == (1 if status == 200 else 0)
    for path in ("/health", "/v1/models"):  # local answers too
        g = chat_flow(b"", host=host, path=path, method="GET", reverse=True)
        if origin:
            g.request.headers["origin"] = origin
        await through(gw, g)
        assert g.response.status_code == status


async def test_remote_login_refuses_requests_from_web_pages(setup, monkeypatch):
    gw, _, tctx = setup
    tctx.configure(gw, qwen_remote_login="loopback")
    f = chat_flow({}, host="localhost:8080", path="/auth/initiate", reverse=True)
    f.request.headers["sec-fetch-site"] = "same-origin"
    await through(gw, f)
    assert f.response.status_code == 403


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_decompression_bombs_are_refused_while_decoding(setup, encoding):
    import gzip
    import zlib

    import brotli
    import zstandard
    gw, qwen, tctx = setup
    tctx.configure(gw, qwen_max_body_mb=1)
    bomb = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"a" * (16 << 20) + b'"}]}'
    # 16 times the limit (the e2e test sends a 256 MiB bomb to a real gateway); brotli at quality 5, not its
    # default 11: as small, in a fraction of the time
    packed = {"gzip": gzip.compress, "deflate": zlib.compress, "br": lambda b: brotli.compress(b, quality=5),
              "zstd": zstandard.ZstdCompressor().compress}[encoding](bomb)
    assert len(packed) < (1 << 20)  # small on the wire ...
    f = chat_flow(b"", reverse=True, host="localhost")
    f.request.raw_content = packed
    f.request.headers["content-encoding"] = encoding
    await through(gw, f)
    assert f.response.status_code == 413 and qwen.requests == []  # ... refused once it grew past 1 MiB


async def test_an_upload_bomb_is_refused_before_the_files_route_reads_it(setup):
    """/v1/files reads its multipart body as it is (api/batches/): its size and encoding are checked first."""
    import gzip
    gw, qwen, tctx = setup
    tctx.configure(gw, qwen_max_body_mb=1)
    f = chat_flow(b"", reverse=True, host="localhost", path="/v1/files")
    f.request.raw_content = gzip.compress(b"a" * (16 << 20))
    f.request.headers["content-encoding"] = "gzip"
    f.request.headers["content-type"] = "multipart/form-data; boundary=x"
    await through(gw, f)
    assert f.response.status_code == 413 and b"qwen_max_body_mb" in f.response.content


async def test_a_small_compressed_body_is_decoded(setup):
    import gzip
    gw, qwen, _ = setup
    f = chat_flow(b"", reverse=True, host="localhost")
    f.request.raw_content = gzip.compress(json.dumps({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "zipped"}]}).encode())
    f.request.headers["content-encoding"] = "gzip"
    await through(gw, f)
    assert f.response.status_code == 200 and qwen.bodies()[0]["messages"][-1]["content"]


@pytest.mark.parametrize("encoding", ["gzip", "snappy"])
async def test_a_body_that_does_not_decode_is_a_400(setup, encoding):
    gw, qwen, _ = setup
    f = chat_flow(b"", reverse=True, host="localhost")
    f.request.raw_content = b"not compressed at all"
    f.request.headers["content-encoding"] = encoding
    await through(gw, f)
    assert f.response.status_code == 400 and qwen.requests == []


async def test_with_client_keys_other_hosts_are_not_relayed(setup, monkeypatch):
    monkeypatch.setenv("QWEN_GATEWAY_KEYS", "k1")
    gw, qwen, tctx = setup
    gw.configure({"qwen_client_keys_file"})
    f = chat_flow({"x": 1}, host="example.com")
    await through(gw, f)
    assert f.response.status_code == 403 and json.loads(f.response.content)["error"]["code"] == "passthrough_refused"
    tctx.configure(gw, qwen_allow_passthrough=True)
    f = chat_flow({"x": 1}, host="example.com")
    await through(gw, f)
    assert f.response is None  # relayed, as the user asked


async def test_last_line_guard_sees_addresses_and_server_names(setup):
    from mitmproxy.proxy import server_hooks
    from mitmproxy.test import tflow as tf

    gw, _, _ = setup
    for address, client_sni, server_sni, refused in [
        (("104.18.7.192", 443), "api.openai.com", None, True),  # transparent mode: an IP, the name in SNI
        (("104.18.7.192", 443), None, "api.openai.com.", True),
        (("api.openai.com", 443), None, None, True),
        (("example.com", 443), "example.com", None, False),
    ]:
        client = tf.tclient_conn()
        client.sni = client_sni
        server = tf.tserver_conn()
        server.address, server.sni = address, server_sni
        server.error = None
        await gw.server_connect(server_hooks.ServerConnectionHookData(server=server, client=client))
        assert bool(server.error) is refused, (address, client_sni, server_sni)


def test_a_connection_that_reached_a_listener_beyond_loopback_is_closed(setup):
    from mitmproxy.test import tflow as tf

    gw, _, tctx = setup
    tctx.configure(gw, mode=["reverse:https://portal.qwen.ai"])  # the README's bare command
    assert gw.connections.loopback_only
    lan = tf.tclient_conn()
    lan.sockname = ("192.168.1.20", 8080)
    gw.client_connected(lan)
    assert lan.error
    local = tf.tclient_conn()
    local.sockname = ("127.0.0.1", 8080)
    local.error = None
    gw.client_connected(local)
    assert not local.error
    # a connection accepted before the gateway had loaded never got that check: its requests are killed
    f = chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, host="localhost",
                  reverse=True)
    f.client_conn.sockname = ("192.168.1.20", 8080)
    gw.requestheaders(f)
    assert f.error is not None and f.response is None


async def test_a_thinking_refusal_is_learned_and_the_request_sent_again():
    refusal = {"error": {"code": "invalid_parameter_error", "type": "invalid_request_error", "message":
                         "<400> InternalError.Algo.InvalidParameter: The value of the enable_thinking parameter "
                         "is restricted to True."}}
    gw, qwen = make(KEY_CRED, qwen=FakeQwen((400, refusal)))
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        body = {"model": "qwen-new-thinker", "enable_thinking": False,  # a model nothing describes: sent as asked
                "messages": [{"role": "user", "content": "no thinking please"}]}
        f = await through(gw, chat_flow(body))
        assert f.response.status_code == 200 and len(qwen.requests) == 2
        first, second = qwen.bodies()
        assert first.get("enable_thinking") is False and second.get("enable_thinking") is not False
        assert f.metadata["qwen"]["retry_reasons"] == ["thinking"]
        f = await through(gw, chat_flow(body))  # learned: the next request is right the first time
        assert len(qwen.requests) == 3 and qwen.bodies()[2].get("enable_thinking") is not False


async def test_a_cap_qwen_refuses_is_learned_and_the_request_sent_again_within_it(tmp_path):
    """A model the catalogue has no cap for gets the client's cap as asked; Qwen's R4 400 names the model's cap,
    which the gateway learns, sends the request again within once, says on the flow, and keeps to after."""
    refusal = {"error": {"code": "invalid_parameter_error", "type": "invalid_request_error", "message":
                         "<400> InternalError.Algo.InvalidParameter: Range of max_completion_tokens should be "
                         "[1, 40000]"}}
    gw, qwen = make(KEY_CRED, qwen=FakeQwen((400, refusal)))
    with taddons.context(gw) as tctx:
        tctx.options.qwen_state_dir = str(tmp_path)  # the learned cap is kept there
        gw.configure(set(tctx.options.keys()))
        body = {"model": "qwen9-max", "max_completion_tokens": 50000, "messages": [{"role": "user", "content": "hi"}]}
        f = await through(gw, chat_flow(body))
        assert f.response.status_code == 200 and len(qwen.requests) == 2
        first, second = qwen.bodies()
        assert first["max_completion_tokens"] == 50000 and second["max_completion_tokens"] == 40000
        assert "max_tokens" not in first and "max_tokens" not in second
        meta = f.metadata["qwen"]
        assert meta["retry_reasons"] == ["capped"]
        assert any(n.startswith("qwen9-max: max_completion_tokens at most 40,000 (learned from Qwen's refusal at ")
                   and n.endswith(": sent again within it") for n in meta["notes"]), meta["notes"]
        f = await through(gw, chat_flow(body))  # learned: the next request is right the first time
        assert len(qwen.requests) == 3 and qwen.bodies()[2]["max_completion_tokens"] == 40000
        assert f.response.status_code == 200
    assert LearnedFacts(tmp_path).value("qwen9-max", "output") == 40000  # and after a restart


async def test_a_throttling_cooldown_is_a_rate_limit_not_a_quota():
    from qwen_gateway.errors import unavailable
    from qwen_gateway.upstream.pool.pool import PoolExhausted
    import time as _time
    e = unavailable(PoolExhausted("cooling down", retry_at=_time.time() + 5, throttled=True))
    assert e.status == 429 and e.code == "rate_limit_exceeded" and e.headers["retry-after"]
    e = unavailable(PoolExhausted("quota gone", retry_at=_time.time() + 3600))
    assert e.status == 429 and e.code == "insufficient_quota"
