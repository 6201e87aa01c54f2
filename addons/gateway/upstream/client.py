"""A small HTTP/1.1 client with a keep-alive pool, for the engine's calls to Qwen.

Why not httpx: measured on this project's benchmark machine, one httpx request costs 0.74 ms of CPU
(0.71 ms with http2=True), the same exchange over a plain asyncio stream 0.09 ms — and every request of
the gateway pays it. The gateway needs only a narrow slice of HTTP: POST a JSON body, read a status,
headers and a body that is either Content-Length framed, chunked (streams) or ends with the connection.
That slice is this module: connections per origin kept warm for `keepalive` seconds, TLS verified with
the roots `settings/network.py` chooses (certifi's by default, as httpx does), a connection that died while idle
detected at checkout or, failing that, reported as `DeadConnection` so the caller can retry once.

Through a proxy (settings/network.py chooses it) every pooled connection is a CONNECT tunnel opened once, then
TLS to the origin inside it: the tunnel stays warm with the connection, so N requests cost one CONNECT.
Plain-http origins (the emulator on loopback) are tunnelled too rather than sent in absolute-form: one
code path, one pool keyed by origin, and keep-alive that is the origin's own, not the proxy's.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

# The transport failures are the core's (errors.py): the relay and the WebSocket server catch them too.
from ..errors import ConnectionFailed, DeadConnection, NoConnection, Unreachable, UpstreamTimeout
from ..settings.network import Network, Proxy
from .chunked import ChunkedDecoder
from .deadline import Deadline

MAX_HEAD = 64 * 1024


class ProxyRefused(ConnectionFailed):
    """The proxy answered CONNECT with something else than 2xx (407, 403, 502…): its answer, no credential."""


class UntrustedCertificate(ConnectionFailed):
    """The origin's certificate did not verify (a TLS-inspecting proxy whose CA is not trusted, typically)."""


