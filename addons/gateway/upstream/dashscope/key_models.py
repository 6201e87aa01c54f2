"""A key account's own model list, fetched in the background and kept in the model map's per-account
`LiveModels` for `LIVE_TTL`: on a Model Studio base (`…/compatible-mode/v1`), its List Models API with prices
and limits (model_list.py: what this key may call, its prices by tier, caps, publish time — Qwen's word over the
catalogue's), else, or when that cannot be read (said once per account), `GET {base}/models` (the
OpenAI-compatible list: ids only; prices and caps then from the catalogue). Until one answers, /v1/models lists
the catalogue's models for the account's plan and the account is unknown, never empty: tried for any model
(upstream/account_lists.py). When neither can be read (no answer within TIMEOUT, an error status, a refused
connection, an answer that is no list) that is said once, with why, until one is read again (said too). Nothing
on a request's path waits for it.

The fetch is the gateway's own (User-Agent qwen-gateway/VERSION: no client asked), over a connection of its
own with the gateway's network settings, never the engine's pool."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Mapping

from ...accounts import Credential
from ...models import suggestions
from ...models.listed import ModelList
from ...models.listed_kept import KeptLists, key_id
from ...models.live import LIVE_RETRY, LIVE_RETRY_MOST
from ...models.model_map import LIVE_TTL, LiveModels
from ...settings.network import Network
from ..catalogue_fetch import CatalogueFetch
from ..client import ConnectionFailed, UpstreamClient
from . import model_list
from .headers import GATEWAY_AGENT, target

log = logging.getLogger("qwen")

TIMEOUT = 10.0  # seconds for each list (Model Studio's, then GET /models): a slow list only delays the next read
# An adopted list falls due up to this much sooner, at random: the gateways that adopted one read do not all ask
# Qwen again at the same instant; the first asks, the others adopt what it read.
ADOPTED_SPREAD_S = 300.0


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


def _models(count: int) -> str:
    return f"{count} model" if count == 1 else f"{count} models"


class KeyCatalogue(CatalogueFetch):
    """Keeps `live`'s entry for one account current; `credential` is read at each fetch (a rotated key is
    used at once); `refresh_soon` only schedules."""

    def __init__(self, live: LiveModels, account: str, credential: Callable[[], Credential | None],
                 network: Network | None = None, kept: KeptLists | None = None,
                 named: Callable[[Credential], Mapping[str, str]] | None = None) -> None:
        self.live, self.account, self.credential, self.network = live, account, credential, network
        self.named = named  # the models the account is sent unasked (its default, the maps': ModelMap.named)
        self.lacking = ""  # what was last said of those its list lacks (said again only when it changes)
        self.kept = kept  # where the last list read is kept: the next start, the team (models/listed_kept.py)
        self.said = ""  # what was last said of this account's list (said once, again only when it changes)
        self.unread = False  # its list could not be read at the last try (said once until it is read again)

    async def refresh(self) -> None:
        """One fetch, unless the team read this key's list within the hour; whatever goes wrong leaves the last list
        (or, none read, the account unknown: tried for any model) and waits LIVE_RETRY, longer each time in a row."""
        listed: ModelList | None = None
        models: list[str] = []
        why, cred = "", None
        try:
            cred = self.credential()
            if cred is not None and await self._adopted(cred):
                return
            if cred is not None and "/compatible-mode/" in cred.base_url + "/":
                listed, why = await self._listed(cred)
            if listed is not None:
                models = list(listed.models)
            elif cred is not None:
                models, fetched_why = await self._fetch(cred)
                if not models:
                    why = f"GET /api/v1/models: {why}; " * bool(why) + f"GET /models: {fetched_why}"
                elif why:  # the OpenAI-compatible list serves: ids only
                    self._say(f"qwen: account {self.account}: Qwen's model list (GET /api/v1/models) could not be "
                              f"read ({why}): its models from GET /models, their prices and caps from the catalogue")
        except (ConnectionFailed, OSError, ValueError) as e:
            why = type(e).__name__
        if cred is not None:
            self._unread(why) if not models else self._read_again(listed, models)
        if cred is not None and models and self.named is not None:
            self._lacks(self.named(cred), models)
        self.live.put(self.account, models, listed)
        if listed is not None and cred is not None and self.kept is not None:
            try:
                await self.kept.keep(listed, key_id(cred.base_url, cred.token))
            except OSError as e:  # a full disk or a read-only folder: the list serves this run all the same
                self._say(f"qwen: account {self.account}: its model list could not be kept ({e.strerror}): read "
                          "again at the next start")

    def _unread(self, why: str) -> None:
        """Said once while the list cannot be read (an episode ends when it is read): why, and what routing does."""
        if self.unread:
            return
        self.unread = True
        serves = "the list read before serves until then" if self.live.is_live(self.account) else \
            "its models are unknown: it is tried for any model until then"
        self._say(f"qwen: account {self.account}: its model list could not be read ({why or 'no models'}): {serves}; "
                  f"read again in {LIVE_RETRY:g} s, then less often (up to {LIVE_RETRY_MOST:g} s apart)")

    def _lacks(self, named: Mapping[str, str], models: list[str]) -> None:
        """One warning line when the list lacks a model the account is sent unasked, with the list's own choice."""
        lacking = suggestions.not_in_list(named, models)
        said = ", ".join(f"{model} ({where}" + (f"; the list has {alt})" if alt else ")") for model, where, alt in lacking)
        one = len(lacking) == 1
        line = f"qwen: account {self.account}: {said} {'is' if one else 'are'} not in its model list from Qwen " \
               f"(retired, or not for this key): requests for {'it' if one else 'them'} are refused there" if said else ""
        if line and line != self.lacking:
            log.warning(line)
        self.lacking = line

    def _read_again(self, listed: ModelList | None, models: list[str]) -> None:
        if self.unread and listed is None:  # Model Studio's list says so itself (_listed)
            self._say(f"qwen: account {self.account}: its model list read again (GET /models): {_models(len(models))}")
        self.unread = False

    async def _adopted(self, cred: Credential) -> bool:
        """The list another gateway of the team read with this key, when later than this gateway's: taken as current
        while it is younger than LIVE_TTL (True: Qwen is not asked); an older one serves until Qwen's is read."""
        if self.kept is None or not self.kept.shared:
            return False
        team = await self.kept.team(self.account, key_id(cred.base_url, cred.token))
        mine = self.live.model_list(self.account)
        if team is None or mine is not None and team.read_at <= mine.read_at:
            return False
        age = max(0.0, time.time() - team.read_at)
        if age >= LIVE_TTL:
            self.live.restore(self.account, team)
            return False
        self.live.adopt(self.account, team, age + random.uniform(0.0, ADOPTED_SPREAD_S))
        self._say(f"qwen: account {self.account}: Qwen's model list read by the team "
                  f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(team.read_at))}: {_models(len(team.models))}")
        return True

    async def _listed(self, cred: Credential) -> tuple[ModelList | None, str]:
        """Model Studio's list, every page, within TIMEOUT; (None, why) when it cannot be read."""
        pages = model_list.Pages(cred.base_url)
        why = ""
        try:
            async with asyncio.timeout(TIMEOUT):
                while (where := pages.next()) is not None:
                    status, raw = await self._get(cred, *where)
                    if status != 200:
                        why = f"HTTP {status}"  # 404: a host without the list (said as information, not a fault)
                        break
                    pages.take(raw)
        except ValueError:
            why = "an answer that is not the list"
        except asyncio.TimeoutError:
            why = f"no answer within {TIMEOUT:g} s"
        except (ConnectionFailed, OSError) as e:
            why = type(e).__name__
        records = pages.records
        if why or not records:
            return None, why or "no models"
        models, unpriced = {}, {}
        for record in records:
            found_model, unread = model_list.model(record)
            models[found_model.id] = found_model
            if unread:
                unpriced[found_model.id] = unread
        said = f"the prices of {len(unpriced)} of {_models(len(models))} not taken ({next(iter(unpriced.values()))})" \
            if unpriced else ""
        self._say(f"qwen: account {self.account}: Qwen's model list read: {_models(len(models))}"
                  + (f"; {said}: the catalogue prices those" if said else ""))
        return ModelList(self.account, time.time(), models, said), ""

    def _say(self, line: str) -> None:
        if line != self.said:
            self.said = line
            (log.warning if "could not" in line and "HTTP 404" not in line else log.info)(line)

    async def _fetch(self, cred: Credential) -> tuple[list[str], str]:
        """The OpenAI-compatible list's ids within TIMEOUT; ([], why) when it cannot be read."""
        try:
            async with asyncio.timeout(TIMEOUT):
                status, raw = await self._get(cred, *target(cred.base_url, "models"))
        except asyncio.TimeoutError:
            return [], f"no answer within {TIMEOUT:g} s"
        except (ConnectionFailed, OSError) as e:
            return [], type(e).__name__
        ids = parse(raw) if status == 200 else []
        return ids, "" if ids else f"HTTP {status}" if status != 200 else "no model list in the answer"

    async def _get(self, cred: Credential, url: str, host: str) -> tuple[int, bytes]:
        """GET `url` (its Host header `host`) with the account's key."""
        client = UpstreamClient(keepalive=0, network=self.network)
        headers = [("Host", host), ("User-Agent", GATEWAY_AGENT), ("Accept", "application/json"),
                   ("Authorization", f"Bearer {cred.token}")]
        try:
            resp = await client.send(url, headers, b"", head_timeout=TIMEOUT, read_timeout=TIMEOUT, method="GET")
            try:
                return resp.status_code, await resp.aread()
            finally:
                await resp.aclose()
        finally:
            await client.aclose()
