"""Remote login (POST /auth/initiate, /auth/poll): a Qwen OAuth device login started through the gateway,
for a machine without a browser. Off, loopback-only (the default) or open, by `qwen_remote_login`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mitmproxy import http

from ..settings.config import Config
from ..errors import GatewayError
from ..exchange import Exchange
from ..local_answers import json_response
from ..peers import is_loopback


class DeviceLogins(Protocol):
    """Device logins started and finished over HTTP: auth/remote.py's `RemoteLogin`, handed in by components.py
    (the entrance imports no outer package). What it refuses it raises as a GatewayError, answered in the client's format."""

    async def initiate(self, account: str | None = None) -> dict: ...

    async def poll(self, id: str) -> dict: ...


class LoginRoute:
    """The local route "auth"; `reload_accounts` runs once a login has been saved; `logins(config.auth,
    on_success=...)` makes the device logins at the first request."""

    def __init__(self, reload_accounts: Callable[[], None], logins: Callable[..., DeviceLogins]) -> None:
        self.reload_accounts = reload_accounts
        self.logins = logins
        self._remote: DeviceLogins | None = None

    async def __call__(self, ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        mode = config.remote_login
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        if mode == "off" or (mode == "loopback" and not is_loopback(peer)):
            raise GatewayError(404 if mode == "off" else 403, "Remote login is "
                               + ("off (--set qwen_remote_login=loopback|on)." if mode == "off"
                                  else "only served to loopback clients here."), code="remote_login_disabled")
        if self._remote is None:
            self._remote = self.logins(config.auth, on_success=lambda _name: self.reload_accounts())
        body = ex.body or {}
        if ex.client.path == "/auth/initiate":
            account = body.get("account")
            return json_response(200, await self._remote.initiate(account if isinstance(account, str) else None))
        return json_response(200, await self._remote.poll(str(body.get("id") or body.get("device_code_id") or "")))
