"""The engine's HTTP/1.1 client (upstream/client.py): the request it writes, and the URL of a request read once
per URL, not for every request sent to it."""

from __future__ import annotations

import asyncio

from qwen_gateway.upstream import client as upstream_client
from qwen_gateway.upstream.client import UpstreamClient

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


async def _serve(heads: list[bytes]) -> asyncio.Server:
    """Answers every request of a connection with ANSWER, keeping what each request sent."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                size = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                heads.append(head + await reader.readexactly(size))
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_requests_to_one_url_split_it_once(monkeypatch):
    splits = []
    real = upstream_client.urlsplit
    monkeypatch.setattr(upstream_client, "urlsplit", lambda url: splits.append(url) or real(url))
    heads: list[bytes] = []
    server = await _serve(heads)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/chat/completions?once=1"
    client = UpstreamClient(keepalive=60)
    try:
        for _ in range(3):
            resp = await client.send(url, [("Host", f"127.0.0.1:{port}"), ("Content-Length", "9"), ("X-A", "b")],
                                     b'{"a": 1}', head_timeout=5, read_timeout=5)
            assert resp.status_code == 200 and await resp.aread() == b"{}"
            await resp.aclose()
    finally:
        await client.aclose()
        server.close()
    assert heads == [b"POST /v1/chat/completions?once=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-A: b\r\n"
                     b"content-length: 8\r\n\r\n{\"a\": 1}" % port] * 3
    assert splits == [url] and client.connections_opened == 1


async def test_an_accounts_headers_are_written_once(monkeypatch):
    """The same header set on every request of an account: its lines are formatted on the first request only,
    the framing's own (Content-Length, Connection) still left out of them."""
    upstream_client._fields.cache_clear()
    heads: list[bytes] = []
    server = await _serve(heads)
    port = server.sockets[0].getsockname()[1]
    client = UpstreamClient(keepalive=60)
    try:
        for body in (b"{}", b'{"a": 1}', b"[]"):
            resp = await client.send(f"http://127.0.0.1:{port}/v1", [("Host", "h"), ("Connection", "close"),
                                                                      ("X-A", "b")], body, head_timeout=5, read_timeout=5)
            await resp.aread()
            await resp.aclose()
    finally:
        await client.aclose()
        server.close()
    assert heads[-1] == b"POST /v1 HTTP/1.1\r\nHost: h\r\nX-A: b\r\ncontent-length: 2\r\n\r\n[]"
    assert upstream_client._fields.cache_info().misses == 1
