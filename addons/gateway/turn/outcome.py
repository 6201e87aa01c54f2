"""What other modules ask of the turn, which alone writes an exchange's `result` and `turn` (docs/architecture.md,
"Who writes what"): the facts an endpoint, a transport or an observer learns, told here rather than written
into the parts; and what they may read of the live stream, which stays the turn's (`ex.turn.rewriter`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..cache_turn import CacheTurn
from ..exchange import Exchange


def stream_broken(ex: Exchange, message: str) -> None:
    """A stream the client got that ended with an error event (`message`), or was cancelled."""
    ex.result.stream_error = message


def client_left(ex: Exchange, message: str) -> None:
    """The client went away mid-answer: 499, unless the turn had an outcome already."""
    ex.result.stream_error = ex.result.stream_error or message
    ex.result.status = ex.result.status or 499


def ended(ex: Exchange) -> None:
    """A transport's turn at its end: served (200) unless it failed before."""
    if ex.result.status is None:
        ex.result.status = 200


def cache_judged(ex: Exchange, verdict: CacheTurn) -> None:
    """The cache doctor's verdict on the turn (observe/cache_doctor.py)."""
    ex.result.cache = verdict


def keep_before_end(ex: Exchange) -> None:
    """The endpoint keeps the answer before a stream's end goes out (turn/kept_before_end.py)."""
    ex.turn.keep_before_end = True


def keeping(ex: Exchange, write: Any) -> None:
    """The endpoint's write of the answer (a future): the answer's end waits for it."""
    ex.turn.write = write


def kept_too(ex: Exchange, write: Any) -> None:
    """Another write a whole answer's end waits for (a future that never fails, bounded: a delivered answer's cost
    on its key's hold), with the endpoint's if it has one."""
    ex.turn.write = write if ex.turn.write is None else asyncio.gather(ex.turn.write, write)


def before_end(ex: Exchange, write: Callable[[Exchange], Awaitable[None] | None]) -> None:
    """`write(ex)` is called when a stream's final events are parked, and they wait for what it returns (never a
    failure, bounded): a delivered answer's cost on its key's hold (tenancy/team.py) before the client hears the end."""
    ex.turn.keep_before_end = True
    ex.turn.before_end.append(write)


def translated_already(ex: Exchange) -> None:
    """A fork whose request was translated and checked by the exchange it came from (a background run)."""
    ex.turn.translated = True


def handed_on(ex: Exchange) -> None:
    """A background run took the request on: its end is told once, by the run's exchange."""
    ex.turn.handed_on = True


# ---- what others read of the live stream ------------------------------------------------------------------


def streamed(ex: Exchange) -> bool:
    """The turn pumps its answer as a stream of the client's events."""
    return ex.turn.rewriter is not None


def stream_translator(ex: Exchange) -> Any:
    """The client's stream translator of a streamed turn (what it kept of the answer), or None."""
    return ex.turn.rewriter.translator if ex.turn.rewriter is not None else None


def stream_error_code(ex: Exchange) -> str | None:
    """The code of the error event a stream ended with, when it had one."""
    err = ex.turn.rewriter.error if ex.turn.rewriter is not None else None
    code = err.get("code") if isinstance(err, dict) else None
    return str(code) if code else None


def stream_usage(ex: Exchange) -> dict | None:
    """The usage a streamed turn's upstream reported (so far), or None."""
    return ex.turn.rewriter.normalizer.usage if ex.turn.rewriter is not None else None


def finish_reasons(ex: Exchange) -> tuple[str, ...] | None:
    """A streamed turn's finish reasons, by choice, as its chunk source saw them; None for a whole answer."""
    rw = ex.turn.rewriter
    return None if rw is None else tuple(r for _, r in sorted(rw.normalizer.finish_reasons.items()))
