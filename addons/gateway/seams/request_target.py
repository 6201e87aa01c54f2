"""A request's scheme, host and port set in one write, its Host header (and authority) kept as they were.

Why: a claimed flow is shown with the URL its client addressed once answered (ingress/claim.show_as_called), and a
stream is pointed at the relay (ingress/claim.point_at_relay). mitmproxy's setters (`Request.scheme`, `.host`,
`.port`, then `.host_header` put back) each rewrite the Host header: four multidict passes per request. For an
HTTP/1 request without an authority and with at most one Host header, what they end in is the three fields of
`Request.data` written at once (tests/unit/seams/test_request_target.py compares the flow's whole state either
way, over HTTP/1, 2 and 3, with and without an authority and Host headers). That reproduces the setters' code,
so it is right only for it: on any other code the setters are used, and only the speed is lost.

What mitmproxy change would remove it: a setter for the request target that keeps the Host header
(`Request.set_target(scheme, host, port)`), or setters that do not rewrite a Host header they then restore.
"""

from __future__ import annotations

from mitmproxy import http

from .fingerprint import WrittenAgainst

WRITTEN = WrittenAgainst(
    seam="a request's URL set in one write",
    loses="mitmproxy's setters set it (the same URL and Host header, four Host-header rewrites more per request)",
    code=(("mitmproxy.http:Request.scheme.fset", "cf10dc42a888bc19"),
          ("mitmproxy.http:Request.host.fset", "3749dd5a4ee517e8"),
          ("mitmproxy.http:Request.port.fset", "d221b67f5fab9254"),
          ("mitmproxy.http:Request._update_host_and_authority", "e75fe6d44e650729"),
          ("mitmproxy.http:Request.host_header.fget", "7ebac0e45580e45d"),
          ("mitmproxy.http:Request.host_header.fset", "db768b07e6221dd3")))

_fits: bool | None = None  # WRITTEN.fits(), asked once per process (it reads mitmproxy's source)


def one_write() -> bool:
    global _fits
    if _fits is None:
        _fits = WRITTEN.fits()
    return _fits


def set_target(req: http.Request, scheme: str, host: str, port: int) -> None:
    data = req.data
    if (data.authority or req.is_http2 or req.is_http3 or _host_fields(data.headers.fields) > 1
            or not one_write()):
        shown = req.host_header  # mitmproxy's setters: the Host header and the authority kept as they were
        req.scheme, req.host, req.port = scheme, host, port
        req.host_header = shown
        return
    data.scheme, data.host, data.port = scheme.encode("utf-8", "surrogateescape"), host, port


def _host_fields(fields: tuple[tuple[bytes, bytes], ...]) -> int:
    return sum(1 for name, _ in fields if name.lower() == b"host")
