"""A self-hosted server's own models: `GET {base}/models` as vLLM and SGLang answer it — each served name with its
`max_model_len` (the window its prompt and answer share) and what serves it (`owned_by`: `vllm`, `sglang`). Read in
the background at start and hourly (models/live.LiveModels, per account) and again when the server refuses a model:
the server's word over the catalogue, which knows nothing of a team's servers. /v1/models lists these, the model map
sends the client's aliases to them (models/model_map.py), the output cap fits the window (limits.py), a thinking
budget goes in the server's own form (template.py). Nothing on a request's path waits for it.

The fetch is the gateway's own (User-Agent qwen-gateway), over a connection of its own, never the engine's pool."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ...accounts import Credential, Pool
from ...models.listed import ListedModel, ModelList
from ...models.model_map import LiveModels
from ...settings.config import Config
from ...settings.network import Network
from ..catalogue_fetch import CatalogueFetch
from ..client import ConnectionFailed, UpstreamClient
from . import health
from .upstream import NAME

log = logging.getLogger("qwen")

TIMEOUT = 10.0  # seconds for the whole fetch: a slow list only delays the next refresh
AGENT = "qwen-gateway"


def parse(account: str, raw: bytes, version: str = "") -> ModelList | None:
    """The server's list (`{"data": [{"id", "max_model_len", "owned_by", …}]}`); None: the answer is no list. A
    window the server does not give stays unknown; `version`: its release, as its /version says."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    records = data.get("data") if isinstance(data, dict) else None
    if not isinstance(records, list):
        return None
    models: dict[str, ListedModel] = {}
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r["id"] or r["id"] in models:
            continue
        window = r.get("max_model_len")
        owner = r.get("owned_by")
        models[r["id"]] = ListedModel(r["id"], context=window if isinstance(window, int) and window > 0 else None,
                                      served_by=owner if isinstance(owner, str) else "", server_version=version)
    return ModelList(account, time.time(), models)


def version_of(status: int, raw: bytes) -> str:
    """The release a server's `/version` answer says (vLLM: {"version": "0.20.0"}); "": none, or no such answer."""
    try:
        said = json.loads(raw).get("version") if status == 200 else None
    except (ValueError, AttributeError):
        return ""
    return said if isinstance(said, str) and len(said) < 40 else ""


def said(listed: ModelList) -> str:
    """One line on what the server serves: each model with its window."""
    parts = [f"{m.id} ({m.context:,}-token window)" if m.context else f"{m.id} (window not given)"
             for m in listed.models.values()]
    first = next(iter(listed.models.values()), None)
    server = f"{first.served_by} {first.server_version}".strip() if first is not None else ""
    return f"{server or 'the server'} serves {', '.join(parts) or 'no model'}"


def not_served(cred: Credential, listed: ModelList) -> str:
    """What the account names that its server does not serve (its default model, its own map's targets); "": none."""
    named = dict.fromkeys(m for m in (cred.default_model, *cred.model_map.values()) if m)
    missing = [m for m in named if m not in listed.models]
    if not missing:
        return ""
    instead = f"the client's aliases go to {next(iter(listed.models))} instead" if cred.default_model in missing \
        else "the server refuses what is mapped to them"
    return (f"{', '.join(missing)} named by the account but not served by the server (it serves "
            f"{', '.join(listed.models)}): {instead}")


class ServerModels(CatalogueFetch):
    """Keeps `live`'s entry for one self-hosted account current; `credential` read at each fetch."""

    def __init__(self, live: LiveModels, account: str, credential: Callable[[], Credential | None],
                 network: Network | None = None) -> None:
        self.live, self.account, self.credential, self.network = live, account, credential, network
        self.said = ""  # the last line said of this account's list (said again only when it changes)

    async def refresh(self) -> None:
        cred = self.credential()
        listed: ModelList | None = None
        why = "no credential"
        if cred is not None:
            try:
                status, raw = await asyncio.wait_for(self._get(cred, "/models"), TIMEOUT)
                version = await self._version(cred) if status == 200 else ""
                listed = parse(self.account, raw, version) if status == 200 else None
                why = f"HTTP {status}" if status != 200 else "an answer that is not a model list"
            except (ConnectionFailed, OSError, asyncio.TimeoutError) as e:
                why = type(e).__name__
        if listed is None or not listed.models:
            self.live.failed(self.account)
            self._say(f"qwen: account {self.account}: the server's model list (GET /models) could not be read "
                      f"({why}): its default model is sent, its window unknown", warn=True)
            return
        self.live.put(self.account, list(listed.models), listed)
        unserved = not_served(cred, listed) if cred is not None else ""
        self._say(f"qwen: account {self.account}: {said(listed)}" + (f"; WARNING: {unserved}" if unserved else ""),
                  warn=bool(unserved))

    def _say(self, line: str, warn: bool = False) -> None:
        if line != self.said:
            self.said = line
            (log.warning if warn else log.info)(line)

    async def _version(self, cred: Credential) -> str:
        """The release the server says it is (vLLM's `GET /version`: {"version": "0.20.0"}); "": it says none."""
        try:
            status, raw = await asyncio.wait_for(self._get(cred, "/version", origin=True), TIMEOUT)
        except (ConnectionFailed, OSError, asyncio.TimeoutError):
            return ""
        return version_of(status, raw)

    async def _get(self, cred: Credential, path: str, origin: bool = False) -> tuple[int, bytes]:
        base = cred.base_url.rstrip("/")
        if origin:  # the server's own routes sit beside its API
            parts = urlsplit(base)
            base = f"{parts.scheme}://{parts.netloc}"
        url = base + path
        headers = [("Host", urlsplit(url).netloc), ("User-Agent", AGENT), ("Accept", "application/json")]
        if cred.token:
            headers.append(("Authorization", f"Bearer {cred.token}"))
        client = UpstreamClient(keepalive=0, network=self.network)
        try:
            resp = await client.send(url, headers, b"", head_timeout=TIMEOUT, read_timeout=TIMEOUT, method="GET")
            try:
                return resp.status_code, await resp.aread()
            finally:
                await resp.aclose()
        finally:
            await client.aclose()


def account_models(config: Config, pool: Pool, rows: list[dict]) -> None:
    """Each usable self-hosted account's server list joins /v1/models: registered once per model map, fetched when
    due (the provider's `account_models`, components.py)."""
    live = config.models.accounts
    account = getattr(pool, "get", None)
    for row in rows:
        name = row.get("name")
        if row.get("provider") != NAME or row.get("state") not in ("ok", "cooling_down") or not name \
                or account is None:
            continue
        ready = functools.partial(_ready, account, name)
        if not live.registered(name):
            live.register(name, (), ServerModels(live, name, ready, config.network).refresh_soon, provider=NAME)
        health.watch(pool, name, ready, config.network)
    live.wanted()


def _ready(account: Callable[[str], Any], name: str) -> Credential | None:
    return account(name).ready()
