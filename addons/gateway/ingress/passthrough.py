"""Flows the gateway does not answer (explicit or transparent proxy, a host it does not claim): refused
when client keys make the proxy no open relay, else passed on — and never a client key in their record.

- Refused: every credential header is dropped before any other addon sees the flow (nothing is sent).
- Passed on: a credential that is one of the gateway's own client keys is dropped (it is for the gateway,
  never for another host); the host's own credentials go to it, and are redacted in the flow as soon as
  the answer starts (`seal`, from `responseheaders` and `error`), before `-w` writes it. mitmweb shows a
  flow in flight as it is: a passed-on request's own credentials are visible there until its answer.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from ..local_answers import error_response
from .access import CREDENTIAL_HEADERS, KEY_PARAMS, PASSTHROUGH_REFUSED, redact_query

REDACTED = b"<redacted>"


def refuse(flow: http.HTTPFlow) -> None:
    _drop(flow.request, lambda value: True)
    _redact_url(flow.request, lambda name, value: name in KEY_PARAMS)
    flow.response = error_response(PASSTHROUGH_REFUSED)


def pass_on(flow: http.HTTPFlow, own_key: Callable[[bytes], bool]) -> None:
    _drop(flow.request, lambda value: own_key(_presented(value)))
    _redact_url(flow.request, lambda name, value: own_key(value))  # the gateway's own key never leaves


def seal(flow: http.HTTPFlow) -> None:
    """The request's credentials redacted in the record (they were sent, or never will be): headers, and a key
    the URL names (the host's own `?key=`, sent to it)."""
    _redact_url(flow.request, lambda name, value: name in KEY_PARAMS)
    fields = flow.request.headers.fields
    if any(name.lower() in CREDENTIAL_HEADERS and value != REDACTED for name, value in fields):
        flow.request.headers.fields = tuple((name, REDACTED if name.lower() in CREDENTIAL_HEADERS else value)
                                            for name, value in fields)


def _drop(req: http.Request, which: Callable[[bytes], bool]) -> None:
    fields = req.headers.fields
    if any(name.lower() in CREDENTIAL_HEADERS for name, _ in fields):
        req.headers.fields = tuple((n, v) for n, v in fields if not (n.lower() in CREDENTIAL_HEADERS and which(v)))


def _redact_url(req: http.Request, is_key: Callable[[str, bytes], bool]) -> None:
    path = req.path
    if "?" in path and (redacted := redact_query(path, is_key)) is not None:
        req.path = redacted


def _presented(value: bytes) -> bytes:
    """The key in an Authorization (`Bearer KEY`) or x-api-key value."""
    return value[7:].strip() if value[:7].lower() == b"bearer " else value.strip()
