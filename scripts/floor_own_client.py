"""A mitmproxy script for the floor (scripts/bench_floor.py, QWEN_BENCH_OWN_CLIENT=1): the gateway's shape with
none of its logic. Loaded after floor_dispatch.py; its async `request` hook sends the request as it came over
its own pooled connections (asyncio streams) to the flow's reverse target, reads a Content-Length answer and
sets `flow.response` — mitmproxy's server side unused, as in the gateway. Its distance from the floor is what
the shape costs; the gateway's distance from it is the gateway's own work."""

import asyncio

from mitmproxy import http

_SKIP = {"host", "connection", "content-length"}


class OwnClient:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def request(self, flow: http.HTTPFlow) -> None:
        r = flow.request
        origin = (r.host, r.port)
        head = [f"{r.method} {r.path} HTTP/1.1", f"Host: {r.host}:{r.port}", f"Content-Length: {len(r.raw_content or b'')}"]
        head += [f"{k}: {v}" for k, v in r.headers.items() if k.lower() not in _SKIP]
        idle = self._idle.setdefault(origin, [])
        reader, writer = idle.pop() if idle else await asyncio.open_connection(*origin)
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (r.raw_content or b""))
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
        size = next(int(v) for k, v in fields if k.lower() == "content-length")
        body = await reader.readexactly(size)
        idle.append((reader, writer))
        flow.response = http.Response.make(int(lines[0].split()[1]), body,
                                           [(k.encode(), v.encode()) for k, v in fields])


addons = [OwnClient()]
