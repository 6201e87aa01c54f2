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


# ---- request bodies: decoded with a limit (a few KiB of zstd can expand to gigabytes) -------------------

def decode_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body with its Content-Encoding removed, refused (413) as soon as it grows past `limit`.
    Raises ValueError for an encoding that is unknown or does not decode."""
    out = raw
    for enc in reversed([e.strip().lower() for e in encoding.split(",") if e.strip()]):
        if enc in ("identity", ""):
            continue
        decoder = _DECODERS.get(enc)
        if decoder is None:
            raise ValueError(f"unsupported Content-Encoding {enc!r}")
        out = decoder(out, limit)
    if len(out) > limit:
        raise BodyTooLarge
    return out


class BodyTooLarge(Exception):
    pass


_STEP = 64 * 1024


def _zlib(raw: bytes, limit: int, wbits: int) -> bytes:
    import zlib
    try:
        d = zlib.decompressobj(wbits)
        parts, size, data = [], 0, raw
        while True:
            chunk = d.decompress(data, _STEP)
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            parts.append(chunk)
            data = d.unconsumed_tail
            if not data and (d.eof or not chunk):
                break
        return b"".join(parts)
    except zlib.error as e:
        raise ValueError(str(e)) from e


def _deflate(raw: bytes, limit: int) -> bytes:
    try:
        return _zlib(raw, limit, 15)  # zlib-wrapped, as the RFC says
    except ValueError:
        return _zlib(raw, limit, -15)  # raw deflate, as some clients send


def _brotli(raw: bytes, limit: int) -> bytes:
    import brotli
    d = brotli.Decompressor()
    parts, size, data = [], 0, raw
    try:
        while True:
            chunk = d.process(data, output_buffer_limit=_STEP)
            data = b""  # all input went in with the first call; later calls only drain
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            parts.append(chunk)
            if d.is_finished() or (not chunk and d.can_accept_more_data()):
                return b"".join(parts)
    except brotli.error as e:
        raise ValueError(str(e)) from e


def _zstd(raw: bytes, limit: int) -> bytes:
    import io

    import zstandard
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw))
        out = reader.read(limit + 1)
    except zstandard.ZstdError as e:
        raise ValueError(str(e)) from e
    if len(out) > limit:
        raise BodyTooLarge
    return out


_DECODERS = {"gzip": lambda raw, limit: _zlib(raw, limit, 31), "x-gzip": lambda raw, limit: _zlib(raw, limit, 31),
             "deflate": _deflate, "br": _brotli, "zstd": _zstd}


# ---- where requests come from: browsers and foreign hosts ----------------------------------------------

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


def check_origin(req: http.Request, allowed: frozenset[str]) -> GatewayError | None:
    """A request a web page made (its Origin names another site) is refused: a page must not spend the
    user's quota or read the gateway's answers. Pages served from an allowed host (localhost) are fine."""
    origin = req.headers.get("origin")
    if origin is None:
        return None
    name = host_name(origin.split("://", 1)[-1].split("/", 1)[0]) if "://" in origin else origin.lower()
    if name in allowed:
        return None
    return GatewayError(403, "Requests from web pages of other sites are refused (Origin: "
                             f"{origin[:80]}). Add the host to qwen_allowed_hosts if you trust it.",
                        code="origin_not_allowed")


def check_host(req: http.Request, allowed: frozenset[str]) -> GatewayError | None:
    """DNS rebinding: a page on evil.example resolves its own name to 127.0.0.1 and reads the answers. Its
    requests carry its own name in Host; only the gateway's names are served."""
    if host_name(req.host_header or "") in allowed:
        return None
    return GatewayError(403, "This gateway answers only for its own host names (Host: "
                             f"{(req.host_header or '')[:80]}). Add the name to qwen_allowed_hosts.",
                        code="host_not_allowed")


def is_browser_request(req: http.Request) -> bool:
    """Fetch metadata or an Origin: sent by browsers, never by API clients and CLIs."""
    return "origin" in req.headers or "sec-fetch-site" in req.headers or "sec-fetch-mode" in req.headers


# ---- admission: everything decided from the request's headers --------------------------------------------

PASSTHROUGH_REFUSED = GatewayError(
    403, "This gateway requires client keys and answers only its own hosts (qwen_intercept_hosts); it does "
         "not relay other traffic (qwen_allow_passthrough).", code="passthrough_refused")


def admit(req: http.Request, *, route: str, key_refusal: GatewayError | None, allowed: frozenset[str],
          peer: str, max_body: int) -> GatewayError | None:
    """The refusal for a claimed request, from its headers alone (the body is not read yet). `key_refusal`
    is the client-key check, made before the key was dropped from the flow."""
    if key_refusal is not None and not (route == "health" and is_loopback(peer)):
        return key_refusal  # /health stays open on loopback; beyond it, it is behind the key
    refusal = check_host(req, allowed) or check_origin(req, allowed)
    if refusal is None and route == "auth" and is_browser_request(req):
        refusal = GatewayError(403, "Remote login is not served to web pages.", code="remote_login_disabled")
    return refusal or check_declared_size(req, max_body)
