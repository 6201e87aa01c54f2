"""A mitmproxy script for the floor (scripts/bench_floor.py, QWEN_BENCH_OWN_CLIENT=1): the gateway's shape with
none of its logic. Loaded after floor_dispatch.py; its async `request` hook sends the request as it came to the
flow's reverse target with the gateway's own upstream client (upstream/client.py: pooled connections, the
gateway's default deadlines) and sets `flow.response` — mitmproxy's server side unused, as in the gateway. Its
distance from the floor is what the shape costs; the gateway's distance from it is the gateway's own work."""

from mitmproxy import http

from qwen_gateway.upstream.client import UpstreamClient

TIMEOUT = 600.0  # the gateway's default qwen_upstream_timeout, for the head and the whole answer
_SKIP = {"host", "connection", "content-length"}


class OwnClient:
    def __init__(self) -> None:
        self.client = UpstreamClient(keepalive=60.0)

    async def request(self, flow: http.HTTPFlow) -> None:
        r = flow.request
        headers = [("host", f"{r.host}:{r.port}"), *((k, v) for k, v in r.headers.items() if k.lower() not in _SKIP)]
        answer = await self.client.send(f"http://{r.host}:{r.port}{r.path}", headers, r.raw_content or b"",
                                        head_timeout=TIMEOUT, read_timeout=TIMEOUT, method=r.method)
        try:
            body = await answer.aread()
        finally:
            await answer.aclose()
        flow.response = http.Response.make(answer.status_code, body, answer.headers)


addons = [OwnClient()]
