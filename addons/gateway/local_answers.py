"""Answers the gateway gives itself: /health, /metrics, the Agents SDK's traces, unknown URLs — and the
routes an outer package answers locally (/v1/models, stored responses, remote login), handed in by components.py.
Also the builders every local answer uses."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping

from mitmproxy import http
from mitmproxy.net.http import status_codes
from prometheus_client import CONTENT_TYPE_LATEST

from . import jsonio
from .accounts import Pool
from .settings.config import Config
from .errors import GatewayError
from .exchange import Exchange
from .interfaces import ClientFormat
from .health_probes import PROBES, Probes
from . import seams
from .storage.health import unavailable

JSON = {"content-type": "application/json"}


def json_response(status: int, data: dict) -> http.Response:
    return answer(status, jsonio.dumps(data))


def answer(status: int, body: bytes, content_type: bytes = b"application/json") -> http.Response:
    """A whole answer of known types, built without mitmproxy's constructor checks: `Response.make`
    converts its headers and re-encodes the content, and every `Response(...)` type-checks each field
    under `__debug__` (18 µs of the 20 µs it costs, on every answer); `Headers(...)` copies and type-checks its
    fields. tests/unit/test_local_answers.py compares the result with `Response.make`'s."""
    now = time.time()
    headers = object.__new__(http.Headers)
    headers.fields = ((b"content-type", content_type), (b"content-length", b"%d" % len(body)))
    data = object.__new__(http.ResponseData)
    data.__dict__.update(http_version=b"HTTP/1.1", status_code=status, reason=_reason(status), headers=headers,
                         content=body, trailers=None, timestamp_start=now, timestamp_end=now)
    resp = object.__new__(http.Response)
    resp.data = data
    return resp


@functools.lru_cache(maxsize=None)
def _reason(status: int) -> bytes:
    return status_codes.RESPONSES.get(status, "").encode()


def error_response(e: GatewayError, more: dict[str, str] | None = None) -> http.Response:
    return http.Response.make(e.status, e.to_bytes(), {**JSON, **e.headers, **(more or {})})


class Formats:
    """Answers in the client's dialect's format (components.py); OpenAI's where a dialect has none."""

    def __init__(self, formats: Mapping[str, ClientFormat[Exchange]]) -> None:
        self.formats = formats

    def error(self, e: GatewayError, ex: Exchange | None) -> http.Response:
        fmt = self.formats.get(ex.dialect) if ex is not None else None
        if fmt is None or ex is None:
            return error_response(e, ex.key.limit_headers if ex is not None else None)
        return http.Response.make(fmt.status(e), fmt.error_body(e, ex), {**JSON, **e.headers, **fmt.headers(ex),
                                                                         **(ex.key.limit_headers or {})})

    def stamp(self, ex: Exchange, resp: http.Response) -> None:
        """The headers the dialect puts on every answer (OpenAI's: its request id), and a named key's rate
        limits (tenancy/rate_headers.py)."""
        fmt = self.formats.get(ex.dialect)
        set_headers(resp.headers, fmt.headers(ex) if fmt is not None else openai_headers(ex))
        if ex.key.limit_headers:
            set_headers(resp.headers, ex.key.limit_headers)


def set_headers(headers: http.Headers, values: Mapping[str, str]) -> None:
    """`headers[name] = value` for each, in order: a name the headers already have through mitmproxy's setter
    (its first field replaced, the others removed), a new one appended at once (the setter would scan and
    lower-case every field first, then append it the same way)."""
    have = {name.lower() for name, _ in headers.fields}
    for name, value in values.items():
        key = name.encode("utf-8", "surrogateescape")
        if key.lower() in have:
            headers[name] = value
        else:
            headers.fields += ((key, value.encode("utf-8", "surrogateescape")),)
            have.add(key.lower())


def openai_headers(ex: Exchange) -> dict[str, str]:
    """OpenAI sends `x-request-id: req_…` on every answer; its SDKs show it (`response._request_id`) and
    people quote it in bug reports. The exchange's id: the same id as in the debug log and mitmweb."""
    return {"x-request-id": f"req_{ex.id}"}


def health(pool: Pool | None, keys: dict | None = None, unpriced: list[dict] | None = None,
           learned: dict | None = None) -> dict:
    """`keys`: the named client keys (active, revoked, read from where), when there are any; `unpriced`: the
    models without a price that carried traffic since the gateway started (pricing/unpriced.py); `learned`: what
    Qwen's refusals taught (models/learned.py `shown`)."""
    accounts = pool.status() if pool else []
    usable = [a for a in accounts if a.get("state") in ("ok", "expired", "refreshing")]
    shown = {"status": "ok" if usable else "degraded", "accounts": accounts,
             "upstream": usable[0].get("base_url") if usable else None}
    if keys is not None:
        shown["keys"] = keys
        if keys.get("state") == "unread":  # every request is refused until they are read
            shown["status"] = "degraded"
    if unpriced:
        shown["unpriced"] = unpriced
    down = unavailable()
    if down:  # chat is still served (the status is the accounts'); what needs the storage is refused
        shown["storage"] = down
    if learned is not None:
        shown["learned"] = learned
    shown["software"] = seams.software()  # as `qwen-gateway --version` says
    return shown



# A local answer a client dialect gives (components.py): the exchange, its flow, the options -> the answer.
LocalRoute = Callable[[Exchange, http.HTTPFlow, Config], Awaitable[http.Response]]


class LocalAnswers:
    def __init__(self, *, pool: Callable[[], Pool | None], routes: Mapping[str, LocalRoute],
                 metrics: Callable[[], bytes | None], keys: Callable[[], dict | None] = lambda: None,
                 unpriced: Callable[[], list[dict]] = list,
                 learned: Callable[[], dict | None] = lambda: None) -> None:
        self.pool = pool
        self.keys = keys
        self.unpriced = unpriced  # the models without a price that carried traffic (/health)
        self.learned = learned  # what Qwen's refusals taught (models/learned.py), shown on /health
        self.routes = routes  # answers that belong to an outer package (components.py): models, stored responses, login
        self.metrics = metrics
        self.probes = Probes(pool, keys)  # /health/liveness, /health/readiness

    async def answer(self, ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        route, path, method = ex.route, ex.client.path, ex.client.method
        if route == "health":
            return json_response(200, health(self.pool(), self.keys(), self.unpriced(), self.learned()))
        if route in PROBES:
            return json_response(*self.probes.answer(route))
        handler = self.routes.get(route)
        if handler is not None:
            return await handler(ex, flow, config)
        if route == "metrics":
            exposition = self.metrics() if config.metrics else None
            if exposition is None:
                raise unknown_url(method, path)
            return http.Response.make(200, exposition, {"content-type": CONTENT_TYPE_LATEST})
        if route == "traces":  # the Agents SDK's trace upload: nowhere to send it, and nothing is kept
            resp = http.Response.make(204)
            resp.headers.pop("content-length", None)  # a 204 has no body, and says nothing of its length
            return resp
        if route == "method_not_allowed":
            raise GatewayError(405, f"Method {method} is not allowed for {path}"
                               + ("; use POST." if ex.endpoint is not None else "."), code="method_not_allowed")
        raise unknown_url(method, path)


def unknown_url(method: str, path: str) -> GatewayError:
    return GatewayError(404, f"Unknown request URL: {method} {path}. Please check the URL.", code="unknown_url")
