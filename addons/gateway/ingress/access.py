"""Who may spend the user's Qwen quota: client keys, loopback by default, request size. Pure checks over
the request's raw bytes: a malformed header is a refusal, never an exception."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

from mitmproxy import http
from mitmproxy.net.http import http1

from ..errors import GatewayError
from ..health_probes import PROBES
from ..peers import is_loopback
from ..redact import REDACTED

INVALID_KEY = ("Incorrect API key provided. This gateway requires one of its client keys "
               "(Authorization: Bearer KEY or x-api-key).")


# Every place a client may put a key (docs/keys.md, "Where a key goes"). Taken: Bearer, x-api-key, api-key
# (Azure's clients) and the subprotocol OpenAI's browser WebSockets send; refused: the URL, Basic, cookies.
# Wherever it was, the key is out of the flow before any other addon (mitmweb, -w) sees it.
CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key", b"proxy-authorization", b"cookie"})
KEY_PARAMS = frozenset({"api_key", "api-key", "apikey", "key", "access_token"})  # a key in a URL, by name
SOCKET_KEY = b"openai-insecure-api-key."  # a Sec-WebSocket-Protocol entry: the key follows the dot
_BROWSER_HEADERS = frozenset({b"origin", b"sec-fetch-site", b"sec-fetch-mode"})
_API_HEADERS = frozenset({b"anthropic-version", b"anthropic-beta"})


@dataclass(slots=True)  # not frozen: its __init__ would set each field through object.__setattr__ (5x the cost)
class Head:
    """What admission reads from the request's headers, in one pass over the raw fields (each lookup in
    mitmproxy's Headers scans and lower-cases every field), and whether its URL's query names a key."""

    key: bytes = b""  # the key the client presented, raw: Bearer token, else x-api-key or api-key, else subprotocol
    host: str | None = None
    origin: str | None = None
    content_length: str = ""
    browser: bool = False  # Origin or fetch metadata: sent by browsers, never by API clients and CLIs
    anthropic: bool = False  # an `anthropic-version` header: the client speaks Anthropic's API
    api_headers: tuple[tuple[str, str], ...] = ()  # anthropic-version and anthropic-beta, as sent
    user_agent: str = ""  # the first User-Agent, as sent: what a key account's upstream request says it is
    basic: bool = False  # `Authorization: Basic`: no key the gateway takes (the 401 says which header to use)
    path_without_key: str | None = None  # the path with a key parameter's value redacted (None: it had none)

    @property
    def key_in_url(self) -> bool:
        return self.path_without_key is not None


def read_head(req: http.Request) -> tuple[Head, tuple[tuple[bytes, bytes], ...] | None]:
    """The request's Head, and its header fields without the client's credentials (None: there were none)."""
    bearer = api_key = socket_key = b""
    basic = False
    host = origin = None
    length = user_agent = ""
    browser = anthropic = False
    api_headers: list[tuple[str, str]] = []
    kept: list[tuple[bytes, bytes]] = []
    dropped = False
    for name, value in req.headers.fields:
        lname = name.lower()
        if lname in CREDENTIAL_HEADERS:
            dropped = True
            if lname == b"authorization":
                if value[:7].lower() == b"bearer ":
                    bearer = value[7:].strip()
                basic = basic or value[:6].lower() == b"basic "
            elif lname in (b"x-api-key", b"api-key") and not api_key:
                api_key = value.strip()
            continue
        if lname == b"sec-websocket-protocol":
            offered, in_protocol = without_socket_key(value)
            if in_protocol is not None:  # the other subprotocols (`realtime`) stay, for the server to choose
                dropped, socket_key = True, socket_key or in_protocol
                if offered:
                    kept.append((name, offered))
                continue
        kept.append((name, value))
        if lname == b"host":  # repeated: joined like mitmproxy's Headers, and then no allowed name
            host = _join(host, value)
        elif lname == b"content-length":
            length = value.decode("latin-1")
        elif lname == b"user-agent" and not user_agent:
            user_agent = value.decode("latin-1")
        elif lname in _API_HEADERS:
            anthropic = anthropic or lname == b"anthropic-version"
            api_headers.append((name.decode("latin-1"), value.decode("latin-1")))
        elif lname in _BROWSER_HEADERS:
            browser = True
            if lname == b"origin":
                origin = _join(origin, value)
    if req.http_version in ("HTTP/2.0", "HTTP/3") and req.authority:
        host = req.authority  # what mitmproxy's host_header says for HTTP/2 and 3
    path = req.path
    in_url = redact_query(path, lambda name, _: name in KEY_PARAMS) if "?" in path else None
    return (Head(bearer or api_key or socket_key, host, origin, length, browser, anthropic, tuple(api_headers),
                 user_agent, basic, in_url),
            tuple(kept) if dropped else None)


def without_socket_key(value: bytes) -> tuple[bytes, bytes | None]:
    """A Sec-WebSocket-Protocol value without its `openai-insecure-api-key.KEY` entry, and the key (None:
    there was no such entry)."""
    offered, key = [], None
    for entry in value.split(b","):
        entry = entry.strip()
        if entry[:len(SOCKET_KEY)].lower() == SOCKET_KEY:
            key = key or entry[len(SOCKET_KEY):]
        elif entry:
            offered.append(entry)
    return b", ".join(offered), key


def redact_query(path: str, is_key: Callable[[str, bytes], bool]) -> str | None:
    """`path` with the value of each query parameter that `is_key(name, value)` (the name decoded and lower
    case, the value's bytes decoded) replaced by a marker; None when there is none. The rest of the path
    stays byte for byte as the client wrote it."""
    target, _, query = path.partition("?")
    params = query.split("&")
    found = False
    for i, param in enumerate(params):
        name, _, value = param.partition("=")
        if value and is_key(unquote(name).lower(), unquote_to_bytes(value.encode("utf-8", "surrogateescape"))):
            params[i], found = f"{name}={REDACTED}", True
    return f"{target}?{'&'.join(params)}" if found else None


def _join(previous: str | None, value: bytes) -> str:
    text = value.decode("utf-8", "surrogateescape")
    return text if previous is None else f"{previous}, {text}"


def check_declared_size(length: str, max_body: int) -> GatewayError | None:
    """Content-Length over the limit: refused before the body is read."""
    if length.isdigit() and int(length) > max_body:
        return too_large(max_body)
    return None


def too_large(max_body: int) -> GatewayError:
    return GatewayError(413, f"Request body too large: the limit is {max_body >> 20} MiB (qwen_max_body_mb).",
                        code="request_too_large")


def too_large_answer(max_body: int) -> bytes:
    """mitmproxy's own 413 past body_size_limit (seams/body_limit.py), whole: it is not told the request, so one
    JSON body that OpenAI's SDKs (`error.code`, `error.message`) and Anthropic's (`type`, `error.type`) read."""
    # mitmproxy's limit is the gateway's twice over in reverse mode, the user's own in the other modes
    message = too_large(max_body).message.removesuffix(".") + ", or mitmproxy's body_size_limit where that is lower."
    body = {"type": "error", "error": {"message": message, "type": "request_too_large", "code": "request_too_large",
                                       "param": None}}
    return http1.assemble_response(http.Response.make(
        413, json.dumps(body).encode(), {"content-type": "application/json", "connection": "close"}))


# ---- request bodies: decoded with a limit (a few KiB of zstd can expand to gigabytes) -------------------

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def host_name(value: str) -> str:
    """A Host header's name: without port, brackets, case or the root's trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    elif value.count(":") > 1 and not _is_ip(value):  # a bare IPv6 address with a port
        head, _, port = value.rpartition(":")
        if port.isdigit() and _is_ip(head):
            value = head
    return value.rstrip(".")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def check_origin(origin: str | None, allowed: frozenset[str]) -> GatewayError | None:
    """A request a web page made (its Origin names another site) is refused: a page must not spend the
    user's quota or read the gateway's answers. Pages served from an allowed host (localhost) are fine."""
    if origin is None:
        return None
    name = host_name(origin.split("://", 1)[-1].split("/", 1)[0]) if "://" in origin else origin.lower()
    if name in allowed:
        return None
    return GatewayError(403, "Requests from web pages of other sites are refused (Origin: "
                             f"{origin[:80]}). Add the host to qwen_allowed_hosts if you trust it.",
                        code="origin_not_allowed")


def check_host(host: str | None, allowed: frozenset[str]) -> GatewayError | None:
    """DNS rebinding: a page on evil.example resolves its own name to 127.0.0.1 and reads the answers. Its
    requests carry its own name in Host; only the gateway's names are served."""
    if host_name(host or "") in allowed:
        return None
    return GatewayError(403, "This gateway answers only for its own host names (Host: "
                             f"{(host or '')[:80]}). Add the name to qwen_allowed_hosts.",
                        code="host_not_allowed")


# ---- admission: everything decided from the request's headers --------------------------------------------

PASSTHROUGH_REFUSED = GatewayError(
    403, "This gateway requires client keys and answers only its own hosts (qwen_intercept_hosts); it does "
         "not relay other traffic (qwen_allow_passthrough).", code="passthrough_refused")


def key_exempt(route: str, peer: str) -> bool:
    """What answers without a client key: the probes, to anyone (kubelet and Docker send no key, and they show
    no secret: health_probes.py); /health on loopback (beyond it, it is behind the key: it names the accounts)."""
    return route in PROBES or (route == "health" and is_loopback(peer))


def admit(head: Head, *, route: str, key_refusal: GatewayError | None, allowed: frozenset[str],
          peer: str, max_body: int) -> GatewayError | None:
    """The refusal for a claimed request, from its headers alone (the body is not read yet). `key_refusal`
    is the client-key check, made before the key was dropped from the flow."""
    if key_refusal is not None and not key_exempt(route, peer):
        return key_refusal
    refusal = check_host(head.host, allowed) or check_origin(head.origin, allowed)
    if refusal is None and route == "auth" and head.browser:
        refusal = GatewayError(403, "Remote login is not served to web pages.", code="remote_login_disabled")
    return refusal or check_declared_size(head.content_length, max_body)


def sock_host(flow: http.HTTPFlow) -> str:
    """The address the client connected to: a client that names it in Host is not a rebinding page."""
    return host_name(str(flow.client_conn.sockname[0])) if flow.client_conn.sockname else ""
