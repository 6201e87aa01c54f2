"""The answer to a request head over qwen_max_header_kb, in the client's format (the head is bounded inside
mitmproxy's HTTP/1 reader: seams/http1_heads.py). The client's dialect is read from the head's first bytes:
its request line and the headers that came, as routing reads a whole head."""

from __future__ import annotations

import re

from mitmproxy import http

from ..errors import GatewayError
from ..exchange import ClientRequest, Exchange
from ..local_answers import Formats
from . import routing


def answer(head: bytes, e: GatewayError, endpoints: dict, formats: Formats) -> http.Response:
    """`e` answered to the client whose request head starts with `head`, in that client's format: what its
    request line and the headers read so far say (a request line that does not parse: OpenAI's)."""
    method, path, host, anthropic = first_lines(head)
    ex = Exchange(ClientRequest(method, path, host + path))
    route = routing.route(method, path, endpoints)
    ex.route, ex.endpoint = route.name, route.endpoint
    ex.dialect = routing.dialect(route, host, anthropic)
    return formats.error(e, ex)


def first_lines(head: bytes) -> tuple[str, str, str, bool]:
    """(method, path without query, host, whether an anthropic-version header came) from a head's first bytes;
    the request line may be in origin form (/v1/…) or absolute form (http://host/v1/…, the explicit proxy)."""
    request_line, _, rest = head.partition(b"\n")
    parts = request_line.decode("latin-1").split()
    method, target = (parts[0].upper(), parts[1]) if len(parts) >= 2 else ("GET", "/")
    host = ""
    if "://" in target:
        host, _, target = target.split("://", 1)[1].partition("/")
        target = "/" + target
    path = target.split("?", 1)[0] or "/"
    lowered = rest.lower()
    if not host and (m := re.search(rb"(?:^|\n)host:[ \t]*([^\r\n]*)\r?\n", lowered)):
        host = m.group(1).decode("latin-1").strip()
    return method, path, host, re.search(rb"(?:^|\n)anthropic-version:", lowered) is not None
