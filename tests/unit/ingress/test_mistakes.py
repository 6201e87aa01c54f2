"""The usual ways of pointing a client at the gateway wrongly (issue 32, item 4), in mitmproxy's test style:
each is answered in the client's own dialect with what to type instead, or simply works.

- A base-URL client (OPENAI_BASE_URL, ANTHROPIC_BASE_URL) pointed at the gateway started as an explicit
  proxy (`mitmdump -s addons/qwen.py`, regular mode): its request names the proxy itself as the destination.
  mitmproxy answered a bare 502 HTML page ("Request destination unknown"), which Claude Code retried for 90 s.
- ANTHROPIC_BASE_URL=http://127.0.0.1:8080/v1: Claude Code appends /v1/messages itself: POST /v1/v1/messages
  was a 404 (Claude Code: "There's an issue with the selected model").
The real clients meet the same in tests/e2e/test_e2e_mistakes.py.
"""

from __future__ import annotations

import json

import pytest
from mitmproxy.proxy import mode_specs

from qwen_gateway.turn.relay import TOKEN_HEADER
from unit.test_addon import chat_flow, setup, through  # noqa: F401  (setup: the gateway in taddons)

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def to_the_proxy_itself(body, path: str, *, listener=("127.0.0.1", 8080), host="127.0.0.1:8080", headers=(),
                        method="POST"):
    """A request as mitmproxy's regular mode hands it over when the client sent it to the proxy's own address
    in origin form (`POST /v1/chat/completions`, `Host: 127.0.0.1:8080`): its destination is the proxy."""
    f = chat_flow(body, host=host, path=path, method=method)
    f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("regular")
    f.client_conn.sockname = listener
    f.client_conn.timestamp_tls_setup = None  # plain HTTP to the proxy
    f.request.scheme = "http"
    hostname, _, port = host.rpartition(":")
    f.request.host, f.request.port = hostname, int(port)
    f.request.headers["host"] = host
    for name, value in headers:
        f.request.headers[name] = value
    return f


async def test_an_openai_base_url_client_at_the_explicit_proxy_is_told_what_to_type(setup):
    gw, qwen, _ = setup
    f = await through(gw, to_the_proxy_itself(CHAT, "/v1/chat/completions"))
    assert f.response.status_code == 400 and f.response.headers["content-type"] == "application/json"
    error = json.loads(f.response.content)["error"]
    assert error["code"] == "explicit_proxy_mode" and error["type"] == "invalid_request_error"
    message = error["message"]
    assert "runs as an explicit proxy" in message
    assert "mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai -p 8080" in message
    assert "HTTPS_PROXY=http://127.0.0.1:8080" in message
    assert qwen.requests == [] and f.metadata["qwen"]["status"] == 400


async def test_an_anthropic_base_url_client_at_the_explicit_proxy_gets_anthropics_format(setup):
    gw, _, _ = setup
    f = await through(gw, to_the_proxy_itself(MESSAGES, "/v1/messages?beta=true",
                                              headers=[("anthropic-version", "2023-06-01")]))
    assert f.response.status_code == 400
    body = json.loads(f.response.content)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "runs as an explicit proxy" in body["error"]["message"]
    assert "ANTHROPIC_BASE_URL" in body["error"]["message"]


async def test_health_and_metrics_of_the_explicit_proxy_itself_are_answered(setup):
    gw, _, _ = setup
    f = await through(gw, to_the_proxy_itself(b"", "/health", method="GET"))
    assert f.response.status_code == 200 and json.loads(f.response.content)["status"] == "ok"


async def test_other_hosts_still_pass_and_the_proxy_port_elsewhere_is_not_the_proxy(setup):
    """Only a request whose destination is this very listener is the mistake: the same port on another host,
    or a name the gateway does not intercept, passes as before."""
    gw, _, _ = setup
    f = to_the_proxy_itself(CHAT, "/v1/chat/completions", host="192.0.2.7:8080")
    gw.requestheaders(f)
    await gw.request(f)
    assert f.response is None and f.id not in gw._live


@pytest.mark.parametrize("path,body,dialect", [
    ("/v1/v1/messages?beta=true", MESSAGES, "anthropic"),
    ("/v1/v1/chat/completions", CHAT, "openai"),
])
async def test_a_doubled_v1_simply_works(setup, path, body, dialect):
    gw, qwen, _ = setup
    f = chat_flow(body, host="127.0.0.1:8080", path=path, reverse=True)
    f.request.headers["anthropic-version"] = "2023-06-01"
    f = await through(gw, f)
    assert f.response.status_code == 200, f.response.content
    out = json.loads(f.response.content)
    assert out["type"] == "message" if dialect == "anthropic" else out["object"] == "chat.completion"
    assert len(qwen.requests) == 1 and TOKEN_HEADER not in f.request.headers
    assert f.metadata["qwen"]["route"] == ("messages" if dialect == "anthropic" else "chat.completions")


def test_the_mistakes_module_answers_only_what_it_knows():
    from qwen_gateway.ingress import mistakes
    assert mistakes.undoubled("/v1/v1/messages") == "/v1/messages"
    assert mistakes.undoubled("/v1/messages") == "/v1/messages" and mistakes.undoubled("/v1/v1") == "/v1/v1"


def test_a_connect_mitmproxy_refused_on_a_reverse_listener_is_said_once_with_what_to_use(caplog):
    """HTTPS_PROXY pointed at the reverse-mode gateway: mitmproxy refuses the CONNECT itself (400); the request line
    says so, and one line an hour per listener says what to use."""
    from mitmproxy import flow as mflow

    from qwen_gateway.ingress import mistakes
    from qwen_gateway.errors import MITMPROXY_REFUSED
    from qwen_gateway.log_tally import Once
    from qwen_gateway.observe.requestlog import format_passed
    once = Once()

    def connect(listener=("127.0.0.1", 8080), mode="reverse:https://portal.qwen.ai"):
        f = chat_flow({}, host="api.openai.com", path="", method="CONNECT")
        f.request.port, f.request.scheme = 443, ""
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse(mode)
        f.client_conn.sockname = listener
        f.response = None
        f.error = mflow.Error("mitmproxy received an HTTP CONNECT request even though it is not running in "
                              "regular/upstream mode.")
        return f

    with caplog.at_level("WARNING", logger="qwen"):
        for _ in range(3):
            f = connect()
            mistakes.refused_by_mitmproxy(f, once)
        mistakes.refused_by_mitmproxy(connect(listener=("127.0.0.1", 9090)), once)  # another listener: its own
        mistakes.refused_by_mitmproxy(connect(mode="regular"), once)  # not reverse: mitmproxy's own business
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "HTTPS_PROXY (CONNECT api.openai.com:443)" in lines[0] and "http://127.0.0.1:8080/v1" in lines[0]
    assert "`mitmdump -s addons/qwen.py`" in lines[0] and "http://127.0.0.1:9090/v1" in lines[1]
    assert f.metadata[MITMPROXY_REFUSED] == 400
    assert " refused 400 " in format_passed(f)  # not "passed 502": mitmproxy answered 400 and asked nobody
