"""Which flows are the gateway's, and what each claimed request is: decided once per flow."""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import http
from mitmproxy.proxy import mode_specs

from .. import dialects
from ..settings.config import CODEX_TELEMETRY, Config, normalise_host
from ..interfaces import Endpoint
from . import mistakes

# Requests answered by the gateway itself: (method, path) -> route; path prefixes are matched after these.
LOCAL = {("GET", "/health"): "health", ("GET", "/metrics"): "metrics", ("GET", "/v1/models"): "models",
         ("GET", "/health/liveness"): "liveness", ("GET", "/health/readiness"): "readiness",  # health_probes.py
         ("GET", "/models"): "models", ("POST", "/auth/initiate"): "auth", ("POST", "/auth/poll"): "auth",
         ("GET", "/v1/chat/completions"): "stored_chat", ("GET", "/chat/completions"): "stored_chat",
         ("POST", "/v1/responses/input_tokens"): "input_tokens", ("POST", "/responses/input_tokens"): "input_tokens",
         # the Agents SDK's trace upload (api.openai.com): accepted and dropped, Qwen has no tracing API
         ("POST", "/v1/traces/ingest"): "traces", ("POST", "/traces/ingest"): "traces",
         ("POST", "/v1/messages/count_tokens"): "count_tokens", ("POST", "/messages/count_tokens"): "count_tokens",
         ("HEAD", "/api/hello"): "anthropic_side", ("GET", "/api/hello"): "anthropic_side",
         ("GET", "/backend-api/codex/models"): "codex_models",  # Codex's model list (config.CODEX_MODELS)
         # OpenAI's Files and Batch APIs, served by Model Studio's on a pay-as-you-go key account (api/batches/)
         **{(m, p): "batches" for m in ("GET", "POST") for p in ("/v1/files", "/files", "/v1/batches", "/batches")},
         # Codex's OTLP telemetry (config.CODEX_TELEMETRY): an empty success, nothing kept
         **{("POST", path): "codex_telemetry" for _, path in CODEX_TELEMETRY}}
# /responses/{id}: GET, DELETE; /responses/{id}/input_items: GET; /responses/{id}/cancel: POST;
# /chat/completions/{id}: GET, POST (its metadata), DELETE; /chat/completions/{id}/messages: GET;
# /files/{id}: GET, DELETE; /files/{id}/content: GET; /batches/{id}: GET; /batches/{id}/cancel: POST;
# /api/…: what Claude Code asks api.anthropic.com besides the model (settings, flags, telemetry)
LOCAL_PREFIXES = ((("GET",), "/models/", "models"), (("GET", "DELETE", "POST"), "/responses/", "stored_response"),
                  (("GET", "DELETE", "POST"), "/chat/completions/", "stored_chat"),
                  (("GET", "POST", "HEAD"), "/api/", "anthropic_side"),
                  (("GET", "DELETE"), "/files/", "batches"), (("GET", "POST"), "/batches/", "batches"))
# Routes whose answers and errors are in Anthropic's format, and the routes whose JSON body is read first.
ANTHROPIC_ROUTES = frozenset({"count_tokens", "anthropic_side"})
ANTHROPIC_HOST = "api.anthropic.com"
BODY_ROUTES = frozenset({"auth", "count_tokens", "stored_chat"})
# Routes that read their body as it is (a multipart upload): its size and encoding are checked first.
RAW_BODY_ROUTES = frozenset({"batches"})
READ_ROUTES = BODY_ROUTES | RAW_BODY_ROUTES


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs 5x (object.__setattr__)
class Route:
    name: str  # an endpoint name, a local route, "method_not_allowed" or "unknown"
    endpoint: Endpoint | None = None


def claims(flow: http.HTTPFlow, config: Config) -> bool:
    """Reverse mode: every request. Other modes: requests to an intercepted host, by Host header or by the
    TLS server name (a Host header that disagrees with the SNI does not get a request past the gateway);
    and the single paths claimed on other hosts (`config.claimed_paths`), with the tunnel they come through."""
    if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode) or mistakes.to_this_listener(flow):
        return True  # (a base-URL client at the explicit proxy: claimed to be told what to type, mistakes.py)
    hosts = config.intercept_hosts
    names = {normalise_host(flow.request.pretty_host), normalise_host(flow.request.host or "")}
    sni = flow.client_conn.sni
    if sni is not None:
        names.add(normalise_host(sni))
    if names & hosts:
        return True
    if not config.claimed_paths:
        return False
    if flow.request.method == "CONNECT":  # the tunnel to chatgpt.com carries the claimed path
        return any(host in names for host, _ in config.claimed_paths)
    path = flow.request.path.partition("?")[0]
    # every name must agree: a Host header naming chatgpt.com inside a tunnel to another host claims nothing
    return any(names - {""} == {host} for host, p in config.claimed_paths if p == path)


def route(method: str, path: str, endpoints: dict[str, Endpoint]) -> Route:
    """`path` without its query. Endpoints answer with and without the /v1 prefix, as before, and with a
    doubled one (a base URL that ended in /v1: mistakes.py)."""
    path = mistakes.undoubled(path)
    local = LOCAL.get((method, path))
    if local is not None:
        return Route(local)
    sub = path[3:] if path.startswith("/v1/") else path
    endpoint = endpoints.get(sub.rstrip("/") or "/")
    if endpoint is not None and method == "POST":  # an endpoint's own path wins over a prefix (/responses/compact)
        return Route(endpoint.name, endpoint)
    for methods, prefix, name in LOCAL_PREFIXES:
        if sub.startswith(prefix) and len(sub) > len(prefix):
            return Route(name) if method in methods else Route("method_not_allowed")
    if endpoint is None:
        return Route("unknown")
    return Route("method_not_allowed", endpoint)


def dialect(route: Route, host: str, anthropic_version: bool) -> str:
    """Whose format the client reads answers and errors in: its endpoint's; for local routes, Anthropic's
    when the route is the Messages dialect's, the host is Anthropic's or the request names a version of
    Anthropic's API (GET /v1/models from an Anthropic SDK), else OpenAI's."""
    if route.endpoint is not None:
        return route.endpoint.dialect
    if route.name in ANTHROPIC_ROUTES or anthropic_version or normalise_host(host) == ANTHROPIC_HOST:
        return dialects.ANTHROPIC.name
    return dialects.OPENAI.name
