"""A self-hosted server's own signals, read in the background for the pool (upstream/pool/pool.py): its `/health`
(vLLM answers 503 when its engine is dead; a server that does not answer at all is down) and its queue from
`/metrics` (`vllm:num_requests_waiting`, `sglang:num_queue_reqs`: busy servers queue, they never answer 429). A
server down is not handed a request until it answers again (`Outcome.UNREACHABLE`, cooled until the next look); a
queue longer than another server's takes no new conversation (`AccountPool.load`), while the conversations it holds
stay on it — slow is not dead.

One look every `EVERY_S` per account, over a connection of its own (never the engine's pool), the gateway's own
(User-Agent qwen-gateway); stops when the account leaves the pool."""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ...accounts import Credential, Outcome
from ..client import ConnectionFailed, UpstreamClient
from ...settings.network import Network

log = logging.getLogger("qwen")

EVERY_S = 5.0  # how often each server is looked at: a dead one is skipped within this long
TIMEOUT_S = 3.0  # a look that takes longer says nothing (slow is not dead): the next one decides
AGENT = "qwen-gateway"
_WAITING = re.compile(r"^(?:vllm:num_requests_waiting|sglang:num_queue_reqs)(?:\{[^}]*\})?\s+([0-9.eE+]+)\s*$", re.M)


def waiting(metrics: str) -> int | None:
    """The requests a server has queued, summed over its engines, as its Prometheus text says (None: it says not)."""
    found = _WAITING.findall(metrics)
    return round(sum(float(v) for v in found)) if found else None


def origin(base_url: str) -> str:
    """`http://host:8000` of `http://host:8000/v1`: the server's own routes sit beside its API."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


class ServerWatch:
    """Looks at one account's server every EVERY_S while the pool holds the account."""

    def __init__(self, pool: Any, account: str, credential: Callable[[], Credential | None],
                 network: Network | None = None) -> None:
        self.pool = weakref.ref(pool)
        self.account, self.credential, self.network = account, credential, network
        self.down: str | None = None  # why it is down, as last said
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name=f"qwen: watch {self.account}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while (pool := self.pool()) is not None and self.account in pool.names():
            del pool
            await self.look()
            await asyncio.sleep(EVERY_S)

    async def look(self) -> None:
        """One look: /health, then /metrics; what they say told to the pool."""
        cred = self.credential()
        pool = self.pool()
        if cred is None or pool is None:
            return
        base = origin(cred.base_url)
        try:
            status, _ = await asyncio.wait_for(self._get(cred, base + "/health"), TIMEOUT_S)
        except asyncio.TimeoutError:
            return  # slow is not dead
        except (ConnectionFailed, OSError) as e:
            return self._down(pool, f"/health not reached: {e}")
        if status >= 500:
            return self._down(pool, f"/health answered {status}")
        if self.down is not None:
            log.info("qwen: account %s: its server answers again (/health %d)", self.account, status)
            self.down = None
        try:
            status, raw = await asyncio.wait_for(self._get(cred, base + "/metrics"), TIMEOUT_S)
        except (ConnectionFailed, OSError, asyncio.TimeoutError):
            status, raw = 0, b""
        _load(pool, self.account, waiting(raw.decode("utf-8", "replace")) if status == 200 else None)

    def _down(self, pool: Any, why: str) -> None:
        pool.report(self.account, Outcome.UNREACHABLE, retry_after=EVERY_S + TIMEOUT_S, detail=why)
        _load(pool, self.account, None)
        if why != self.down:
            log.warning("qwen: account %s: its server is down (%s): no request goes to it until it answers",
                        self.account, why)
            self.down = why

    async def _get(self, cred: Credential, url: str) -> tuple[int, bytes]:
        headers = [("Host", urlsplit(url).netloc), ("User-Agent", AGENT), ("Accept", "*/*")]
        if cred.token:
            headers.append(("Authorization", f"Bearer {cred.token}"))
        client = UpstreamClient(keepalive=0, connect_timeout=TIMEOUT_S, network=self.network)
        try:
            resp = await client.send(url, headers, b"", head_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, method="GET")
            try:
                return resp.status_code, await resp.aread()
            finally:
                await resp.aclose()
        finally:
            await client.aclose()


def _load(pool: Any, account: str, queued: int | None) -> None:
    load = getattr(pool, "load", None)  # the account pool's; another Pool keeps no load
    if load is not None:
        load(account, queued)


_WATCHES: weakref.WeakKeyDictionary[Any, dict[str, ServerWatch]] = weakref.WeakKeyDictionary()


def watch(pool: Any, account: str, credential: Callable[[], Credential | None], network: Network | None) -> None:
    """The account's server watched while `pool` holds it (once per pool and account)."""
    watches = _WATCHES.setdefault(pool, {})
    found = watches.get(account)
    if found is None or found._task is None or found._task.done():
        found = watches[account] = ServerWatch(pool, account, credential, network)
        found.start()
