"""`qwen_cache_lifetime=auto`: each turn's cache lifetime chosen for the user's money (issue 71).

Qwen4's explicit cache keeps a prefix five minutes at a 125 % write or an hour at 200 % (its "Explicit cache" page;
the catalogue's `cache_ttls` and prices), reads it at the model's read price, and renews an entry on each hit with
the lifetime of the request that read it — free. So an hour costs a turn only the premium on what that turn adds
to the prompt, and saves the whole prompt written again after a pause longer than five minutes.

Each turn: the hour when that premium, (write 1 h − write 5 min) × the tokens this turn adds, is below the rewrite
it expects to avoid, P(5 min < pause ≤ 1 h) × (write 5 min − read) × the prompt (a pause beyond the hour loses the
prompt under both). The chances are the key's own (the named client key's, or the gateway's without one): its
conversations' pauses so far, smoothed toward PRIOR_5M / PRIOR_1H with the weight of PRIOR_PAUSES pauses — one
conversation cannot know its first long pause before it happens; a user's rhythm can, and a light prior lets a
user without long pauses stop paying for the hour within a session (the weight of 20 cost such a day 0.2 %). The prior
alone never buys the hour: a key that has not yet paused past five minutes keeps five minutes, for on turns that
add a few tokens any chance outweighs the premium, paid every turn of a day without a pause (0.17 % over five
minutes, issue 81). Measured on day shapes (large, tiny and mixed turns; 0, 1, 3 pauses a session) against both
fixed lifetimes: scripts/bench_lifetime.py, docs/performance.md.

Pure; bounded (CONVERSATIONS, KEYS); no prompt text, only times and token counts."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FIVE_S, HOUR_S = 300.0, 3600.0
PRIOR_5M, PRIOR_1H, PRIOR_PAUSES = 0.05, 0.01, 5.0
CONVERSATIONS, KEYS = 4096, 1024


@dataclass(frozen=True, slots=True)
class Prices:
    """A model's cache prices as shares of its input price."""

    write_5m: float  # Qwen4: 1.25
    write_1h: float  # 2.00
    read: float  # 0.05


@dataclass(frozen=True, slots=True)
class Choice:
    hour: bool
    saving: float  # expected, in tokens at the input price (negative: what the hour would cost more)
    over_5m: float  # the chance of a pause beyond five minutes, as estimated
    pauses: int  # the key's pauses it was estimated from


class Pauses:
    __slots__ = ("seen", "over_5m", "over_1h")

    def __init__(self) -> None:
        self.seen = self.over_5m = self.over_1h = 0

    def chances(self) -> tuple[float, float]:
        n = self.seen + PRIOR_PAUSES
        return (self.over_5m + PRIOR_5M * PRIOR_PAUSES) / n, (self.over_1h + PRIOR_1H * PRIOR_PAUSES) / n


class Rhythms:
    """Each key's pauses between the turns of its conversations, and each conversation's last turn (its time and
    prompt), the least recently seen forgotten first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.keys: OrderedDict[str, Pauses] = OrderedDict()
        self.last: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def turn(self, key: str, conversation: str, prompt: int) -> tuple[Pauses, int]:
        """The key's pauses with this turn's counted, and the tokens this turn adds to its conversation's prompt."""
        now = self.clock()
        pauses = self.keys.pop(key, None) or Pauses()
        self.keys[key] = pauses
        before = self.last.pop((key, conversation), None)
        self.last[(key, conversation)] = (now, prompt)
        for kept, most in ((self.keys, KEYS), (self.last, CONVERSATIONS)):
            while len(kept) > most:
                kept.popitem(last=False)
        if before is None:
            return pauses, prompt
        pause = now - before[0]
        pauses.seen += 1
        pauses.over_5m += pause > FIVE_S
        pauses.over_1h += pause > HOUR_S
        return pauses, prompt - before[1] if 0 < before[1] <= prompt else prompt


def choose(pauses: Pauses, prompt: int, added: int, prices: Prices) -> Choice:
    """This turn's lifetime (see the module)."""
    over_5m, over_1h = pauses.chances()
    premium = (prices.write_1h - prices.write_5m) * max(0, min(added, prompt))
    # a pause over five minutes but within the hour: the prompt read instead of written again; beyond the hour the
    # two lifetimes lose it alike
    avoided = (over_5m - over_1h) * (prices.write_5m - prices.read) * prompt
    # the prior alone never buys the hour: a key that has not paused past five minutes yet would pay the premium on
    # every turn for a pause that may not come (a day of tiny turns without one: 0.17 % over five minutes)
    return Choice(premium < avoided and pauses.over_5m > 0, avoided - premium, over_5m, pauses.seen)
