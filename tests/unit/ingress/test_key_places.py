"""Every place a client can put its key, through the gateway's `requestheaders` hook with mitmproxy's test
flows: taken from the Authorization (Bearer), x-api-key and api-key headers and the WebSocket subprotocol
`openai-insecure-api-key.KEY`; refused in the URL's query (by the parameter's name, or its value being one
of the gateway's keys), in basic auth and in a cookie — and in every case out of the flow when the hook
returns, as mitmproxy's `-w` writer would serialise it (mitmweb shows the same object). Then the pure
pieces (ingress/access.py) and the log lines (redact.py). Through a real mitmdump: tests/e2e/test_e2e_key_places.py."""

from __future__ import annotations

import base64
import io
import json

import pytest
from mitmproxy import http
from mitmproxy import io as flow_io
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow

from qwen_gateway.addon import QwenGateway
from qwen_gateway.ingress import access
from qwen_gateway.tenancy.ring import Keyring, KeyRecord, digest
from qwen_gateway.redact import redact_log

KEY = "sk-qg-" + "Kk3_" * 11  # a named key's shape
FLAT = "flat-key-from-the-keys-file"


@pytest.fixture
async def gw(tmp_path, monkeypatch):  # async: a loop runs while the gateway configures (it closes clients later)
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("QWEN_GATEWAY_KEYS", FLAT)
    gw = QwenGateway(observers=[])
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        gw.team.ring = Keyring((KeyRecord("erin", digest(KEY.encode())),))
        yield gw


