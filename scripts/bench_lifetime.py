"""What `qwen_cache_lifetime=auto` saves (issue 71): seeded day shapes of agent sessions played against Qwen4's
explicit cache as its page bills it, under three policies — always five minutes, always an hour, and `auto` (the
gateway's own decision, turn/cache_lifetime.py, on the same clock) — each turn's prompt marked whole, as the gateway
marks it. One user per shape: their key's pauses are what `auto` learns from, session after session.

The cache, per session: the prefix the last request stored and when it expires. A request within that reads it
(the read price) and writes what it adds at its own lifetime's price, renewing the entry with its own lifetime;
after it, it writes its whole prompt again. Prices: the catalogue's qwen4-max row (input $1.50 per million tokens;
reads 5 %, five-minute writes 125 %, hour writes 200 %: source AE). Output is left out (the same under every policy).

A day: SESSIONS sessions of 20 to 40 turns, a turn every 20 to 90 seconds (an answer and the next message), a prompt
of 20,000 tokens growing as its shape says (SHAPES: `large`, 1,000 to 3,000 tokens a turn; `tiny`, 1 to 10 — a
"continue", a tool that printed a line; `mixed`, large turns with one in four tiny), and 0, 1 or 3 pauses a session
of 10 to 50 minutes at random turns.

    .venv/bin/python scripts/bench_lifetime.py        # a Markdown table: USD a day per policy and shape"""

from __future__ import annotations

import random

from qwen_gateway.turn.cache_lifetime import FIVE_S, HOUR_S, Prices, Rhythms, choose
from qwen_gateway.models.catalogue import find

SESSIONS, SEED = 40, 71
# the tokens a turn adds: (least, most) of most turns, and the share of turns that add 1 to 10 tokens
SHAPES = {"large": ((1_000, 3_000), 0.0), "tiny": ((1, 10), 0.0), "mixed": ((1_000, 3_000), 0.25)}
PAUSES = (0, 1, 3)


def qwen4() -> tuple[float, Prices]:
    _, inp, _, _, _, read, write_5m, write_1h = find("qwen4-max").prices["payg:intl"][0]
    return inp, Prices(write_5m / inp, write_1h / inp, read / inp)


def day(pauses: int, rng: random.Random, shape: str = "large") -> list[list[tuple[float, int]]]:
    """Sessions, each its turns' (seconds since the day began, prompt tokens)."""
    (least, most), tiny = SHAPES[shape]
    out, t = [], 0.0
    for _ in range(SESSIONS):
        turns = rng.randint(20, 40)
        long_at = set(rng.sample(range(1, turns), pauses)) if pauses else set()
        t, prompt, session = t + 7200, 20_000, []  # sessions two hours apart: none continues another's cache
        for i in range(turns):
            if i:
                t += rng.uniform(600, 3000) if i in long_at else rng.uniform(20, 90)
                prompt += rng.randint(1, 10) if tiny and rng.random() < tiny else rng.randint(least, most)
            session.append((t, prompt))
        out.append(session)
    return out


def days() -> dict[tuple[str, int], list[list[tuple[float, int]]]]:
    """Every shape's day with 0, 1 and 3 pauses a session, seeded (the large shape's as before shapes existed)."""
    return {(shape, pauses): day(pauses, random.Random(SEED + pauses + 100 * n), shape)
            for n, shape in enumerate(SHAPES) for pauses in PAUSES}


def played(sessions: list[list[tuple[float, int]]], prices: Prices, policy: str) -> float:
    """The day's input cost, in tokens at the input price."""
    clock = [0.0]
    rhythms, cost = Rhythms(clock=lambda: clock[0]), 0.0
    for n, session in enumerate(sessions):
        stored, expires = 0, -1.0
        for t, prompt in session:
            clock[0] = t
            pauses, added = rhythms.turn("user", f"s{n}", prompt)
            hour = policy == "1h" or (policy == "auto" and choose(pauses, prompt, added, prices).hour)
            write = prices.write_1h if hour else prices.write_5m
            cost += stored * prices.read + (prompt - stored) * write if stored and t <= expires else prompt * write
            stored, expires = prompt, t + (HOUR_S if hour else FIVE_S)
    return cost


def main() -> None:
    inp, prices = qwen4()
    print("| turns | long pauses a session | always 5 minutes | always 1 hour | auto | auto vs the cheaper fixed |")
    print("|---|---|---|---|---|---|")
    totals = {"5m": 0.0, "1h": 0.0, "auto": 0.0}
    for (shape, pauses), sessions in days().items():
        usd = {p: played(sessions, prices, p) * inp / 1e6 for p in totals}
        for p in totals:
            totals[p] += usd[p]
        best = min(usd["5m"], usd["1h"])
        print(f"| {shape} | {pauses} | ${usd['5m']:.4f} | ${usd['1h']:.4f} | ${usd['auto']:.4f} | "
              f"{(usd['auto'] - best) / best * 100:+.2f} % |")
    best = min(totals["5m"], totals["1h"])
    print(f"| the nine together | | ${totals['5m']:.2f} | ${totals['1h']:.2f} | ${totals['auto']:.2f} | "
          f"{(totals['auto'] - best) / best * 100:+.2f} % |")


if __name__ == "__main__":
    main()
