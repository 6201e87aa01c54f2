"""Secrets out of anything the observers write or show: headers, URLs, free text (error messages, bodies)."""

from __future__ import annotations

import functools
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"
SECRET_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie",
                  "x-goog-api-key", "bx-ua", "bx-umidtoken"}  # bx-*: a Qwen Chat browser's anti-bot tokens
SECRET_PARAMS = {"key", "api_key", "api-key", "apikey", "token", "access_token", "refresh_token", "code"}
# "Bearer <anything>", sk-… style keys, and the key of a browser's WebSocket subprotocol
# (`openai-insecure-api-key.KEY`) anywhere in a header value or a body.
SECRET_VALUE = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}|\b(sk-)[A-Za-z0-9_\-]{6,}"
                          r"|\b(openai-insecure-api-key\.)[^\s,;'\"\\]+")
# A secret query parameter's value in a URL within text: a request line as mitmproxy's protocol debug prints it.
_PARAMS = "|".join(re.escape(p) for p in sorted(SECRET_PARAMS, key=len, reverse=True))
SECRET_PARAM = re.compile(rf"(?i)([?&](?:{_PARAMS})=)(?!{re.escape(REDACTED)})[^&\s#'\"\\]+")
SECRET_JSON = re.compile(r'(?i)("(?:api[_-]?key|access_token|refresh_token|id_token|authorization|password|'
                         r'client_secret|secret)"\s*:\s*")(?:[^"\\]|\\.)*(")')


def redact_text(text: str) -> str:
    text = SECRET_VALUE.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + REDACTED, text)
    text = SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
    return SECRET_JSON.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)


def redact_headers(headers) -> dict[str, str]:
    """Headers (a repeated header's values joined by ", ") with secret values replaced."""
    return {k: REDACTED if k.lower() in SECRET_HEADERS else redact_text(v) for k, v in headers.items()}


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return redact_text(url)
    query = [(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, True)]
    return redact_text(urlunsplit(parts._replace(query=urlencode(query, safe="<>"))))


def safe_message(text: str | None, limit: int) -> str | None:
    """An error message for a log line, a ledger row or mitmweb: redacted (an upstream or OAuth error may
    echo a token) and cut at `limit` characters (only the kept part is scanned)."""
    if not text:
        return text
    cut = len(text) > limit
    text = redact_text(text[:limit + 64])[:limit - 1 if cut else limit]  # 64: a secret across the cut still matches
    return text + "…" if cut else text


# A secret header's value in raw HTTP/1 text, also as mitmproxy's protocol debug prints it (the bytes'
# repr: a line ends in the four characters \r\n, and a chunk may begin with a header right after b'),
# and in HTTP/2 header pairs as Python prints them: (b'authorization', b'Bearer …'). Only at a line's
# start: a message that names the header ("send Authorization: Bearer KEY") is left as it is.
_NAMES = "|".join(re.escape(h) for h in sorted(SECRET_HEADERS, key=len, reverse=True))
SECRET_HEADER_LINE = re.compile(rf"(?im)(?:^|(?<=\\n)|(?<=b['\"]))((?:{_NAMES})[ \t]*:[ \t]*)((?:[^\r\n\\]|\\(?![rn]))+)")
SECRET_HEADER_PAIR = re.compile(rf"(?i)(b?['\"](?:{_NAMES})['\"],\s*b?['\"])([^'\"]*)")


def redact_log(text: str) -> str:
    """A log line with credentials out: secret headers' values (raw, repr'd bytes, HTTP/2 pairs), then
    what `redact_text` finds anywhere (Bearer tokens, sk- keys, JSON secrets)."""
    text = SECRET_HEADER_LINE.sub(lambda m: m.group(1) + REDACTED, text)
    text = SECRET_HEADER_PAIR.sub(lambda m: m.group(1) + REDACTED, text)
    return redact_text(text)


@functools.lru_cache(maxsize=64)  # an account's headers, the same on every request: recorded once (~18k instr.)
def shown_headers(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """An upstream request's headers as the exchange record shows them: the credential never, whatever header an
    upstream carries it in."""
    return {k: _hidden(k) or v for k, v in headers}


@functools.lru_cache(maxsize=256)  # the same few header names on every request
def _hidden(name: str) -> str | None:
    """What the record shows instead of a header's value (None: the value)."""
    low = name.lower()
    if low == "authorization":
        return f"Bearer {REDACTED}"
    return REDACTED if low in SECRET_HEADERS else None