@pytest.fixture
async def keyless(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("QWEN_GATEWAY_KEYS", raising=False)
    gw = QwenGateway(observers=[])
    with taddons.context(gw) as tctx:
        gw.configure(set(tctx.options.keys()))
        yield gw


def arrives(gw, path: str = "/v1/chat/completions", *headers: tuple[str, str], method: str = "POST"):
    """A request from a client of the reverse listener, through the gateway's requestheaders hook."""
    f = tflow.tflow()
    f.request = http.Request.make(method, f"http://127.0.0.1:8080{path}", b"{}" if method == "POST" else b"",
                                  [(b"host", b"127.0.0.1:8080"), *((k.encode(), v.encode()) for k, v in headers)])
    f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:https://portal.qwen.ai")
    f.client_conn.sockname = ("127.0.0.1", 8080)
    f.client_conn.timestamp_tls_setup = None
    gw.requestheaders(f)
    return f


def recorded(f) -> bytes:
    """The flow as mitmproxy's `-w` writes it, at this moment (in flight, or answered by the entrance)."""
    out = io.BytesIO()
    flow_io.FlowWriter(out).add(f)
    return out.getvalue()


def error_of(f) -> dict:
    assert f.response is not None, "served, not refused"
    return json.loads(f.response.content)["error"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---- where the gateway takes a key ------------------------------------------------------------------------


@pytest.mark.parametrize("name,value", [("Authorization", f"Bearer {KEY}"), ("x-api-key", KEY), ("api-key", KEY),
                                        ("api-key", FLAT)])
def test_a_key_in_a_key_header_is_taken_and_dropped(gw, name, value):
    f = arrives(gw, "/v1/chat/completions", (name, value))
    assert f.response is None  # admitted
    assert name.lower() not in f.request.headers and KEY.encode() not in recorded(f)
    assert FLAT.encode() not in recorded(f)
    assert gw._live[f.id].client.key_hint is not None


def test_the_websocket_subprotocol_key_is_taken_and_only_its_entry_dropped(gw):
    upgrade = (("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-version", "13"))
    f = arrives(gw, "/v1/responses", *upgrade, ("Sec-WebSocket-Protocol", f"realtime, openai-insecure-api-key.{KEY}, "
                                                                       "openai-beta.realtime-v1"), method="GET")
    assert f.response is None and gw._live[f.id].key.name == "erin"
    assert f.request.headers["sec-websocket-protocol"] == "realtime, openai-beta.realtime-v1"
    assert KEY.encode() not in recorded(f)
    alone = arrives(gw, "/v1/responses", *upgrade, ("Sec-WebSocket-Protocol", f"openai-insecure-api-key.{KEY}"),
                    method="GET")
    assert alone.response is None and "sec-websocket-protocol" not in alone.request.headers
    wrong = arrives(gw, "/v1/responses", *upgrade, ("Sec-WebSocket-Protocol", "realtime, openai-insecure-api-key.nope"),
                    method="GET")
    assert error_of(wrong)["code"] == "invalid_api_key" and b"nope" not in recorded(wrong)
    assert wrong.request.headers["sec-websocket-protocol"] == "realtime"


# ---- where it refuses one -----------------------------------------------------------------------------------


@pytest.mark.parametrize("param", ["api_key", "key", "access_token", "api-key", "apikey", "API_KEY", "api%5Fkey"])
@pytest.mark.parametrize("key", [KEY, FLAT])
def test_a_key_in_the_query_is_refused_even_beside_a_good_header_and_kept_out(gw, param, key):
    f = arrives(gw, f"/v1/chat/completions?limit=2&{param}={key}&after=x%2Fy", ("Authorization", f"Bearer {KEY}"))
    error = error_of(f)
    assert f.response.status_code == 401 and error["code"] == "invalid_api_key"
    assert "URL" in error["message"] and "Authorization: Bearer KEY" in error["message"]
    assert f.request.path == f"/v1/chat/completions?limit=2&{param}=<redacted>&after=x%2Fy"  # the rest as sent
    assert gw._live[f.id].client.url == f"http://127.0.0.1:8080{f.request.path}"
    assert key.encode() not in recorded(f)


@pytest.mark.parametrize("key", [KEY, FLAT, "sk-qg-revoked-key-still-a-key"])
def test_a_query_parameter_whose_value_is_a_key_is_refused_whatever_its_name(gw, key):
    gw.team.ring = Keyring((*gw.team.ring.records, KeyRecord("old", digest(b"sk-qg-revoked-key-still-a-key"),
                                                            revoked=True)))
    f = arrives(gw, f"/v1/models?after=abc&whatever={key}", ("Authorization", f"Bearer {KEY}"), method="GET")
    assert "URL" in error_of(f)["message"] and f.request.path == "/v1/models?after=abc&whatever=<redacted>"
    assert key.encode() not in recorded(f) and key not in gw._live[f.id].client.url
    fine = arrives(gw, "/v1/models?after=abc&limit=3", ("Authorization", f"Bearer {KEY}"), method="GET")
    assert fine.response is None and fine.request.path == "/v1/models?after=abc&limit=3"


def test_the_refusal_of_a_key_in_the_url_is_in_the_clients_dialect(gw):
    f = arrives(gw, f"/v1/messages?key={KEY}", ("anthropic-version", "2023-06-01"))
    body = json.loads(f.response.content)
    assert f.response.status_code == 401 and body["type"] == "error"
    assert body["error"]["type"] == "authentication_error" and "URL" in body["error"]["message"]
    assert KEY.encode() not in recorded(f)


def test_keys_not_read_yet_still_refuse_a_key_in_the_url(gw):
    gw.team.ring = Keyring(loaded=False)  # a gateway on PostgreSQL before its first read
    f = arrives(gw, f"/v1/chat/completions?api_key={KEY}")
    assert "URL" in error_of(f)["message"] and gw._live[f.id].key.digest is None
    assert KEY.encode() not in recorded(f)


def test_a_keyless_gateway_takes_no_key_from_the_url_and_keeps_none(keyless):
    f = arrives(keyless, f"/v1/chat/completions?api_key={KEY}")
    assert f.response is None  # no door: served, as a request with its key in a header is
    assert f.request.path == "/v1/chat/completions?api_key=<redacted>" and KEY.encode() not in recorded(f)


@pytest.mark.parametrize("user,password", [("", KEY), (KEY, ""), ("erin", KEY), (FLAT, "x")])
def test_basic_auth_is_refused_naming_the_header_to_use_and_dropped(gw, user, password):
    f = arrives(gw, "/v1/chat/completions", ("Authorization", basic(user, password)))
    error = error_of(f)
    assert f.response.status_code == 401 and "Basic" in error["message"] and "Bearer KEY" in error["message"]
    assert "authorization" not in f.request.headers
    assert base64.b64encode(f"{user}:{password}".encode()) not in recorded(f)
    beside = arrives(gw, "/v1/chat/completions", ("Authorization", basic(user, password)), ("x-api-key", KEY))
    assert beside.response is None and "authorization" not in beside.request.headers


def test_a_cookie_is_never_a_key_and_never_kept(gw):
    f = arrives(gw, "/v1/chat/completions", ("Cookie", f"api_key={KEY}"))
    assert error_of(f)["code"] == "invalid_api_key" and "cookie" not in f.request.headers
    assert KEY.encode() not in recorded(f)
    served = arrives(gw, "/v1/chat/completions", ("Cookie", f"session={KEY}; other=1"),
                     ("Authorization", f"Bearer {KEY}"))
    assert served.response is None and "cookie" not in served.request.headers and KEY.encode() not in recorded(served)


# ---- the pieces -----------------------------------------------------------------------------------------------


def test_redacting_the_query_keeps_the_rest_byte_for_byte():
    named = lambda name, value: name in access.KEY_PARAMS  # noqa: E731
    assert access.redact_query("/p?a=%2F+b&key=k%41&z", named) == "/p?a=%2F+b&key=<redacted>&z"
    assert access.redact_query("/p?a=1&b=2", named) is None
    assert access.redact_query("/p?key=&api_key", named) is None  # nothing to redact: no value
    assert access.redact_query("/p?\udcff=1&Key=x\udcfe", named) == "/p?\udcff=1&Key=<redacted>"  # not UTF-8
    seen = []
    access.redact_query("/p?k%41=%73k", lambda name, value: seen.append((name, value)) or False)
    assert seen == [("ka", b"sk")]  # the name decoded and lower case, the value's bytes decoded


def test_the_subprotocol_key_entry_is_found_and_the_others_kept():
    assert access.without_socket_key(b"realtime, OpenAI-Insecure-API-Key.k1,openai-beta.x") == \
        (b"realtime, openai-beta.x", b"k1")
    assert access.without_socket_key(b"realtime") == (b"realtime", None)


def test_a_log_line_shows_no_key_from_a_url_or_a_subprotocol():
    raw = ("b'GET /v1/models?limit=2&api_key=flat-key-1&x=1 HTTP/1.1\\r\\nSec-WebSocket-Protocol: realtime, "
           "openai-insecure-api-key.flat-key-2\\r\\n'")
    line = redact_log(raw)
    assert "flat-key" not in line and "limit=2" in line and "realtime, openai-insecure-api-key.<redacted>" in line
