"""The usual ways of pointing a client at the gateway wrongly, recognised at the entrance: each is answered with
what to type instead, or simply works.

- A base-URL client at the explicit proxy. `mitmdump -s addons/qwen.py` (regular mode) answers requests sent
  *through* it to api.openai.com or api.anthropic.com. A client given `OPENAI_BASE_URL=http://127.0.0.1:8080/v1`
  sends `POST /v1/chat/completions` *to* it: mitmproxy takes the destination from the Host header, which names
  the proxy itself, refuses to connect to itself and answers a bare 502 HTML page (which SDKs retry). The
  gateway claims such a request (`to_this_listener`) and answers in the client's dialect how to start it in
  reverse mode, or to use HTTPS_PROXY; its own /health and /metrics are answered as in reverse mode.
- `ANTHROPIC_BASE_URL=http://127.0.0.1:8080/v1`: Claude Code and the anthropic SDKs append `/v1/messages` to
  the base themselves, so `/v1/v1/messages` arrives. A doubled `/v1` is routed as one (`undoubled`), for
  both dialects: the client meant the one endpoint there is.
- `https://` on the reverse-mode listener, which speaks plain HTTP: mitmproxy starts TLS with its own
  certificate, which the client does not trust, and says only that. `https_on_plain_listener` is the line
  the gateway logs then, naming the URL to use.
- `HTTPS_PROXY` pointed at the reverse-mode listener: the client sends `CONNECT api.openai.com:443`, which
  mitmproxy refuses itself in reverse mode (400, before any hook could answer; a CONNECT's answer is a status
  line, which most clients do not even show). `proxy_at_reverse_line` is the line the gateway logs then, once
  an hour per listener, naming the two ways that work.
"""

from __future__ import annotations

import logging

from mitmproxy import http
from mitmproxy.proxy import mode_specs

from .. import dialects
from ..errors import MITMPROXY_REFUSED, GatewayError
from ..log_tally import Once

log = logging.getLogger("qwen")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ANSWERED_FOR_ITSELF = frozenset({"health", "liveness", "readiness", "metrics"})  # monitoring, not an API call
REVERSE_COMMAND = "mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai -p {port}"


def to_this_listener(flow: http.HTTPFlow) -> bool:
    """A request in a proxy mode (regular, upstream) whose destination is the listener it arrived on: the
    client was given the proxy's address as its API base. (Transparent mode takes the destination from the
    connection, never from the Host header; reverse mode claims every request anyway.)"""
    client = flow.client_conn
    if not isinstance(client.proxy_mode, (mode_specs.RegularMode, mode_specs.UpstreamMode)):
        return False
    if flow.request.method == "CONNECT" or client.tls_established or not isinstance(client.sockname, tuple):
        return False
    host, port = client.sockname[0], client.sockname[1]
    req = flow.request
    return req.port == port and (req.host in LOOPBACK_NAMES or req.host == host)


def explicit_proxy_refusal(dialect: str, port: int) -> GatewayError:
    """What a base-URL client at the explicit proxy is told: the two ways that work, typed out."""
    record = dialects.of(dialect)
    base = record.base_url_env
    url = f"http://127.0.0.1:{port}{record.base_path}"
    return GatewayError(
        400, f"This Qwen gateway runs as an explicit proxy (mitmproxy's regular mode): it answers requests sent "
             f"through it to api.openai.com and api.anthropic.com, not requests addressed to it. For {base}={url}, "
             f"restart it in reverse mode: `.venv/bin/qwen-gateway -p {port}` (that is `{REVERSE_COMMAND.format(port=port)}`). "
             f"Or keep it and unset {base}: send the client through it with HTTPS_PROXY=http://127.0.0.1:{port} and "
             "mitmproxy's CA trusted (docs/clients.md).", code="explicit_proxy_mode")


def refusal(flow: http.HTTPFlow, route: str, dialect: str) -> GatewayError | None:
    """A claimed request's mistake that the gateway answers instead of serving (None: no mistake)."""
    if route in ANSWERED_FOR_ITSELF or not to_this_listener(flow):
        return None
    return explicit_proxy_refusal(dialect, flow.client_conn.sockname[1])


def undoubled(path: str) -> str:
    """`/v1/v1/messages` → `/v1/messages` (a base URL that already ended in /v1); anything else unchanged."""
    return path[3:] if path.startswith("/v1/v1/") else path


def refused_by_mitmproxy(flow: http.HTTPFlow, once: Once) -> None:
    """`requestheaders` with the error already set: mitmproxy refused the request (its validation) and answers 400
    itself. The request line says so; a CONNECT on a reverse-mode listener gets its line, once an hour per
    listener."""
    flow.metadata[MITMPROXY_REFUSED] = 400
    line = proxy_at_reverse_line(flow)
    if line and once.due(f"CONNECT at {flow.client_conn.sockname}"):
        log.warning(line)


def proxy_at_reverse_line(flow: http.HTTPFlow) -> str | None:
    """The line for a CONNECT that reached a reverse-mode listener (None: not one)."""
    client = flow.client_conn
    if flow.request.method != "CONNECT" or not isinstance(client.proxy_mode, mode_specs.ReverseMode):
        return None
    if not isinstance(client.sockname, tuple) or len(client.sockname) < 2:
        return None
    port = client.sockname[1]
    return (f"qwen: a client uses this gateway as its HTTPS_PROXY (CONNECT {flow.request.host}:{flow.request.port}),"
            f" but this listener is a reverse proxy, which mitmproxy refuses CONNECT on (400). Either give the client "
            f"http://127.0.0.1:{port}/v1 as its base URL (OPENAI_BASE_URL; ANTHROPIC_BASE_URL=http://127.0.0.1:{port})"
            " and unset HTTPS_PROXY, or run the gateway as the explicit proxy: `mitmdump -s addons/qwen.py` (regular "
            "mode), with mitmproxy's CA trusted (docs/clients.md)")


def https_on_plain_listener(client) -> None:
    """A client's TLS handshake failed on a reverse-mode listener (plain HTTP): one line says what to use."""
    line = plain_listener_line(client.sockname) if isinstance(client.proxy_mode, mode_specs.ReverseMode) else None
    if line:
        log.warning(line)


def plain_listener_line(sockname) -> str | None:
    """The line to log when a client's TLS handshake failed on a reverse-mode listener (None: not a listener
    the gateway knows as plain HTTP)."""
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return None
    host = sockname[0] if ":" not in str(sockname[0]) else f"[{sockname[0]}]"
    return (f"qwen: a client called https://{host}:{sockname[1]}, but the gateway's listener speaks plain HTTP "
            f"(no certificate needed on loopback): use http://{host}:{sockname[1]}/v1 as the base URL "
            f"(ANTHROPIC_BASE_URL: http://{host}:{sockname[1]})")
