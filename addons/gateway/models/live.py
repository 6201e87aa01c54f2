"""The models each account's upstream currently offers, by account (a key account's own list from Qwen:
upstream/dashscope/key_models.py) or by kind (the web session's catalogue): fetched in the background, kept here
with what the provider lists of each model (models/listed.py); the catalogue is the fallback. Nothing here does
I/O."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import cast

from ..price_tier import Tier
from .learned import LearnedFacts
from .listed import ModelList, SeenBy

LIVE_TTL = 3600.0  # how long a fetched catalogue is current (Qwen2API's default for the web catalogue)
LIVE_RETRY = 60.0  # after a failed fetch, the next try no sooner: a catalogue down is never hammered
LIVE_RETRY_MOST = 900.0  # each failure in a row doubles the wait, up to this
ABSENT_S, ABSENT_MOST = 600.0, 256  # a model Qwen has not, answered here this long; at most this many remembered


class LiveModels:
    """The models each account kind's upstream currently offers (its live catalogue), per kind. An upstream
    registers its kind with the static list (the fallback and the offline answer) and a `refresh` callable
    that starts a fetch in the background and reports with `put` or `failed`; nothing here does I/O, so
    nothing on a request's path waits for a catalogue: `ids` is the cache, or the fallback."""

    def __init__(self, ttl: float = LIVE_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._fallback: dict[str, tuple[str, ...]] = {}
        self._refresh: dict[str, Callable[[], None]] = {}
        self._live: dict[str, tuple[tuple[str, ...], float]] = {}  # kind -> (ids, fetched at)
        self._failed: dict[str, float] = {}
        self._providers: dict[str, str] = {}  # kind -> the provider that serves it ("" unsaid)
        self._failures: dict[str, int] = {}  # kind -> fetches failed in a row (the wait before the next doubles)
        self._lists: dict[str, ModelList] = {}  # kind -> what its provider lists of each model (models/listed.py)
        self.absent: dict[str, float] = {}  # model -> when Qwen last said no account it was sent to has it
        self._first: dict[str, asyncio.Event] = {}  # kind -> set once its first fetch answered (or failed)

    def register(self, kind: str, fallback: Sequence[str], refresh: Callable[[], None], provider: str = "") -> None:
        """`provider`: who serves the kind's models (providers.py), "" unsaid."""
        self._fallback[kind], self._refresh[kind] = tuple(fallback), refresh
        self._providers[kind] = provider

    async def first_read(self, kind: str, wait_s: float) -> None:
        """Waits (at most `wait_s`) for a registered kind's first fetch to answer, when none has yet: for an
        upstream whose own list is all it serves (a self-hosted server), the first requests after a start."""
        if kind not in self._refresh or kind in self._live or kind in self._failed:
            return
        event = self._first.setdefault(kind, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), wait_s)
        except asyncio.TimeoutError:
            pass

    def _answered(self, kind: str) -> None:
        if (event := self._first.pop(kind, None)) is not None:
            event.set()

    def registered(self, kind: str) -> bool:
        return kind in self._refresh

    def kinds(self, provider: str = "") -> tuple[str, ...]:
        """The registered kinds (`provider`: only those it serves, or whose provider was not said)."""
        return tuple(k for k in self._refresh if not provider or self._providers.get(k, "") in ("", provider))

    def ids(self, kind: str) -> tuple[str, ...]:
        live = self._live.get(kind)
        return live[0] if live else self._fallback.get(kind, ())

    def is_live(self, kind: str) -> bool:
        return kind in self._live

    def unknown(self, kind: str) -> bool:
        """A registered kind none of whose lists was ever read (this run, the last one, the team): it may serve any
        model — unknown, never empty."""
        return kind in self._refresh and kind not in self._live

    def retry_wait(self, kind: str) -> float:
        """Seconds after a failed fetch before the next: LIVE_RETRY, doubled by each failure in a row, bounded."""
        return min(LIVE_RETRY * 2 ** max(0, self._failures.get(kind, 1) - 1), LIVE_RETRY_MOST)

    def due(self, kind: str) -> bool:
        now = self.clock()
        live = self._live.get(kind)
        if live and now - live[1] < self.ttl:
            return False
        return kind not in self._failed or now - self._failed[kind] >= self.retry_wait(kind)

    def keep_current(self, kind: str) -> None:
        """A registered kind's catalogue fetched again (in the background) once it is due."""
        if kind in self._refresh and self.due(kind):
            self._refresh[kind]()

    def put(self, kind: str, ids: Sequence[str], listed: ModelList | None = None) -> None:
        """`listed`: the provider's facts about each model, when its list gives them (a list that could not be
        read this time leaves the last one read: it is dated)."""
        if ids:  # an empty catalogue is no answer: the last one (or the fallback) stays
            self._live[kind] = (tuple(ids), self.clock())
            self._failed.pop(kind, None)
            self._failures.pop(kind, None)
            if listed is not None:
                self._lists[kind] = listed
            self._answered(kind)
        else:
            self.failed(kind)

    def restore(self, kind: str, listed: ModelList) -> None:
        """The list kept from an earlier run: served (said with when it was read) until a fresh one is read, which
        is due at once."""
        self._live[kind] = (tuple(listed.models), self.clock() - self.ttl)
        self._lists[kind] = listed

    def adopt(self, kind: str, listed: ModelList, age: float) -> None:
        """A list read `age` seconds ago elsewhere (the team's: models/listed_kept.py): current for what is left of
        the TTL."""
        self._live[kind] = (tuple(listed.models), self.clock() - age)
        self._lists[kind] = listed
        self._failed.pop(kind, None)
        self._failures.pop(kind, None)

    def model_list(self, kind: str) -> ModelList | None:
        return self._lists.get(kind)

    def listed_tiers(self, kind: str, model: str) -> tuple[Tier, ...] | None:
        """The model's prices as the account's own list gives them (None: it gives none, or was not read)."""
        listed = self._lists.get(kind)
        return listed.tiers(model) if listed is not None else None

    def seen_by(self, kind: str, learned: LearnedFacts) -> LearnedFacts:
        """The facts a body for this account is built with: Qwen's refusals' lessons, then its own list."""
        listed = self._lists.get(kind)
        return learned if listed is None else cast(LearnedFacts, SeenBy(learned, listed))

    def failed(self, kind: str) -> None:
        self._failed[kind] = self.clock()
        self._failures[kind] = self._failures.get(kind, 0) + 1
        self._answered(kind)

    def refused(self, kind: str, model: str) -> None:
        """The upstream said this kind cannot serve `model` (Qwen's model_not_found): out of its list until the list
        is fetched again, which is due at once."""
        if kind in self._live:
            ids, _ = self._live[kind]
            self._live[kind] = (tuple(m for m in ids if m != model), self.clock() - self.ttl)
        self._failed.pop(kind, None)

    def stale(self, kind: str) -> None:
        """The upstream said a model is gone: fetch again at the next chance."""
        if kind in self._live:
            self._live[kind] = (self._live[kind][0], self.clock() - self.ttl)
        self._failed.pop(kind, None)

    def wanted(self) -> None:
        """Starts the refresh of every kind whose catalogue is due (the callables only schedule)."""
        for kind, refresh in self._refresh.items():
            if self.due(kind):
                refresh()

    def gone(self, model: str) -> None:
        """Qwen answered model_not_found for `model` and no list names it: answered here for ABSENT_S (bounded:
        at most ABSENT_MOST models, the oldest forgotten first)."""
        self.absent.pop(model, None)
        self.absent[model] = self.clock()
        while len(self.absent) > ABSENT_MOST:
            del self.absent[next(iter(self.absent))]

    def known_absent(self, model: str) -> float | None:
        """When Qwen said so, while that holds (ABSENT_S) and no list names the model since; else None."""
        said = self.absent.get(model)
        if said is None or self.clock() - said >= ABSENT_S or any(m == model for m, _ in self.listed()):
            self.absent.pop(model, None)
            return None
        return said

    def listed(self) -> list[tuple[str, str]]:
        """(model id, account kind) for every registered kind's current models."""
        return [(m, kind) for kind in self._refresh for m in self.ids(kind)]
