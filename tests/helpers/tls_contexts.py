"""One TLS context for the tests' httpx clients of the same settings, made once per process.

httpx makes a new `ssl.SSLContext` for every client it builds (`httpx.get(...)`, `httpx.Client()`, the openai and
anthropic SDKs' clients), loading certifi's ~150 certificates: 46 ms of CPU on this machine, for a client whose
request then takes ~1 ms. The tests build thousands — one per `httpx.get` while they poll a gateway's /health — on
the two cores the gateways they test run on. The contexts made here are the ones httpx would make (the same call,
the same verification), kept by what decides them: `verify`, `trust_env` and the SSL_CERT_FILE / SSL_CERT_DIR a
trusting client reads. A context given by the test (`verify=ctx`), or with a client certificate, is httpx's own
business, as before. No test client speaks HTTP/2, whose connections would set the shared context's ALPN to
another list (httpcore sets it per connection)."""

from __future__ import annotations

import os
import ssl

import httpx._transports.default as transports

_made: dict[tuple, ssl.SSLContext] = {}
_httpx_own = transports.create_ssl_context


def shared_context(verify=True, cert=None, trust_env: bool = True) -> ssl.SSLContext:
    if cert is not None or not isinstance(verify, bool):
        return _httpx_own(verify=verify, cert=cert, trust_env=trust_env)
    key = (verify, trust_env and os.environ.get("SSL_CERT_FILE"), trust_env and os.environ.get("SSL_CERT_DIR"))
    if key not in _made:
        _made[key] = _httpx_own(verify=verify, cert=None, trust_env=trust_env)
    return _made[key]


def install() -> None:
    """From now on, this process's httpx clients share their contexts."""
    transports.create_ssl_context = shared_context
