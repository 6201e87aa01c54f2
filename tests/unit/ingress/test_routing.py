"""Which flows are the gateway's and what each claimed request is (ingress/routing.py): local routes, endpoints
with and without /v1, prefixes, wrong methods; the dialect of the answer; the hosts and paths it claims."""

from __future__ import annotations

import pytest
from mitmproxy.proxy import mode_specs
from mitmproxy.test import tflow, tutils

from qwen_gateway import components
from qwen_gateway.ingress import routing
from qwen_gateway.settings.config import Config

ENDPOINTS = components.endpoints(lambda: None, lambda: None)


@pytest.mark.parametrize("method,path,name", [
    ("GET", "/health", "health"),
    ("GET", "/v1/models", "models"),
    ("GET", "/v1/models/qwen3-coder-plus", "models"),
    ("POST", "/v1/chat/completions", "chat.completions"),
    ("POST", "/chat/completions", "chat.completions"),  # without /v1, as before
    ("POST", "/v1/v1/messages", "messages"),  # a base URL that ended in /v1
    ("POST", "/v1/responses/compact", "responses.compact"),  # the endpoint's own path wins over the prefix
    ("GET", "/v1/responses/resp_1", "stored_response"),
    ("DELETE", "/v1/chat/completions/chatcmpl-1", "stored_chat"),
    ("GET", "/v1/chat/completions", "stored_chat"),  # the list of stored chat completions
    ("POST", "/v1/messages/count_tokens", "count_tokens"),
    ("PUT", "/v1/responses/resp_1", "method_not_allowed"),
    ("GET", "/v1/embeddings", "method_not_allowed"),
    ("POST", "/v1/nothing-here", "unknown"),
    ("POST", "/v1/responses/", "responses"),  # a trailing slash is the endpoint
    ("POST", "/v1/files", "batches"),  # OpenAI's Files and Batch APIs (api/batches/)
    ("GET", "/v1/files/file-1/content", "batches"),
    ("DELETE", "/v1/files/file-1", "batches"),
    ("GET", "/batches", "batches"),
    ("POST", "/v1/batches/batch_1/cancel", "batches"),
    ("DELETE", "/v1/batches/batch_1", "method_not_allowed"),
])
def test_route(method, path, name):
    assert routing.route(method, path, ENDPOINTS).name == name


def test_an_endpoint_asked_with_the_wrong_method_keeps_its_endpoint():
    r = routing.route("GET", "/v1/completions", ENDPOINTS)
    assert r.name == "method_not_allowed" and r.endpoint is ENDPOINTS["/completions"]


def test_the_dialect_of_an_endpoint_is_its_own():
    messages = routing.route("POST", "/v1/messages", ENDPOINTS)
    chat = routing.route("POST", "/v1/chat/completions", ENDPOINTS)
    assert routing.dialect(messages, "localhost", False) == "anthropic"
    assert routing.dialect(chat, "api.anthropic.com", True) == "openai"  # the endpoint decides, not the host


@pytest.mark.parametrize("name,host,version,want", [
    ("models", "localhost", False, "openai"),
    ("models", "localhost", True, "anthropic"),  # an Anthropic SDK names its API's version
    ("models", "API.Anthropic.com", False, "anthropic"),
    ("count_tokens", "localhost", False, "anthropic"),
    ("unknown", "api.openai.com", False, "openai"),
])
def test_the_dialect_of_a_local_route(name, host, version, want):
    assert routing.dialect(routing.Route(name), host, version) == want


def flow(host: str, path: str = "/v1/chat/completions", *, method: str = "POST", mode: str = "regular",
         sni: str | None = None):
    f = tflow.tflow(req=tutils.treq(host=host, path=path.encode(), method=method.encode()))
    f.client_conn.proxy_mode = mode_specs.ProxyMode.parse(mode)
    f.client_conn.sni = sni
    f.client_conn.sockname = ("127.0.0.1", 8080)
    f.request.headers["host"] = host
    return f


def test_reverse_mode_claims_every_request():
    assert routing.claims(flow("example.com", mode="reverse:https://portal.qwen.ai"), Config())


def test_an_intercepted_host_is_claimed_by_host_or_tls_name():
    cfg = Config(intercept_hosts=frozenset({"api.openai.com"}), claimed_paths=frozenset())
    assert routing.claims(flow("api.openai.com"), cfg)
    assert routing.claims(flow("example.com", sni="api.openai.com"), cfg)
    assert not routing.claims(flow("example.com"), cfg)


def test_a_claimed_path_needs_every_name_to_agree():
    cfg = Config(intercept_hosts=frozenset(), claimed_paths=frozenset({("chatgpt.com", "/backend-api/codex/models")}))
    assert routing.claims(flow("chatgpt.com", "/backend-api/codex/models?client_version=1", method="GET"), cfg)
    assert not routing.claims(flow("chatgpt.com", "/backend-api/conversation", method="GET"), cfg)
    # a Host header naming chatgpt.com inside a tunnel to another host claims nothing
    assert not routing.claims(flow("chatgpt.com", "/backend-api/codex/models", method="GET", sni="evil.example"), cfg)
    assert routing.claims(flow("chatgpt.com", "/", method="CONNECT"), cfg)  # the tunnel that carries the path
