"""Who is at the other end of a connection: whether an address is loopback, which listeners reach beyond it, the
client's address, and whether a presented key is one of the gateway's (in constant time). The entrance check
(ingress/) and the named keys (tenancy/) both ask, so it lives in the core, below both."""

from __future__ import annotations

import functools
import hmac
import ipaddress

from mitmproxy import http
from mitmproxy.proxy import mode_specs


def key_matches(presented: bytes, keys: tuple[bytes, ...] | list[bytes]) -> bool:
    """Constant time over every key: no early exit that would tell which prefix matched."""
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(presented, k)
    return ok


@functools.lru_cache(maxsize=256)  # asked per request about the same few addresses
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback or host.startswith("::ffff:127.")
    except ValueError:
        return False


def exposed_listeners(modes: list[str], listen_host: str) -> list[str]:
    """Mode specs that would listen beyond loopback. An empty listen host counts as loopback: the
    gateway binds 127.0.0.1 itself when the user did not choose (see ingress/listeners.bind_loopback_by_default)."""
    out = []
    for spec in modes:
        mode = mode_specs.ProxyMode.parse(spec)
        if mode.listen_port(None) is None and isinstance(mode, mode_specs.LocalMode):
            continue
        host = mode.custom_listen_host if mode.custom_listen_host is not None else listen_host
        if host and not is_loopback(host):
            out.append(f"{spec} (on {host})")
    return out


def peer_host(flow: http.HTTPFlow) -> str:
    return str(flow.client_conn.peername[0]) if flow.client_conn.peername else ""


def from_loopback(flow: http.HTTPFlow | None) -> bool:
    """The client is on the gateway's own machine (a loopback peer)."""
    return flow is not None and is_loopback(peer_host(flow))
