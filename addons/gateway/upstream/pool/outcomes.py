"""What the pool does with each outcome the gateway reports of a request (AccountPool.report): an account counted,
cooled (a quota until its window ends, a throttle or an unreachable server for a doubling wait), parked or noted."""

from __future__ import annotations

import time
from typing import Any

from ...accounts import Outcome, Window
from .groups import cool, siblings
from .windows import quota_error, quota_until, throttle_error, throttle_wait

OUTCOMES = tuple(o.value for o in Outcome)


def report(pool: Any, account: str, outcome: Outcome | str, *, retry_after: float | None = None,
           detail: str | None = None, window: Window | None = None) -> None:
    """What happened to a request sent with `pool`'s `account` credential (the AccountPool: its state, groups and
    backoffs; untyped here, or the two modules would import each other) (an Outcome or its value): OK - served
    (counted for today); AUTH - 401, the caller retries once with `refreshed()`; QUOTA - a quota `window` ran
    out: cool down until it ends (windows.py; `retry_after` s when upstream said), `detail` (its words) kept
    for every request refused meanwhile; THROTTLE - cool down `retry_after` s, else 1 s doubling up to 30 s;
    PUNISHED - an anti-bot page: a web session parks itself; PLAN_REFUSED - the plan refused this client
    (`detail`: its User-Agent): counted for status(); UNREACHABLE - its server could not be reached while
    another account took the request: cool down as a throttle does (`detail`: why); ERROR: no change. A quota or
    throttle cools the group."""
    try:
        outcome = Outcome(outcome)
    except ValueError:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}") from None
    now = time.time()
    if outcome is Outcome.OK:
        pool.state.count_request(account)
        pool._throttle_backoff.pop(account, None)
        row = pool.state.get(account)  # from memory: cheap on the request path
        if row["last_error"] and (row["cooldown_until"] or 0) <= now:
            pool.state.set(account, last_error=None)
    elif outcome is Outcome.QUOTA:
        until = now + retry_after if retry_after and retry_after > 0 else quota_until(
            window, now, reset_hour_utc=pool.reset_hour_utc, month_day=getattr(pool._find(account), "month_day", None))
        cool(pool.state, pool._groups, account, until, quota_error(window, detail, until))
    elif outcome is Outcome.THROTTLE:
        wait = throttle_wait(retry_after, pool._throttle_backoff.get(account))
        for member in siblings(pool._groups, account):
            pool._throttle_backoff[member] = wait
        cool(pool.state, pool._groups, account, now + wait, throttle_error(window, detail))
    elif outcome is Outcome.UNREACHABLE:
        wait = throttle_wait(retry_after, pool._throttle_backoff.get(account))
        pool._throttle_backoff[account] = wait
        cool(pool.state, {}, account, now + wait, f"unreachable: {detail or 'its server could not be reached'}")
    elif outcome is Outcome.PLAN_REFUSED:
        pool.refusals.note(account, detail or "")
    elif outcome is Outcome.PUNISHED:
        punished = pool._find(account)
        if punished is not None:
            punished.record_punish()
