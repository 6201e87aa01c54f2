"""What the gateway does to a flow it claims: opens its one record, the `Exchange` (the client's request as
it arrived, its route and dialect) and drops the client's key from the flow, wherever the client put it
(ingress/access.py); points a stream at the relay, the only server a claimed flow may reach (connection_policy.py). And
whether it lets other flows pass."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from mitmproxy import connection, http
from mitmproxy.net.http import url
from mitmproxy.proxy import mode_specs

from ..settings.config import Config
from ..exchange import Attempt, ClientRequest, Exchange
from ..providers import Upstream
from . import access, routing


def open_exchange(flow: http.HTTPFlow, head: access.Head, without_key: tuple[tuple[bytes, bytes], ...] | None,
                  endpoints: dict, upstream: Upstream) -> Exchange:
    """`without_key`: the request's headers without the client's key (None: it sent none);
    `upstream`: the default one, until the engine chooses the account (and its upstream)."""
    req = flow.request
    # the client's own key (in explicit-proxy mode: the user's real OpenAI key) is never kept on the flow:
    # a key parameter's value out of the URL before the record takes the URL, the key's headers below
    if head.path_without_key is not None:
        req.path = head.path_without_key
    method, path = req.method.upper(), req.path.split("?", 1)[0]
    called = as_called(flow, head.host or "")
    ex = Exchange(ClientRequest(method, path, _url(flow, head, called), key_hint(head.key.decode("utf-8", "replace")),
                                api_headers=head.api_headers, user_agent=head.user_agent),
                  attempt=Attempt(upstream=upstream))  # the default upstream, until the engine chooses the account
    ex.client.called = called
    route = routing.route(method, path, endpoints)
    ex.route, ex.endpoint = route.name, route.endpoint
    ex.dialect = routing.dialect(route, head.host or req.host, head.anthropic)
    if without_key is not None:
        req.headers.fields = without_key
    if flow.is_replay == "request":
        ex.notes.append("replayed")
    return ex


def drop_keys_from_url(flow: http.HTTPFlow, ex: Exchange, head: access.Head,
                       is_key: Callable[[bytes], bool]) -> bool:
    """Query parameters whose value `is_key` (one of the gateway's keys, whatever the parameter's name):
    redacted in the flow and the record, as `open_exchange` does with those named as keys. Whether any was."""
    req = flow.request
    path = access.redact_query(req.path, lambda _, value: is_key(value)) if "?" in req.path else None
    if path is None:
        return False
    req.path = path
    ex.client = dataclasses.replace(ex.client, url=_url(flow, head, ex.client.called or as_called(flow, head.host or "")))
    return True


def _url(flow: http.HTTPFlow, head: access.Head, called: tuple[str, str, int]) -> str:
    """The URL as the client addressed it (mitmproxy's pretty_url re-parses and validates the Host header)."""
    return f"{called[0]}://{head.host}{flow.request.path}" if head.host else flow.request.pretty_url


def as_called(flow: http.HTTPFlow, host_header: str) -> tuple[str, str, int]:
    """The scheme, host and port the client addressed. In reverse mode the request arrives with the reverse
    target's (`https://portal.qwen.ai:443`, a label): the client's are its connection's and its Host header's
    (`http://127.0.0.1:8080`). In the other modes the request's own are the client's."""
    req, client = flow.request, flow.client_conn
    if not isinstance(client.proxy_mode, mode_specs.ReverseMode):
        return req.scheme, req.host, req.port
    scheme = "https" if client.tls_established else "http"
    listener = client.sockname if isinstance(client.sockname, tuple) else ("127.0.0.1", 0)
    named = _authority(host_header) if host_header else None
    host, port = named if named is not None else (listener[0], listener[1])
    return scheme, host, port if port is not None else listener[1]


@functools.lru_cache(maxsize=256)  # asked per request about the same few Host headers
def _authority(host_header: str) -> tuple[str, int | None] | None:
    """The host and port a Host header names (mitmproxy's strict parse), None when it names none."""
    try:
        return url.parse_authority(host_header, check=True)
    except ValueError:
        return None


def show_as_called(flow: http.HTTPFlow, ex: Exchange) -> None:
    """Once the answer has arrived: the request's scheme, host and port back to what the client addressed, so
    mitmweb's Path column (and a flow file) shows the client's URL, not the reverse target's label or the
    relay's in-process address. A replay is claimed again by the gateway before it connects anywhere."""
    called = ex.client.called
    if called is not None:
        set_target(flow.request, *called)


def point_at_relay(flow: http.HTTPFlow, address: tuple[str, int], token: str, token_header: str) -> None:
    """mitmproxy then streams the relay's answer like any server's; mitmweb's list still shows the host the
    client addressed."""
    req = flow.request
    set_target(req, "http", *address)
    req.headers[token_header] = token
    flow.server_conn = connection.Server(address=address)  # direct: not via --mode upstream's proxy


def set_target(req: http.Request, scheme: str, host: str, port: int) -> None:
    """The request's scheme, host and port, its Host header and authority kept as the client sent them. Written
    to the request's data: mitmproxy's setters would rewrite the Host header each (and it would be put back),
    ~100 calls of header work a request for nothing the client or mitmweb sees."""
    data = req.data
    data.scheme, data.host, data.port = scheme.encode("ascii"), host, port


def no_passthrough(config: Config, named_keys: bool = False) -> bool:
    """With client keys (flat or named), flows for other hosts are refused: the proxy is no open relay for
    whoever holds no key (qwen_allow_passthrough lifts this)."""
    return (bool(config.client_keys) or named_keys) and not config.allow_passthrough


def key_hint(key: str) -> str | None:
    """A client key as a hint: its first three characters and its length. None for a key of 8 characters or
    fewer: a placeholder (`x`, `anything`) whose length says nothing and whose first three characters would
    give most of it away."""
    if len(key) <= 8:
        return None
    return f"{key[:3]}… ({len(key)} chars)"
