"""A team gateway: named client keys (`qwen-keys`) with limits and budgets, and what each key spent.

- **Who**: `check` (requestheaders, every request): one SHA-256 and one dict lookup in the keyring held in memory.
  Once any named key exists (revoked ones too), a request needs one (or a key of the flat keys file, which keeps
  working alongside); a missing, unknown or revoked key is a 401 and nothing goes upstream. A gateway on PostgreSQL
  that never read its keys (and has no copy of them) refuses every request with 503 rather than serve without them.
- **Limits** (`limit`, before the request goes upstream): the budgets that count the request (tenancy/budgets.py)
  from memory (tenancy/spend.py), then held (tenancy/holds.py); then rpm and tpm through the limiter
  (tenancy/limits.py), which asks the backend only when the local lease is spent; a key with rpm or tpm gets their
  state as headers on its answer or refusal (tenancy/rate_headers.py). Once the account and the model as sent are
  known, the engine asks `priced_only` (tenancy/team_budgets.py): a budget of one model counts the model as sent, and
  a request a USD budget counts is refused what has no price.
- **Spend** (`finished`, an observer, after the answer): tokens Qwen reported, the request's cost (`ex.result.cost`,
  pricing/prices.py) and refusals, per key and UTC day, and per model; tpm grants settled with the real tokens.
- **Where** (tenancy/source.py): `<state_dir>/keys.sqlite3`, or the shared database (`qwen_state_url`: rate limits
  exact across gateways). A change is applied on every running gateway before `qwen-keys` returns; the running
  requests of a key revoked, rotated or deleted end then (`ended`; qwen_key_change_in_flight).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import GatewayError
from ..observer import Observer
from ..pricing.prices import COST_UNKNOWN, REQUESTS, TOKENS, USD, PriceTable
from . import budgets, rate_headers, refusals
from ..peers import from_loopback, key_matches
from .ring import Keyring, KeyRecord, digest
from .source import KeySource
from .holds import Costs, Holds, MemoryHolds
from .team_budgets import BudgetChecks
from .limits import RPM, TPM, Limiter, MemoryGrants, Taken
from .spend import SpendBook
from ..models.model_map import LiveModels, ModelMap

if TYPE_CHECKING:
    from mitmproxy import http

    from ..settings.config import Config
    from ..exchange import Exchange

log = logging.getLogger("qwen")

PENDING = GatewayError(503, "keys not read yet")  # a marker, never answered: see Team.check
MOVED = GatewayError(503, "The gateway's named client keys were moved to a shared database (qwen-keys migrate): it "
                          "refuses every request until it runs with qwen_state_url set to that database.",
                     code="state_unavailable")
NO_KEY = digest(b"")  # what a request without a key presents (late_check sees digests only)


class Team(Observer, BudgetChecks):
    at_once = True  # a key's spend counted before its next request is checked (in memory: no I/O)
    counts_bills = True  # a batch's bill counts against its key's budget

    def __init__(self) -> None:
        self.ring = Keyring()
        self.book = SpendBook()
        self.limiter = Limiter(MemoryGrants())
        self.holds: Holds = MemoryHolds()  # what running requests hold against budgets (tenancy/holds.py)
        self.costs = Costs()
        self.source = KeySource(self)
        self.prices = PriceTable()  # the configured price table: what a USD budget may be spent on
        self.lists = LiveModels()  # each account's own model list from Qwen: its prices count first
        self.models: ModelMap | None = None  # the model map: which model a request goes to, as its budgets count
        self._warned = False
        self.counts_down = ""  # why the shared budget counts could not be reached at the last try ("": they could)
        self.deleted: list[Callable[[str], None]] = []  # told each name deleted (its stored objects go with it)
        self.ended: list[Callable[[str, str], None]] = []  # told each name revoked, rotated or deleted: its turns end
        self.end_in_flight = True  # qwen_key_change_in_flight=end: and a turn about to start is refused (`limit`)

    # ---- lifecycle: where the keys live (tenancy/source.py) -------------------------------------------

    def configure(self, config: Config) -> None:
        self.prices, self.lists, self.models = config.prices, config.models.accounts, config.models
        self.end_in_flight = config.key_change_in_flight == "end"
        self.source.configure(config)

    def running(self) -> None:
        self.source.running()

    async def close(self) -> None:
        await self.source.close()

    def keys_exist(self) -> bool:
        return self.source.keys_exist()

    def status(self) -> dict | None:
        """What /health says of the named keys (None: there are none, nothing to say)."""
        ring = self.ring
        if not ring.loaded:
            return {"state": "unread"}
        if not ring.required:
            return None
        shown = {"active": ring.active, "revoked": ring.revoked, "state": "copy" if ring.provisional else "read"}
        if self.counts_down:  # its limits and budgets cannot be counted with the other gateways': refused
            shown["counts"] = (f"unreachable ({self.counts_down}): requests of keys with a limit or budget are "
                               "refused (503) until the shared database answers")
        return shown

    # ---- who ---------------------------------------------------------------------------------------

    def check(self, presented: bytes, flat: tuple[bytes, ...],
              flow: http.HTTPFlow | None = None) -> tuple[GatewayError | None, KeyRecord | None]:
        """(the refusal, the named key) of a request's key; the refusal is PENDING when the shared keys are
        not read yet and no flat key matched (`late_check` decides, in the request hook). `flow`: where the
        client is, for the 401's advice (asked only when refusing)."""
        ring = self.ring
        if ring.required and self.source.frozen.stale() and not (flat and key_matches(presented, flat)):
            return PENDING, None  # the loop was frozen: decided once the keys were read again (`late_check`)
        if ring.required:
            rec = ring.find(presented) if presented else None
            if rec is not None:
                return (refusals.refused_record(rec) if rec.revoked or rec.unread else None), rec
        elif ring.loaded and not flat:
            return None, None  # no keys of any kind: the gateway is open (and loopback-only)
        if flat and key_matches(presented, flat):
            return None, None
        if not ring.loaded:
            return PENDING, None
        return refusals.no_key(bool(presented), ring.required, from_loopback(flow)), None

    async def late_check(self, presented_digest: bytes, flat: bool,
                         flow: http.HTTPFlow | None = None) -> tuple[GatewayError | None, KeyRecord | None]:
        """A request that came before the shared keys were read: waits for the first read (10 s at most).
        `flat`: the gateway has flat keys (the request's key is none of them)."""
        await self.source.first_read()
        await self.source.frozen.fresh()
        ring = self.ring
        if not ring.loaded and self.source.moved_to:
            return MOVED, None
        if not ring.loaded:  # the database does not answer, this gateway never read its keys: every request is refused
            why = self.source.why()
            self._warn_unread(why)
            return refusals.keys_unread(why), None
        rec = ring.find_digest(presented_digest) if ring.required else None
        if rec is not None:
            return (refusals.refused_record(rec) if rec.revoked or rec.unread else None), rec
        if not ring.required and not flat:
            return None, None
        return refusals.no_key(presented_digest != NO_KEY, ring.required, from_loopback(flow)), None

    def _warn_unread(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("qwen: WARNING: this gateway has never read its named client keys: %s, and it has no copy "
                        "of them: it refuses every request (503) until it can read them; the keys file's keys still "
                        "work (docs/keys.md)", refusals.unread(why))

    @staticmethod
    def bind(ex: Exchange, rec: KeyRecord | None) -> None:
        if rec is not None:
            ex.key.name = rec.name
            if not rec.revoked and not rec.unread:
                ex.key.record = rec
                ex.key.usd_budget = budgets.per_attempt(rec)  # the engine then asks `priced_only`

    # ---- limits, before upstream ---------------------------------------------------------------------

    async def limit(self, ex: Exchange) -> None:
        """Raises the refusal when the exchange's key is over a budget or a rate limit."""
        rec = ex.key.record
        if not isinstance(rec, KeyRecord) or ex.key.taken is not None:
            return
        if self.end_in_flight and (change := self.ring.change(rec)):  # since its check: its turn never starts
            raise refusals.ended_in_flight(rec.name, change)
        try:
            await self._limit(ex, rec)
        finally:  # on the answer and on a refusal alike (local.Formats puts them on either)
            if rec.rpm or rec.tpm:
                ex.key.limit_headers = rate_headers.of_key(self.limiter, ex.dialect, rec)

    async def _limit(self, ex: Exchange, rec: KeyRecord) -> None:
        want = max(1, ex.count.tokens or ex.client.size // 4)  # bytes/4: no count on the request's path
        await self.hold_budgets(ex, rec, want)
        taken: list[Taken] = []
        ex.key.taken = taken
        try:
            if rec.rpm:
                taken.append(await self._take(rec, RPM, 1, rec.rpm, taken))
            if rec.tpm:
                if want > rec.tpm:
                    self._give_back(taken)
                    raise refusals.too_large(rec, want)
                taken.append(await self._take(rec, TPM, want, rec.tpm, taken))
        except BaseException:
            self._release(ex)
            raise

    async def _take(self, rec: KeyRecord, kind: str, want: int, limit: int, taken: list[Taken]) -> Taken:
        try:
            got = self.limiter.take_now(rec.name, kind, want, limit)  # no waiting: memory, or the lease
            if got is None:
                got = await self.limiter.take(rec.name, kind, want, limit)
        except Exception as e:
            log.warning("qwen: could not count key %s's requests in the shared database: %s", rec.name,
                        type(e).__name__)
            self.counts_down = type(e).__name__
            self._give_back(taken)
            raise refusals.counts_unreachable(rec) from None
        self.counts_down = ""
        if isinstance(got, Taken):
            return got
        self._give_back(taken)
        raise refusals.rate_limited(rec, kind, got)

    def _give_back(self, taken: list[Taken]) -> None:
        for t in taken:
            self.limiter.give_back(t)
        taken.clear()

    # ---- spend, after the answer ---------------------------------------------------------------------

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        name = ex.key.name
        if not name:
            return
        if refusals.refused(ex.result.error, answered_by=ex.attempt.cred):
            self.book.charge(name, refused=1)
            self._release(ex)
            return
        usage = ex.result.usage if isinstance(ex.result.usage, dict) else {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        tokens = (prompt if type(prompt) is int else 0) + (completion if type(completion) is int else 0)
        cost, unit = ex.result.cost or 0.0, ex.result.cost_unit
        self.book.charge(name, requests=1, tokens=tokens, usd=cost if unit == USD else 0.0,
                         plan_requests=int(cost) if unit == REQUESTS else 0,
                         plan_tokens=int(cost) if unit == TOKENS else 0, unpriced=int(unit in COST_UNKNOWN),
                         model=self.model_of(ex))  # the model as sent: what budgets of one model count
        if ex.result.usage is not None or ex.result.error is not None or ex.result.stream_error:
            self._release(ex, tokens, cost if unit == USD else 0.0)  # with the spend: one batch deletes and adds
        taken = ex.key.taken
        # settled once, by the exchange that has Qwen's answer (a background response's POST, answered
        # `queued`, hands its allowance to the turn that runs on: the same list)
        if taken and (ex.result.usage is not None or ex.result.error is not None or ex.result.stream_error):
            for t in taken:
                if t.kind == TPM:
                    self.limiter.settle(t, tokens)
            taken.clear()

