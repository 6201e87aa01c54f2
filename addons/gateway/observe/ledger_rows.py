"""A usage-ledger row: its columns (the same in the SQLite file and the shared database) and how an exchange
becomes one."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING

from ..days import local_day
from ..jsonio import valid_text
from ..cache_usage import read as read_cache
from ..observer import label, usage_int
from ..redact import safe_message

if TYPE_CHECKING:
    from ..exchange import Exchange

ROWS_PER_INSERT = 512  # rows in one INSERT at most (a power of two; the file's parameter limit allowing)
ERROR_CHARS = 300  # an error message (when there is no code) is kept up to this
COLUMNS: dict[str, str] = {
    "ts": "REAL",  # epoch seconds, when the request arrived
    "day": "TEXT",  # local date of ts, YYYY-MM-DD
    "endpoint": "TEXT",  # the endpoint, or the route of a local answer (models, health, unknown, …)
    "model": "TEXT",  # as the client asked
    "upstream_model": "TEXT",
    "account": "TEXT",
    "status": "INTEGER",  # what the client got
    "prompt_tokens": "INTEGER",  # usage reported by Qwen
    "completion_tokens": "INTEGER",
    "cached_tokens": "INTEGER",  # read from Qwen's cache (explicit or implicit: cache_kind)
    "est_tokens": "INTEGER",  # the gateway's own estimate (tiktoken)
    "ttfb_ms": "REAL",
    "duration_ms": "REAL",
    "stream": "INTEGER",
    "retries": "INTEGER",
    "error": "TEXT",  # error code, or the message that ended a stream early
    "token_method": "TEXT",
    "method": "TEXT",  # the client's request line (path without the query)
    "path": "TEXT",
    "key_name": "TEXT",  # the named client key (qwen-keys) the request came with
    "cost": "REAL",  # what it cost (pricing/prices.py), in cost_unit
    "cost_unit": "TEXT",  # USD, a Coding Plan's requests / a Token Plan's tokens, or "unpriced" (cost NULL)
    "cache_write_tokens": "INTEGER",  # stored in Qwen's explicit cache (billed at 125% of the input price)
    "cache_kind": "TEXT",  # explicit or implicit: which cache the request used (their hits are priced apart)
    "cache_saved": "REAL",  # USD the caches took off the prompt's price (negative: writes that cost more)
    "xid": "TEXT",  # the exchange's id (time, then 80 random bits): a batch written again is taken once (UNIQUE)
    # the cache doctor (observe/cache_doctor.py): the conversation's digest (never the client's text or ids), the
    # turn's number, and when it missed more than the turn it continues: why, the tokens and USD lost
    "conversation": "TEXT",
    "cache_turn": "INTEGER",
    "cache_miss": "TEXT",
    "miss_tokens": "INTEGER",
    "miss_usd": "REAL",
    "priced_as": "TEXT",  # the model whose price counted it (qwen_unpriced_as), when it has none of its own
    "priced_by": "TEXT",  # the account's own model list from Qwen (when read) and the tier that priced it
    # times Qwen's stream broke before its end (NULL: never): continued to the whole answer, or ended in `error`
    "cuts": "INTEGER",
    "cache_ttl": "INTEGER",  # seconds the turn's cache markers asked Qwen to keep its prefix (the doctor's; 3600: the hour)
}
# A ledger written before unpriced rows were marked (issue 59) priced nothing for them: its answered rows that no
# price counted are marked unpriced once, when the ledger gains `priced_as` (ledger.py, ledger_pg.py)
UNPRICED_BEFORE = ("UPDATE usage SET cost_unit = 'unpriced' WHERE cost IS NULL AND cost_unit IS NULL AND account "
                   "IS NOT NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL)")


def values(rows: list[dict], names: list[str]) -> list[tuple]:
    """The rows as the databases take them: a client's text (its model name, an error quoting it) may hold a
    lone surrogate, which neither SQLite nor PostgreSQL can store, or a NUL, which PostgreSQL's text refuses.
    The batch's text is looked at once, joined, in C (itemgetter, filter, join: per value in Python this was
    ~30k instructions a row); only when it holds text beyond ASCII or a NUL is each row looked at, and only a
    row that needs it mended value by value."""
    get = operator.itemgetter(*names)
    try:
        out = list(map(get, rows)) if len(names) > 1 else [(row[names[0]],) for row in rows]
    except KeyError:  # a row without some column (rows made by hand): None there
        out = [tuple(map(row.get, names)) for row in rows]
    text = operator.itemgetter(*[i for i, name in enumerate(names) if COLUMNS.get(name) == "TEXT"] or [0])
    try:
        joined = "".join(filter(None, chain.from_iterable(map(text, out))))
    except TypeError:  # a value that is not text in a TEXT column (or a single one): each row looked at below
        joined = "\x00"
    if joined.isascii() and "\x00" not in joined:
        return out
    return [_mended(t) for t in out]


def _mended(t: tuple) -> tuple:
    text = "".join([v for v in t if isinstance(v, str)])
    if not text.isascii() or "\x00" in text:
        return tuple(_storable(v) if isinstance(v, str) else v for v in t)
    return t


def inserts(rows: list[dict], most: int, mark: str) -> Iterator[tuple[str, list]]:
    """The batch as INSERTs, each `(columns) VALUES (…), (…)` and its parameters (`mark`: the driver's
    placeholder), shared by the file and the shared database."""
    one = f"({', '.join([mark] * len(COLUMNS))})"
    head = f"({', '.join(COLUMNS)}) VALUES "
    for part in batches(values(rows, list(COLUMNS)), most):
        yield head + ", ".join([one] * len(part)), list(chain.from_iterable(part))


def batches(rows: list[tuple], most: int) -> Iterator[list[tuple]]:
    """The rows in INSERTs of power-of-two sizes, `most` (a power of two) at most: a few statements per batch
    (each step lets go of the GIL: one per row handed it back to the busy event loop once per request), and a
    few distinct SQL texts whatever the batch sizes — each is prepared and kept by the connection."""
    i, size = 0, most
    while i < len(rows):
        while size > len(rows) - i:
            size //= 2
        yield rows[i:i + size]
        i += size


def _storable(text: str) -> str:
    return valid_text(text).replace("\x00", "\ufffd")


def row_of(ex: Exchange) -> dict:
    """One ledger row from an exchange (cheap: built on the event loop, written later; one dict made at once, the
    usage's cache figures read together: ~45k instructions a request before, ~30k after)."""
    result, attempt = ex.result, ex.attempt
    usage = result.usage if isinstance(result.usage, dict) else None
    cached, written, _, kind = read_cache(usage)
    ts, cache, model, error = ex.started_at, result.cache, ex.requested_model, result.error
    # status_of, error_code and error_text (observer.py) as one look at the result: a success reads two Nones
    message = result.stream_error or (error.message if error is not None else None)
    code = error.code if error is not None else result.stream_error_code
    return {
        "ts": ts, "day": local_day(ts),
        "endpoint": label(ex), "method": ex.client.method, "path": ex.client.path,
        "model": model if isinstance(model, str) and model else None,
        "upstream_model": attempt.model or None, "account": attempt.account or None,
        "status": result.status if result.status is not None or error is None else error.status,
        "prompt_tokens": usage_int(usage, "prompt_tokens"), "completion_tokens": usage_int(usage, "completion_tokens"),
        "cached_tokens": cached,
        "est_tokens": ex.count.tokens, "token_method": ex.count.method,
        "ttfb_ms": ex.ttfb_ms, "duration_ms": ex.duration_ms,
        "stream": int(ex.stream is True), "retries": len(attempt.retries),
        "error": code or (safe_message(message, ERROR_CHARS) if message else None),
        "key_name": ex.key.name or None, "cost": result.cost, "cost_unit": result.cost_unit or None, "xid": ex.id,
        "cache_write_tokens": written, "cache_kind": kind, "cache_saved": result.cache_saved,
        "priced_as": result.priced_as or None, "priced_by": result.priced_by or None, "cuts": result.cuts or None,
        # the cache doctor's (observe/cache_doctor.py), None when it did not see the turn
        "conversation": cache.conversation if cache is not None else None,
        "cache_turn": cache.turn if cache is not None else None,
        "cache_miss": cache.cause if cache is not None else None,
        "miss_tokens": cache.lost if cache is not None else None,
        "miss_usd": cache.lost_usd if cache is not None else None,
        "cache_ttl": cache.lifetime if cache is not None else None,
    }
