"""The upstream engine: the gateway's own warm connections to Qwen, and every upstream call.

mitmproxy keeps server connections per client connection, so a client that opens a new connection per
request (CLI tools, scripts) paid a new TCP (and TLS) handshake to Qwen each time, and a request had to
carry its credential inside the flow, where mitmweb and `-w` could see it. The engine owns one pooled
httpx client instead (HTTP/2 where the upstream offers it; idle connections kept `qwen_upstream_keepalive`
seconds), injects the credential itself, and performs refresh / rotation / throttling retries before the
first byte reaches the client. Callers get a streaming `httpx.Response` whose status is final.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx

from . import errors
from .endpoints import qwen_body
from .errors import GatewayError
from .exchange import REDACTED, Exchange, Retry, RetryReason
from .config import Config
from .retry import RetryPolicy
from .upstream import host_header, upstream_headers, upstream_url

log = logging.getLogger("qwen")

CONNECT_TIMEOUT = 10.0
# A pooled connection the server closed while idle shows up as one of these when reused.
_DEAD_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class UpstreamEngine:
    def __init__(self, policy: RetryPolicy, config: Config,
                 on_upstream_request: Callable[[Exchange], None] = lambda ex: None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self.config = config
        self.on_upstream_request = on_upstream_request
        self.transport = transport  # tests hand in httpx.MockTransport
        self.client = self._client(config)

    def _client(self, config: Config) -> httpx.AsyncClient:
        keepalive = config.upstream_keepalive
        return httpx.AsyncClient(
            http2=True, trust_env=False, follow_redirects=False, transport=self.transport,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64 if keepalive else 0,
                                keepalive_expiry=keepalive or None),
            timeout=httpx.Timeout(config.upstream_timeout or None, connect=CONNECT_TIMEOUT))

    def reconfigure(self, config: Config) -> httpx.AsyncClient | None:
        """New options; returns the old client when the pool had to be rebuilt (the caller closes it)."""
        old, self.config = self.config, config
        if old.upstream_keepalive == config.upstream_keepalive and old.upstream_timeout == config.upstream_timeout:
            return None
        client, self.client = self.client, self._client(config)
        return client

    async def aclose(self) -> None:
        await self.client.aclose()

    async def open(self, ex: Exchange) -> httpx.Response:
        """Send the exchange to Qwen; return the answer with its headers read and its body still streaming.
        Raises GatewayError (in OpenAI's format) when no attempt succeeds."""
        await self.policy.acquire(ex)
        reconnected = False
        while True:
            request = self._request(ex)
            try:
                resp = await self.client.send(request, stream=True)
            except _DEAD_CONNECTION as e:
                if reconnected:
                    raise GatewayError(502, f"Qwen closed the connection: {type(e).__name__}.",
                                       code="upstream_connection_error") from e
                reconnected = True
                ex.retries.append(Retry(RetryReason.RECONNECTED, ex.account))
                continue
            except httpx.TimeoutException as e:
                raise GatewayError(504, "Qwen did not answer in time (qwen_upstream_timeout)." if isinstance(
                    e, httpx.ReadTimeout) else "Qwen could not be reached in time.", code="upstream_timeout") from e
            except httpx.HTTPError as e:
                raise GatewayError(502, f"Qwen could not be reached: {type(e).__name__}.",
                                   code="upstream_unreachable") from e
            ex.upstream_status = resp.status_code
            ex.upstream_response_headers = dict(resp.headers)
            if resp.status_code < 400:
                return resp
            try:
                body = await resp.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await resp.aclose()
            ex.upstream_response_body = body
            await self.policy.recover(ex, errors.classify(resp.status_code, body, dict(resp.headers)))

    def _request(self, ex: Exchange) -> httpx.Request:
        cred = ex.cred
        assert cred is not None and ex.endpoint is not None
        config = self.config
        ex.upstream_body = qwen_body(ex, cred, config.models)
        scheme, host, port, path = upstream_url(cred, ex.endpoint.upstream_suffix)
        url = f"{scheme}://{host_header(scheme, host, port)}{path}"
        headers = upstream_headers(cred, user_agent=config.user_agent, stream=ex.stream,
                                   host=host_header(scheme, host, port))
        headers = [(k, str(len(ex.retries)) if k == "X-Stainless-Retry-Count" else v) for k, v in headers]
        ex.upstream_url = url
        ex.upstream_headers = {k: (f"Bearer {REDACTED}" if k.lower() == "authorization" else v) for k, v in headers}
        self.on_upstream_request(ex)
        # A stream may pause between events for as long as the idle limit; a whole answer for the full timeout.
        total = config.upstream_timeout or None
        read = (config.stream_idle_timeout or None) if ex.stream else total
        return self.client.build_request(
            "POST", url, headers=headers, content=json.dumps(ex.upstream_body, ensure_ascii=False).encode(),
            timeout=httpx.Timeout(total, connect=CONNECT_TIMEOUT, read=read))
