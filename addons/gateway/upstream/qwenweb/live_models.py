"""The web catalogue, live (issue #24 item 5; qwen-web-protocol.md §1.10): `GET {web base}/api/models`, no auth,
fetched in the background and kept in the model map's `LiveModels` (models.py) for `LIVE_TTL`; the static list
(request.WEB_MODELS) stays the fallback and the offline answer. Ids rotate, so a model the catalogue lacks goes
to the account's best current model (`best`), never to a fixed name.

The fetch is one GET without credentials (no cookie, no token: the route needs none, and a catalogue refresh
is nobody's request), over a connection of its own with the gateway's network settings (proxy, CAs): not the
engine's pool, which is for requests that carry an account and its retries."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Sequence

from ...accounts import WEB
from ...models.model_map import LiveModels
from ...settings.network import Network
from ..catalogue_fetch import CatalogueFetch
from ..client import ConnectionFailed, UpstreamClient
from .headers import CHROME_UA

TIMEOUT = 10.0  # seconds for the whole fetch: a slow catalogue only delays the next refresh
TIERS = {"max": 3, "plus": 2, "flash": 1, "turbo": 1}
VERSION = re.compile(r"qwen(\d+(?:\.\d+)?)")


def parse(raw: bytes) -> list[str]:
    """The text-chat models of a catalogue answer (`{"data": [{id, info: {meta: {chat_type}}}]}`), in its
    order; a record that names no chat types is taken as a chat model. Anything else: no models."""
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    records = data.get("data") if isinstance(data, dict) else None
    out = []
    for r in records if isinstance(records, list) else []:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r["id"]:
            continue
        meta = ((r.get("info") or {}).get("meta") or {}) if isinstance(r.get("info"), dict) else {}
        types = meta.get("chat_type") if isinstance(meta, dict) else None
        if not isinstance(types, list) or "t2t" in types:
            out.append(r["id"])
    return list(dict.fromkeys(out))


def rank(model: str) -> tuple[float, int, int]:
    """Newest version first, then the tier (max > plus > flash/turbo), a general model before a coder."""
    m = VERSION.match(model)
    version = float(m.group(1)) if m else 0.0
    tier = max((v for k, v in TIERS.items() if k in model.split("-")), default=0)
    return version, tier, "coder" not in model


def best(models: Iterable[str]) -> str | None:
    ranked = sorted(models, key=rank, reverse=True)
    return ranked[0] if ranked else None


def pick(model: str, models: Sequence[str], default: str | None, notes: list[str]) -> str:
    """The web model for a resolved name: itself when the catalogue has it, else the account's default model
    when the catalogue has that, else the best the catalogue has (noted)."""
    if model in models:
        return model
    target = default if default and default in models else best(models) or model
    notes.append(f"{model} is not in the Qwen Chat web catalogue: sent to {target}")
    return target


class WebCatalogue(CatalogueFetch):
    """Keeps `live`'s WEB entry current from `base`'s catalogue; `refresh_soon` only schedules."""

    def __init__(self, live: LiveModels, base: str, network: Network | None = None) -> None:
        self.live, self.base, self.network = live, base.rstrip("/"), network

    async def refresh(self) -> None:
        """One fetch; whatever goes wrong leaves the last catalogue (or the fallback) and waits LIVE_RETRY."""
        try:
            models = await asyncio.wait_for(self._fetch(), TIMEOUT)
        except (ConnectionFailed, OSError, asyncio.TimeoutError, ValueError):
            models = []
        self.live.put(WEB, models)

    async def _fetch(self) -> list[str]:
        client = UpstreamClient(keepalive=0, network=self.network)
        host = self.base.split("://", 1)[-1].split("/", 1)[0]
        headers = [("Host", host), ("User-Agent", CHROME_UA), ("Accept", "application/json"), ("source", "web")]
        resp = await client.send(self.base + "/api/models", headers, b"", head_timeout=TIMEOUT,
                                 read_timeout=TIMEOUT, method="GET")
        try:
            raw = await resp.aread()
        finally:
            await resp.aclose()
        return parse(raw) if resp.status_code == 200 else []
