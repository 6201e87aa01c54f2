"""Answers the gateway gives itself: /health, /v1/models, /metrics, remote login, stored responses."""

from __future__ import annotations

import json
from collections.abc import Callable

from mitmproxy import http
from prometheus_client import CONTENT_TYPE_LATEST

from .access import is_loopback
from .auth.base import Pool
from .auth.remote import RemoteLogin, RemoteLoginError
from .config import Config
from .errors import GatewayError
from .exchange import Exchange
from .response_store import ResponseStore

JSON = {"content-type": "application/json"}


def json_response(status: int, data: dict) -> http.Response:
    return http.Response.make(status, json.dumps(data, ensure_ascii=False).encode(), JSON)


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
            rid = sub[len("/responses/"):]
            if method == "DELETE" and self.store().delete(rid):
                return json_response(200, {"id": rid, "object": "response", "deleted": True})
            stored = self.store().get(rid) if method == "GET" else None
            if stored is None:
                raise GatewayError(404, f"Response with id '{rid}' not found.", code="not_found",
                                   param="response_id")
            return json_response(200, stored)
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


def _unknown(method: str, path: str) -> GatewayError:
    return GatewayError(404, f"Unknown request URL: {method} {path}. Please check the URL.", code="unknown_url")