class _Conn:
    def __init__(self, origin: tuple[str, str, int], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def usable(self, keepalive: float) -> bool:
        return (not self.reader.at_eof() and not self.writer.is_closing()
                and time.monotonic() - self.idle_since < keepalive)

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """Status and headers read; the body is read with `aiter_raw()` or `aread()`, then `aclose()`."""

    def __init__(self, client: UpstreamClient, conn: _Conn, status: int, headers: dict[str, str],
                 read_timeout: float | None, deadline: Deadline | None = None) -> None:
        self._client = client
        self._conn: _Conn | None = conn
        self.status_code = status
        self.headers = headers
        self._read_timeout = read_timeout
        self._deadline = deadline or Deadline(read_timeout)  # the head's timer goes on for the body's reads
        self._done = False
        te = headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in te
        length = headers.get("content-length")
        self._remaining = int(length) if length and length.isdigit() and not self._chunked else None
        self._reusable = headers.get("connection", "").lower() != "close" and (self._chunked or
                                                                                self._remaining is not None)

    async def _read(self, coro):
        deadline = self._deadline
        deadline.start(self._read_timeout)
        try:
            data = await coro
        except asyncio.CancelledError:
            if deadline.stop():
                raise UpstreamTimeout(f"no data for {self._read_timeout:g} s") from None
            raise
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            deadline.stop()
            raise ConnectionFailed(f"the connection broke: {type(e).__name__}") from e
        deadline.stop()
        return data

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked framing removed)."""
        conn = self._conn
        if conn is None or self._done:
            return
        reader = conn.reader
        if self._chunked:
            decoder = ChunkedDecoder()
            while not decoder.done:
                data = await self._read(reader.read(65536))
                if not data:
                    raise ConnectionFailed("the connection closed before the body was complete")
                try:
                    body = decoder.feed(data)
                except ValueError as e:
                    raise ConnectionFailed(f"the answer's chunked body is broken: {e}") from e
                if body:
                    yield body
            if decoder.leftover:  # more than one answer: the connection's state is unknown
                self._reusable = False
        elif self._remaining is not None:
            while self._remaining > 0:
                data = await self._read(reader.read(min(self._remaining, 65536)))
                if not data:
                    raise ConnectionFailed("the connection closed before the body was complete")
                self._remaining -= len(data)
                yield data
        else:
            while data := await self._read(reader.read(65536)):
                yield data
        self._done = True

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        self._deadline.close()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._reusable:
            self._client._release(conn)
        else:
            conn.close()


class UpstreamClient:
    def __init__(self, *, keepalive: float, connect_timeout: float = 10.0, max_idle_per_origin: int = 64,
                 network: Network | None = None) -> None:
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle_per_origin
        self.network = network or Network()
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self.connections_opened = 0

    async def send(self, url: str, headers: list[tuple[str, str]], body: bytes, *,
                   head_timeout: float | None, read_timeout: float | None, method: str = "POST") -> UpstreamResponse:
        """POST `body` (or GET, without one: a catalogue); returns once the status and headers are read
        (within `head_timeout`)."""
        origin, target = _where(url)
        length = f"content-length: {len(body)}\r\n" if method != "GET" else ""
        request = f"{method} {target} HTTP/1.1\r\n{_fields(tuple(headers))}{length}\r\n".encode() + body
        conn, reused = await self._checkout(origin)
        limits = [t for t in (head_timeout, read_timeout) if t is not None]
        deadline = Deadline(min(limits) if limits else None)  # one timer for the head and every read
        expired = False
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            deadline.start(head_timeout)
            try:
                status, fields = await self._head(conn.reader)
            finally:
                expired = deadline.stop()
        except asyncio.CancelledError:  # the head's deadline, or the client left: Qwen sees the request end now
            conn.close()
            deadline.close()
            if expired:
                raise UpstreamTimeout(f"no answer within {head_timeout:g} s") from None
            raise
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            conn.close()
            deadline.close()
            if reused:
                raise DeadConnection(type(e).__name__) from e
            raise ConnectionFailed(f"the connection broke: {type(e).__name__}") from e
        except (ValueError, asyncio.LimitOverrunError) as e:
            conn.close()
            deadline.close()
            raise ConnectionFailed("the answer is not HTTP/1.1") from e
        return UpstreamResponse(self, conn, status, fields, read_timeout, deadline)

    @staticmethod
    async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        while True:
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            if not version.startswith("HTTP/"):
                raise ValueError("not an HTTP answer")
            status = int(rest[:3])
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real answer follows
            fields: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    key = name.strip().lower()
                    fields[key] = f"{fields[key]}, {value.strip()}" if key in fields else value.strip()
            return status, fields

    async def _checkout(self, origin: tuple[str, str, int]) -> tuple[_Conn, bool]:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable(self.keepalive):
                return conn, True
            conn.close()
        scheme, host, port = origin
        proxy = self.network.proxy_for(scheme, host, port)
        try:
            reader, writer = await asyncio.wait_for(self._connect(scheme, host, port, proxy), self.connect_timeout)
        except asyncio.TimeoutError as e:
            via = f" through the proxy {proxy.shown}" if proxy else ""
            raise NoConnection(f"no connection{via} within {self.connect_timeout:g} s") from e
        except ssl.SSLCertVerificationError as e:
            raise UntrustedCertificate(
                f"the TLS certificate of {host} is not trusted ({e.verify_message}); behind a TLS-inspecting "
                "proxy or firewall, trust its CA with SSL_CERT_FILE or ssl_verify_upstream_trusted_ca") from e
        except ssl.SSLError as e:
            raise ConnectionFailed(f"TLS with {host} failed: {e.reason or type(e).__name__}") from e
        except OSError as e:
            what = f"the proxy {proxy.shown}" if proxy else f"{host}:{port}"
            raise Unreachable(f"cannot connect to {what}: {e.strerror or type(e).__name__}") from e
        self.connections_opened += 1
        return _Conn(origin, reader, writer), False

    async def _connect(self, scheme: str, host: str, port: int, proxy: Proxy | None
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls = self.network.ssl_context() if scheme == "https" else None
        if proxy is None:
            return await asyncio.open_connection(host, port, ssl=tls, limit=MAX_HEAD,
                                                 server_hostname=host if tls else None)
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port, limit=MAX_HEAD)
        try:
            await _tunnel(reader, writer, proxy, host, port)
            if tls is not None:
                await writer.start_tls(tls, server_hostname=host)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    def _release(self, conn: _Conn) -> None:
        if self.keepalive <= 0:
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def _tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: Proxy, host: str,
                  port: int) -> None:
    """CONNECT host:port through the proxy; returns when the tunnel is open, raises ProxyRefused if not."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        head.append(f"Proxy-Authorization: {proxy.authorization}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    await writer.drain()
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        raise ProxyRefused(f"the proxy {proxy.shown} closed the connection instead of answering CONNECT") from e
    except asyncio.LimitOverrunError as e:
        raise ProxyRefused(f"the proxy {proxy.shown} answered CONNECT with an oversized head") from e
    version, _, rest = raw.decode("latin-1").split("\r\n", 1)[0].partition(" ")
    status, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not status.isdigit():
        raise ProxyRefused(f"the proxy {proxy.shown} did not answer CONNECT in HTTP")
    if not 200 <= int(status) < 300:
        # The proxy's own words, short and printable: they name why (407 needs credentials, 403 a policy).
        said = "".join(c for c in reason if c.isprintable())[:80]
        raise ProxyRefused(f"the proxy {proxy.shown} answered CONNECT {authority} with {status} {said}".rstrip())


@functools.lru_cache(maxsize=64)  # an account's headers, the same on every request: formatted once (~30k instr.)
def _fields(headers: tuple[tuple[str, str], ...]) -> str:  # each line CRLF-ended; the framing's own left out
    return "".join([f"{k}: {v}\r\n" for k, v in headers if k.lower() not in ("content-length", "connection")])


@functools.lru_cache(maxsize=64)  # every request goes to one of a few URLs
def _where(url: str) -> tuple[tuple[str, str, int], str]:
    """The origin (scheme, host, port) and the request target of `url`."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.scheme, parts.hostname or "", port), parts.path + (f"?{parts.query}" if parts.query else "")
