"""What an unchanged Claude Code asks api.anthropic.com besides the model, answered locally at once with an
empty, valid answer, never forwarded (docs/clients.md lists them). Left unanswered, managed settings and
policy limits alone are retried for about 17 s before the first model call; feature flags, bootstrap and
telemetry would carry the user's key or data to Anthropic.

WebFetch asks `GET /api/web/domain_info?domain=<host>` before it fetches a page and fetches only on a 200 with
`can_fetch: true` (Anthropic's blocklist of sites it will not fetch). The gateway has no such list: every
domain may be fetched, as Claude Code does with `skipWebFetchPreflight`. The page itself is fetched by Claude
Code, through the proxy like any other site."""

from __future__ import annotations

from mitmproxy import http

from ...settings.config import Config
from ...errors import GatewayError
from ...exchange import Exchange
from ...local_answers import answer as whole, json_response

# (method, path) -> the answer's JSON; prefixes for the paths that carry an id.
ANSWERS: dict[tuple[str, str], dict] = {
    ("GET", "/api/claude_code/policy_limits"): {"restrictions": {}},  # organisation policy limits: none
    ("GET", "/api/claude_cli/bootstrap"): {},
    ("GET", "/api/claude_code_penguin_mode"): {},
    ("GET", "/api/directory/server-urls"): {"urls": []},  # the MCP registry: no servers
    ("POST", "/api/event_logging/v2/batch"): {},  # telemetry: dropped
    ("POST", "/api/event_logging/batch"): {},
    ("GET", "/api/claude_code/organizations/metrics_enabled"): {"metrics_logging_enabled": False},
}
PREFIXES: dict[tuple[str, str], dict] = {("POST", "/api/eval/"): {"features": {}}}  # feature flags (/api/eval/sdk-…): none


async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
    method, path = ex.client.method, ex.client.path
    if path == "/api/hello" and method in ("HEAD", "GET"):
        return whole(200, b"", b"text/plain")
    if (method, path) == ("GET", "/api/claude_code/settings"):
        # no managed settings: 204 (a 200 needs uuid, checksum and settings; the request-id header tells
        # Claude Code the answer is the API's own, not an intermediary's)
        resp = http.Response.make(204)
        resp.headers.pop("content-length", None)
        return resp
    if (method, path) == ("GET", "/api/web/domain_info"):
        domain = flow.request.query.get("domain", "")
        if not domain:
            raise GatewayError(400, "domain: Field required", code="invalid_request_error")
        ex.notes.append("WebFetch's domain check answered locally: every domain may be fetched")
        return json_response(200, {"domain": domain, "can_fetch": True})
    data = ANSWERS.get((method, path))
    if data is None:
        data = next((v for (m, p), v in PREFIXES.items() if m == method and path.startswith(p)), None)
    if data is None:
        raise GatewayError(404, f"Unknown request URL: {method} {path}. This gateway answers Claude Code's model "
                                "calls; it does not forward anything to Anthropic.", code="unknown_url")
    ex.notes.append("Claude Code side request answered locally (nothing goes to Anthropic)")
    return json_response(200, data)
