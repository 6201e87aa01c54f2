"""What may connect to the gateway, and where mitmproxy may connect: the perimeter.

- Listeners: mitmproxy listens on every interface unless told; the gateway moves them to loopback
  (listeners.py) and closes a connection that reached a listener beyond loopback in the moment before.
- Server connections: the only server a claimed flow may reach is the relay; in reverse mode every flow is
  claimed; in other modes nothing for an intercepted name (Host, SNI) or one of the addresses those names
  resolve to gets out (transparent mode sees addresses, not names).
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy.proxy import mode_specs, server_hooks

from ..settings.config import Config, normalise_host
from ..peers import is_loopback

RESOLVE_TTL_S = 60.0


class ConnectionPolicy:
    def __init__(self) -> None:
        self.loopback_only = False  # every listener on 127.0.0.1
        self._resolved: tuple[frozenset[str], float, frozenset[str]] | None = None

    def refuses_client(self, sockname) -> bool:
        return self.loopback_only and bool(sockname) and bool(sockname[0]) and not is_loopback(str(sockname[0]))

    async def refuses_server(self, data: server_hooks.ServerConnectionHookData, config: Config,
                             own: tuple[tuple[str, int] | None, ...]) -> bool:
        """`own`: the gateway's loopback servers (the stream relay, the WebSocket server): always allowed."""
        address = data.server.address
        if address is None or tuple(address[:2]) in own:
            return False
        if isinstance(data.client.proxy_mode, mode_specs.ReverseMode):
            return True
        names = (str(address[0]), data.server.sni or "", data.client.sni or "")
        if any(normalise_host(n) in config.intercept_hosts for n in names if n):
            return True
        return str(address[0]) in await self.intercepted_addresses(config.intercept_hosts)

    async def intercepted_addresses(self, hosts: frozenset[str]) -> frozenset[str]:
        """What the intercepted names resolve to (cached; a failed lookup resolves to nothing)."""
        now = time.monotonic()
        if self._resolved is not None and self._resolved[0] == hosts and now - self._resolved[1] < RESOLVE_TTL_S:
            return self._resolved[2]
        loop = asyncio.get_running_loop()
        found: set[str] = set()
        for host in hosts:
            try:
                infos = await asyncio.wait_for(loop.getaddrinfo(host, None), 2)
            except (OSError, asyncio.TimeoutError):
                continue
            found |= {str(info[4][0]) for info in infos}
        self._resolved = (hosts, now, frozenset(found))
        return self._resolved[2]

