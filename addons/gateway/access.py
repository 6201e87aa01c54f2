"""Who may spend the user's Qwen quota: client keys, loopback by default, request size. Pure checks over
the request's raw bytes: a malformed header is a refusal, never an exception."""

from __future__ import annotations

import hmac
import ipaddress

from mitmproxy import http
from mitmproxy.proxy import mode_specs

from .errors import GatewayError

INVALID_KEY = ("Incorrect API key provided. This gateway requires one of its client keys "
               "(Authorization: Bearer KEY or x-api-key).")


def key_matches(presented: bytes, keys: tuple[bytes, ...] | list[bytes]) -> bool:
    """Constant time over every key: no early exit that would tell which prefix matched."""
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(presented, k)
    return ok


def presented_key(req: http.Request) -> bytes:
    """The key the client presented, as raw bytes (Bearer token, else x-api-key)."""
    bearer = api_key = b""
    for name, value in req.headers.fields:
        lname = name.lower()
        if lname == b"authorization" and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip()
        elif lname == b"x-api-key":
            api_key = value.strip()
    return bearer or api_key


def check_key(req: http.Request, keys: tuple[bytes, ...]) -> GatewayError | None:
    if keys and not key_matches(presented_key(req), keys):
        return GatewayError(401, INVALID_KEY, type="invalid_request_error", code="invalid_api_key")
    return None


def check_declared_size(req: http.Request, max_body: int) -> GatewayError | None:
    """Content-Length over the limit: refused before the body is read."""
    length = req.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body:
        return too_large(max_body)
    return None


def too_large(max_body: int) -> GatewayError:
    return GatewayError(413, f"Request body too large: the limit is {max_body >> 20} MiB (qwen_max_body_mb).",
                        code="request_too_large")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback or host.startswith("::ffff:127.")
    except ValueError:
        return False


def exposed_listeners(modes: list[str], listen_host: str) -> list[str]:
    """Mode specs that would listen beyond loopback. An empty listen host counts as loopback: the
    gateway binds 127.0.0.1 itself when the user did not choose (see addon.bind_loopback_by_default)."""
    out = []
    for spec in modes:
        mode = mode_specs.ProxyMode.parse(spec)
        if mode.listen_port(None) is None and isinstance(mode, mode_specs.LocalMode):
            continue
        host = mode.custom_listen_host if mode.custom_listen_host is not None else listen_host
        if host and not is_loopback(host):
            out.append(f"{spec} (on {host})")
    return out
