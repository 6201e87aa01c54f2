"""The upstream request: where it goes and the headers it carries. A Qwen OAuth login is qwen-code's own
protocol and goes out with qwen-code's headers; a key account goes out with its client's own identity: a
plan's terms decide who may call it (Coding Plan: coding agents only; Token Plan: interactive AI tools
only), so the gateway never sends one client dressed as another."""

from __future__ import annotations

import functools
import platform
from importlib import metadata
from urllib.parse import urlsplit

from ...accounts import OAUTH, Credential

OPENAI_NODE_VERSION = "5.11.0"  # the openai SDK qwen-code 0.14.5 ships
ARCH = "x64" if platform.machine() in ("x86_64", "AMD64") else "arm64"
FALLBACK_VERSION = "0.1.0"  # pyproject's, for a tree run without the package installed


def gateway_version() -> str:
    try:
        return metadata.version("qwen-gateway")
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION


# A key account's User-Agent when its client sent none: the gateway names itself, never another client.
GATEWAY_AGENT = f"qwen-gateway/{gateway_version()}"


def upstream_url(base: str, suffix: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) for `suffix` (e.g. "chat/completions") under an API base."""
    parts = urlsplit(base.rstrip("/") + "/" + suffix.lstrip("/"))
    scheme = parts.scheme or "https"
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, parts.hostname or "", port, parts.path


@functools.lru_cache(maxsize=64)  # asked per request about an account's few API bases
def target(base: str, suffix: str) -> tuple[str, str]:
    """(URL, Host header) of `suffix` under an API base."""
    scheme, host, port, path = upstream_url(base, suffix)
    hostport = host_header(scheme, host, port)
    return f"{scheme}://{hostport}{path}", hostport


def upstream_headers(cred: Credential, *, user_agent: str, stream: bool, host: str, attempt: int = 0,
                     client_agent: str = "") -> list[tuple[str, str]]:
    """A fresh header set: nothing the client sent (its key above all) goes upstream but, on a key account, its
    User-Agent (`client_agent`, "": it sent none). `user_agent`: qwen-code's, for OAuth logins; `attempt`: how
    many times this request was sent before (qwen-code's retry count)."""
    headers = [
        ("Host", host),
        ("Accept", "text/event-stream" if stream else "application/json"),
        ("Content-Type", "application/json"),
        # Identity: the turn's stream translation reads plain SSE, not gzip.
        ("Accept-Encoding", "identity"),
        ("Authorization", f"Bearer {cred.token}"),
    ]
    if cred.kind != OAUTH:  # the cache switch is a function, not an identity: kept
        headers += [("User-Agent", client_agent or GATEWAY_AGENT), ("X-DashScope-CacheControl", "enable")]
        return headers
    headers += [
        ("User-Agent", user_agent),
        ("X-DashScope-CacheControl", "enable"),
        ("X-DashScope-UserAgent", user_agent),
        ("X-DashScope-AuthType", "qwen-oauth"),
        ("X-Stainless-Lang", "js"),
        ("X-Stainless-Package-Version", OPENAI_NODE_VERSION),
        ("X-Stainless-OS", "Linux"),
        ("X-Stainless-Arch", ARCH),
        ("X-Stainless-Runtime", "node"),
        ("X-Stainless-Runtime-Version", "v20.19.0"),
        ("X-Stainless-Retry-Count", str(attempt)),
    ]
    return headers


def host_header(scheme: str, host: str, port: int) -> str:
    default = 443 if scheme == "https" else 80
    return host if port == default else f"{host}:{port}"
