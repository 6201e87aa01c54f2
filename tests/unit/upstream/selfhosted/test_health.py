"""A self-hosted server's own signals for the pool (upstream/selfhosted/health.py): /health and the queue on /metrics,
read from a real HTTP server here, told to the pool."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from qwen_gateway.accounts import KEY, Credential, Outcome
from qwen_gateway.upstream.selfhosted import health

METRICS = """# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-8B"} 3.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen3-8B"} 2.0
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-8B"} 4.0
"""


def test_the_queue_as_each_server_says_it():
    assert health.waiting(METRICS) == 5  # summed over its engines
    assert health.waiting('sglang:num_queue_reqs{model_name="q"} 7\n') == 7
    assert health.waiting("vllm:num_requests_running 4\n") is None  # not said: unknown, never 0
    assert health.origin("http://gpu-1:8000/v1") == "http://gpu-1:8000"


class Pool:
    def __init__(self) -> None:
        self.reports: list[tuple[str, Outcome, str | None]] = []
        self.loads: list[tuple[str, int | None]] = []

    def names(self) -> list[str]:
        return ["gpu"]

    def report(self, account, outcome, *, retry_after=None, detail=None, window=None) -> None:
        self.reports.append((account, outcome, detail))

    def load(self, account, waiting) -> None:
        self.loads.append((account, waiting))


class Server(BaseHTTPRequestHandler):
    health = 200

    def do_GET(self):  # noqa: N802
        status, body = (Server.health, b"") if self.path == "/health" else (200, METRICS.encode())
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


async def test_a_dead_engine_is_down_and_a_live_ones_queue_is_its_load():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pool = Pool()
        cred = Credential("gpu", KEY, f"http://127.0.0.1:{server.server_address[1]}/v1", "k", provider="selfhosted")
        watch = health.ServerWatch(pool, "gpu", lambda: cred)
        await watch.look()
        assert pool.loads == [("gpu", 5)] and pool.reports == []
        Server.health = 503
        await watch.look()
        assert pool.reports == [("gpu", Outcome.UNREACHABLE, "/health answered 503")] and pool.loads[-1] == ("gpu", None)
    finally:
        Server.health = 200
        server.shutdown()
        server.server_close()
    await watch.look()  # nothing listens now
    assert pool.reports[-1][1] is Outcome.UNREACHABLE and "/health not reached" in pool.reports[-1][2]
