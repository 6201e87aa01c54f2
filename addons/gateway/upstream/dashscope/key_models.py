"""A key account's own model list: `GET {base}/models` with its key (Model Studio's OpenAI-compatible list, which
names what the key's plan and workspace may call), fetched in the background and kept in the model map's
per-account `LiveModels` for `LIVE_TTL`; until it answers, /v1/models lists the catalogue's models for the
account's plan. Nothing on a request's path waits for it.

The fetch is the gateway's own (User-Agent qwen-gateway/VERSION: no client asked), over a connection of its
own with the gateway's network settings, never the engine's pool."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from ...accounts import Credential
from ...models.model_map import LiveModels
from ...settings.network import Network
from ..catalogue_fetch import CatalogueFetch
from ..client import ConnectionFailed, UpstreamClient
from .headers import GATEWAY_AGENT, target

TIMEOUT = 10.0  # seconds for the whole fetch: a slow list only delays the next refresh


def parse(raw: bytes) -> list[str]:
    """The ids of an OpenAI model list (`{"data": [{"id": …}]}`), in its order; anything else: none."""
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    records = data.get("data") if isinstance(data, dict) else None
    ids = [r["id"] for r in records or [] if isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"]] \
        if isinstance(records, list) else []
    return list(dict.fromkeys(ids))


class KeyCatalogue(CatalogueFetch):
    """Keeps `live`'s entry for one account current; `credential` is read at each fetch (a rotated key is
    used at once); `refresh_soon` only schedules."""

    def __init__(self, live: LiveModels, account: str, credential: Callable[[], Credential | None],
                 network: Network | None = None) -> None:
        self.live, self.account, self.credential, self.network = live, account, credential, network

    async def refresh(self) -> None:
        """One fetch; whatever goes wrong leaves the last list (or the plan's catalogue) and waits LIVE_RETRY."""
        try:
            cred = self.credential()
            models = await asyncio.wait_for(self._fetch(cred), TIMEOUT) if cred is not None else []
        except (ConnectionFailed, OSError, asyncio.TimeoutError, ValueError):
            models = []
        self.live.put(self.account, models)

    async def _fetch(self, cred: Credential) -> list[str]:
        url, host = target(cred.base_url, "models")
        client = UpstreamClient(keepalive=0, network=self.network)
        headers = [("Host", host), ("User-Agent", GATEWAY_AGENT), ("Accept", "application/json"),
                   ("Authorization", f"Bearer {cred.token}")]
        try:
            resp = await client.send(url, headers, b"", head_timeout=TIMEOUT, read_timeout=TIMEOUT, method="GET")
            try:
                raw = await resp.aread()
            finally:
                await resp.aclose()
        finally:
            await client.aclose()
        return parse(raw) if resp.status_code == 200 else []
