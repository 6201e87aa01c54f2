"""Model Studio's Files and Batch APIs on the wire (upstream/dashscope/batch_wire.py), against a local server: the
account's key and the client's own User-Agent go upstream, with the query and the body; the answer comes back
whole."""

from __future__ import annotations

import asyncio

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.upstream.dashscope import batch_wire


async def serve(seen: list[bytes]):
    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        seen.append(head + await reader.readexactly(length))
        body = b'{"object": "list", "data": []}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_the_accounts_key_and_the_clients_agent_go_upstream_with_the_query_and_body():
    seen: list[bytes] = []
    server = await serve(seen)
    port = server.sockets[0].getsockname()[1]
    cred = Credential("ds", KEY, f"http://127.0.0.1:{port}/compatible-mode/v1", "sk-account")
    async with server:
        listed = await batch_wire.send(cred, "GET", "batches", query="limit=5&after=batch_1",
                                       client_agent="OpenAI/Python 2.0")
        made = await batch_wire.send(cred, "POST", "files", b"--x--", content_type="multipart/form-data; boundary=x")
    assert listed == batch_wire.Reply(200, "application/json", b'{"object": "list", "data": []}')
    assert made.status == 200
    first, second = seen
    assert first.startswith(b"GET /compatible-mode/v1/batches?limit=5&after=batch_1 HTTP/1.1\r\n")
    assert b"Authorization: Bearer sk-account\r\n" in first and b"User-Agent: OpenAI/Python 2.0\r\n" in first
    assert second.startswith(b"POST /compatible-mode/v1/files HTTP/1.1\r\n") and second.endswith(b"\r\n\r\n--x--")
    assert b"Content-Type: multipart/form-data; boundary=x" in second and b"User-Agent: qwen-gateway/" in second
