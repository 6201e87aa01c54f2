"""Answers the gateway gives itself: /health, /v1/models, /metrics, remote login, stored responses."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable

from mitmproxy import http
from mitmproxy.net.http import status_codes
from prometheus_client import CONTENT_TYPE_LATEST

from . import jsonio
from .api.responses.request import translate
from .api.responses.store import ResponseStore
from .auth.base import Pool
from .auth.remote import RemoteLogin, RemoteLoginError
from .config import Config
from .door.access import is_loopback
from .errors import GatewayError
from .exchange import Exchange
from .observe.tokens import estimate_request_tokens

JSON = {"content-type": "application/json"}


def json_response(status: int, data: dict) -> http.Response:
    return answer(status, jsonio.dumps(data))


def answer(status: int, body: bytes, content_type: bytes = b"application/json") -> http.Response:
    """A whole answer of known types, built without mitmproxy's constructor checks: `Response.make`
    converts its headers and re-encodes the content, and every `Response(...)` type-checks each field
    under `__debug__` (18 µs of the 20 µs it costs, on every answer). tests/test_local.py compares the
    result with `Response.make`'s."""
    now = time.time()
    data = object.__new__(http.ResponseData)
    data.__dict__.update(http_version=b"HTTP/1.1", status_code=status, reason=_reason(status),
                         headers=http.Headers(((b"content-type", content_type), (b"content-length", b"%d" % len(body)))),
                         content=body, trailers=None, timestamp_start=now, timestamp_end=now)
    resp = object.__new__(http.Response)
    resp.data = data
    return resp


@functools.lru_cache(maxsize=None)
def _reason(status: int) -> bytes:
    return status_codes.RESPONSES.get(status, "").encode()


def error_response(e: GatewayError) -> http.Response:
    return http.Response.make(e.status, e.to_bytes(), {**JSON, **e.headers})


def health(pool: Pool | None) -> dict:
    accounts = pool.status() if pool else []
    usable = [a for a in accounts if a.get("state") in ("ok", "expired", "refreshing")]
    return {"status": "ok" if usable else "degraded", "accounts": accounts,
            "upstream": usable[0].get("base_url") if usable else None}


class LocalAnswers:
    def __init__(self, *, pool: Callable[[], Pool | None], store: Callable[[], ResponseStore],
                 metrics: Callable[[], bytes | None], reload_accounts: Callable[[], None]) -> None:
        self.pool = pool
        self.store = store
        self.metrics = metrics
        self.reload_accounts = reload_accounts
        self._remote: RemoteLogin | None = None

    async def answer(self, ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        route, path, method = ex.route, ex.client.path, ex.client.method
        sub = path[3:] if path.startswith("/v1/") else path
        if route == "health":
            return json_response(200, health(self.pool()))
        if route == "models":
            if sub == "/models":
                return json_response(200, {"object": "list", "data": config.models.list()})
            name = sub[len("/models/"):]
            model = config.models.get(name)
            if model is None:
                raise GatewayError(404, f"The model '{name}' does not exist.", code="model_not_found",
                                   param="model")
            return json_response(200, model)
        if route == "metrics":
            exposition = self.metrics() if config.metrics else None
            if exposition is None:
                raise _unknown(method, path)
            return http.Response.make(200, exposition, {"content-type": CONTENT_TYPE_LATEST})
        if route == "stored_response":
            return stored_response(self.store(), method, sub[len("/responses/"):], flow.request.query)
        if route == "traces":  # the Agents SDK's trace upload: nowhere to send it, and nothing is kept
            resp = http.Response.make(204)
            resp.headers.pop("content-length", None)  # a 204 has no body, and says nothing of its length
            return resp
        if route == "input_tokens":
            return json_response(200, await input_tokens(self.store(), _body(flow)))
        if route == "auth":
            return await self._remote_login(ex, flow, config)
        if route == "method_not_allowed":
            raise GatewayError(405, f"Method {method} is not allowed for {path}"
                               + ("; use POST." if ex.endpoint is not None else "."), code="method_not_allowed")
        raise _unknown(method, path)

    async def _remote_login(self, ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        mode = config.remote_login
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        if mode == "off" or (mode == "loopback" and not is_loopback(peer)):
            raise GatewayError(404 if mode == "off" else 403, "Remote login is "
                               + ("off (--set qwen_remote_login=loopback|on)." if mode == "off"
                                  else "only served to loopback clients here."), code="remote_login_disabled")
        if self._remote is None:
            self._remote = RemoteLogin(config.auth, on_success=lambda _name: self.reload_accounts())
        body = ex.body or {}
        try:
            if ex.client.path == "/auth/initiate":
                account = body.get("account")
                return json_response(200, await self._remote.initiate(account if isinstance(account, str) else None))
            return json_response(200, await self._remote.poll(str(body.get("id") or body.get("device_code_id") or "")))
        except RemoteLoginError as e:
            raise GatewayError(e.status, str(e), code=e.code) from e


def _body(flow: http.HTTPFlow) -> dict:
    try:
        body = json.loads(flow.request.content or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    return body


def stored_response(store: ResponseStore, method: str, rest: str, query) -> http.Response:
    """GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, POST /v1/responses/{id}/cancel."""
    rid, _, action = rest.partition("/")
    if (method, action) not in (("GET", ""), ("DELETE", ""), ("GET", "input_items"), ("POST", "cancel")):
        raise _unknown(method, f"/v1/responses/{rest}")
    if method == "DELETE" and store.delete(rid):
        return json_response(200, {"id": rid, "object": "response", "deleted": True})
    stored = store.get(rid) if method != "DELETE" else None
    if stored is None:
        raise GatewayError(404, f"Response with id '{rid}' not found.", code="not_found", param="response_id")
    if action == "cancel":  # every answer is finished before it is stored: nothing runs in the background
        raise GatewayError(400, "Only responses created with background=true can be cancelled.",
                           code="invalid_request", param="response_id")
    if action == "input_items":
        return json_response(200, item_page(store.inputs(rid) or [], query))
    return json_response(200, stored)


def item_page(items: list[dict], query) -> dict:
    """One page of a list of items, as OpenAI pages them (`limit` 1–100, default 20; `order` desc by
    default; `after` an item id)."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise GatewayError(400, "order must be asc or desc.", param="order", code="invalid_value")
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise GatewayError(400, "limit must be an integer from 1 to 100.", param="limit", code="invalid_value")
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after:
        ids = [i.get("id") for i in ordered]
        ordered = ordered[ids.index(after) + 1:] if after in ids else []
    page = ordered[:limit]
    return {"object": "list", "data": page, "has_more": len(ordered) > limit,
            "first_id": page[0]["id"] if page else "", "last_id": page[-1]["id"] if page else ""}


async def input_tokens(store: ResponseStore, body: dict) -> dict:
    """POST /v1/responses/input_tokens: the gateway's own estimate of the prompt the request would send
    (previous_response_id included), counted like the request line's estimate (observe/tokens.py)."""
    chat = translate({**body, "input": body.get("input") if body.get("input") is not None else []},
                     **store.continuation(body), open_sealed=store.sealer.open, lookup=store.item).chat
    tokens, _method = await asyncio.to_thread(estimate_request_tokens, chat)
    return {"object": "response.input_tokens", "input_tokens": tokens}


def _unknown(method: str, path: str) -> GatewayError:
    return GatewayError(404, f"Unknown request URL: {method} {path}. Please check the URL.", code="unknown_url")
