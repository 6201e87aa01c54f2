"""The named keys' tables, for SQLite (`<state_dir>/keys.sqlite3`) and PostgreSQL alike (tenancy/store.py,
tenancy/team_pg.py), and their rows as the gateway reads them: records, a day's spend, a delta to add.

    client_keys  name, digest (SHA-256, hex: never the key), rpm, tpm, daily_tokens, monthly_usd, created,
                 changed, revoked (epoch seconds, or NULL), budgets (the other budgets' limits: tenancy/budgets.py)
    key_day      per key and UTC day: requests, refused, tokens, usd, plan_requests, plan_tokens, last_used,
                 unpriced (answers no price counted: their USD is unknown, never 0)
    key_model_day per key, model and UTC day: tokens, usd (what budgets of one model count: tenancy/budget_sql.py)
    key_grants   (PostgreSQL only) the allowance gateways took for rpm and tpm (tenancy/limits.py)
    key_holds    (PostgreSQL only) what running requests hold against their key's budgets (tenancy/holds.py): whose
                 gateway, and the cost of the answer it delivered once it has one
    qwen_gateways (PostgreSQL only) the gateways running on the database: when each was last seen alive
    key_acks     (PostgreSQL only) which gateway applied which qwen-keys change (a token each), or refuses its key
    key_notes    (SQLite only) where the keys went (`moved_to`, qwen-keys migrate) or which database a copy
                 is of (`copy_of`): tenancy/place.py"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from . import budget_sql
from .budgets import decode, meters_kept
from .ring import KeyRecord

COMPONENT = "keys"
_KEYS = ("CREATE TABLE {ine} client_keys (name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, "
         "rpm {int} NOT NULL DEFAULT 0, tpm {int} NOT NULL DEFAULT 0, daily_tokens {int} NOT NULL DEFAULT 0, "
         "monthly_usd {real} NOT NULL DEFAULT 0, created {real} NOT NULL, changed {real} NOT NULL, revoked {real})")
_DAYS = ("CREATE TABLE {ine} key_day (name TEXT NOT NULL, day TEXT NOT NULL, requests {int} NOT NULL DEFAULT 0, "
         "refused {int} NOT NULL DEFAULT 0, tokens {int} NOT NULL DEFAULT 0, usd {real} NOT NULL DEFAULT 0, "
         "plan_requests {int} NOT NULL DEFAULT 0, plan_tokens {int} NOT NULL DEFAULT 0, last_used {real}, "
         "PRIMARY KEY (name, day))")
_UNPRICED = "ALTER TABLE key_day ADD COLUMN unpriced {int} NOT NULL DEFAULT 0"  # added after the first release
SQLITE_SCHEMA = ";\n".join(s.format(ine="IF NOT EXISTS", int="INTEGER", real="REAL") for s in (_KEYS, _DAYS)) + ";"
_PG = {"ine": "", "int": "BIGINT", "real": "DOUBLE PRECISION"}
PG_STEPS = (
    _KEYS.format(**_PG),
    _DAYS.format(**_PG),
    "CREATE TABLE key_grants (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, amount BIGINT NOT NULL)",
    "CREATE INDEX key_grants_window ON key_grants (name, kind, at)",
    # One round trip, atomic under the key's advisory lock, on the database's clock (gateways' clocks may
    # differ): drop what left the window, and grant `want` (up to `chunk`) if it fits under `limit`; else
    # say when the oldest grant leaves the window.
    """CREATE FUNCTION qwen_key_take(p_name TEXT, p_kind TEXT, p_want BIGINT, p_chunk BIGINT, p_limit BIGINT,
        p_window DOUBLE PRECISION) RETURNS TABLE (granted BIGINT, grant_id BIGINT, retry_after DOUBLE PRECISION)
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; used BIGINT; oldest DOUBLE PRECISION; give BIGINT; new_id BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('qwen-key:' || p_name || ':' || p_kind, 0));
        now_s := extract(epoch FROM clock_timestamp());
        DELETE FROM key_grants g WHERE g.name = p_name AND g.kind = p_kind AND g.at <= now_s - p_window;
        SELECT COALESCE(SUM(g.amount), 0), MIN(g.at) INTO used, oldest FROM key_grants g
            WHERE g.name = p_name AND g.kind = p_kind;
        IF used + p_want > p_limit THEN
            RETURN QUERY SELECT 0::BIGINT, 0::BIGINT, GREATEST(COALESCE(oldest + p_window - now_s, p_window), 0.0);
            RETURN;
        END IF;
        give := GREATEST(p_want, LEAST(p_chunk, p_limit - used));
        INSERT INTO key_grants (name, kind, at, amount) VALUES (p_name, p_kind, now_s, give) RETURNING id INTO new_id;
        RETURN QUERY SELECT give, new_id, 0.0::DOUBLE PRECISION;
    END $$""",
    # qwen_key_take, also saying how much of the window is in use and when it is empty again: the rate-limit
    # headers clients read (tenancy/rate_headers.py). Gateways of before still call qwen_key_take.
    """CREATE FUNCTION qwen_key_grant(p_name TEXT, p_kind TEXT, p_want BIGINT, p_chunk BIGINT, p_limit BIGINT,
        p_window DOUBLE PRECISION) RETURNS TABLE (granted BIGINT, grant_id BIGINT, retry_after DOUBLE PRECISION,
        used BIGINT, reset_after DOUBLE PRECISION)
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; in_use BIGINT; oldest DOUBLE PRECISION; newest DOUBLE PRECISION; give BIGINT;
        new_id BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('qwen-key:' || p_name || ':' || p_kind, 0));
        now_s := extract(epoch FROM clock_timestamp());
        DELETE FROM key_grants g WHERE g.name = p_name AND g.kind = p_kind AND g.at <= now_s - p_window;
        SELECT COALESCE(SUM(g.amount), 0), MIN(g.at), MAX(g.at) INTO in_use, oldest, newest FROM key_grants g
            WHERE g.name = p_name AND g.kind = p_kind;
        IF in_use + p_want > p_limit THEN
            RETURN QUERY SELECT 0::BIGINT, 0::BIGINT, GREATEST(COALESCE(oldest + p_window - now_s, p_window), 0.0),
                in_use, GREATEST(COALESCE(newest + p_window - now_s, 0.0), 0.0);
            RETURN;
        END IF;
        give := GREATEST(p_want, LEAST(p_chunk, p_limit - in_use));
        INSERT INTO key_grants (name, kind, at, amount) VALUES (p_name, p_kind, now_s, give) RETURNING id INTO new_id;
        RETURN QUERY SELECT give, new_id, 0.0::DOUBLE PRECISION, in_use + give, p_window;
    END $$""",
    # What the requests running on every gateway hold against their key's budgets (tenancy/holds.py):
    # one row per request, deleted in the transaction that writes its spend.
    "CREATE TABLE key_holds (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, tokens BIGINT NOT NULL, "
    "usd DOUBLE PRECISION NOT NULL, at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX key_holds_name ON key_holds (name, at)",
    # Under the key's budget lock, on the database's clock: the key's spend (today's tokens, this month's USD)
    # and its holds read in one statement (one snapshot: a spend written with its hold deleted is counted
    # once), and a hold made when that is below every budget; else hold_id 0.
    """CREATE FUNCTION qwen_key_hold(p_name TEXT, p_today TEXT, p_month_start TEXT, p_tokens BIGINT,
        p_usd DOUBLE PRECISION, p_daily BIGINT, p_monthly DOUBLE PRECISION, p_life DOUBLE PRECISION)
        RETURNS TABLE (hold_id BIGINT, tokens_today BIGINT, usd_month DOUBLE PRECISION)
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; t BIGINT; u DOUBLE PRECISION; new_id BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('qwen-key:' || p_name || ':budget', 0));
        now_s := extract(epoch FROM clock_timestamp());
        DELETE FROM key_holds h WHERE h.name = p_name AND h.at <= now_s - p_life;
        SELECT (SELECT COALESCE(SUM(d.tokens), 0) FROM key_day d WHERE d.name = p_name AND d.day = p_today)
                + (SELECT COALESCE(SUM(h.tokens), 0) FROM key_holds h WHERE h.name = p_name),
               (SELECT COALESCE(SUM(d.usd), 0) FROM key_day d WHERE d.name = p_name AND d.day >= p_month_start
                    AND d.day <= p_today)
                + (SELECT COALESCE(SUM(h.usd), 0) FROM key_holds h WHERE h.name = p_name)
            INTO t, u;
        IF (p_daily > 0 AND t >= p_daily) OR (p_monthly > 0 AND u >= p_monthly) THEN
            RETURN QUERY SELECT 0::BIGINT, t, u;
            RETURN;
        END IF;
        INSERT INTO key_holds (name, tokens, usd, at) VALUES (p_name, p_tokens, p_usd, now_s) RETURNING id INTO new_id;
        RETURN QUERY SELECT new_id, t, u;
    END $$""",
    _UNPRICED.format(**_PG),
    # Holds that die with their gateway (issue 68): each gateway on the database says it is alive every few seconds
    # (tenancy/holds.py); a hold is its gateway's, and carries the delivered answer's cost once it has one. A hold
    # whose gateway is dead (not seen for p_dead s) or that outlived p_life s ends — what its gateway delivered
    # becoming its key's spend, a request that was not (cut with its gateway) nothing.
    "CREATE TABLE qwen_gateways (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL, "
    "started DOUBLE PRECISION NOT NULL, seen DOUBLE PRECISION NOT NULL)",
    "ALTER TABLE key_holds ADD COLUMN gateway TEXT, ADD COLUMN done_tokens BIGINT, ADD COLUMN done_usd DOUBLE PRECISION",
    """CREATE FUNCTION qwen_key_settle(p_name TEXT, p_dead DOUBLE PRECISION, p_life DOUBLE PRECISION)
        RETURNS BIGINT
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; n BIGINT;
    BEGIN
        now_s := extract(epoch FROM clock_timestamp());
        WITH dead AS (
            DELETE FROM key_holds h WHERE (p_name IS NULL OR h.name = p_name) AND (h.at <= now_s - p_life
                OR h.gateway IS NOT NULL AND NOT EXISTS (SELECT 1 FROM qwen_gateways g WHERE g.id = h.gateway
                                                         AND g.seen > now_s - p_dead))
            RETURNING h.name, h.done_tokens, h.done_usd, h.at),
        spent AS (
            INSERT INTO key_day AS d (name, day, requests, refused, tokens, usd, plan_requests, plan_tokens,
                                      last_used, unpriced)
            SELECT dead.name, to_char(to_timestamp(dead.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), COUNT(*), 0,
                   SUM(dead.done_tokens), SUM(COALESCE(dead.done_usd, 0)), 0, 0, MAX(dead.at), 0
            FROM dead WHERE dead.done_tokens IS NOT NULL
                AND EXISTS (SELECT 1 FROM client_keys c WHERE c.name = dead.name)
            GROUP BY 1, 2
            ON CONFLICT (name, day) DO UPDATE SET requests = d.requests + excluded.requests,
                tokens = d.tokens + excluded.tokens, usd = d.usd + excluded.usd,
                last_used = GREATEST(COALESCE(d.last_used, 0), COALESCE(excluded.last_used, 0))
            RETURNING 1)
        SELECT COUNT(*) INTO n FROM dead;
        RETURN n;
    END $$""",
    """CREATE FUNCTION qwen_key_hold_by(p_gateway TEXT, p_dead DOUBLE PRECISION, p_name TEXT, p_today TEXT,
        p_month_start TEXT, p_tokens BIGINT, p_usd DOUBLE PRECISION, p_daily BIGINT, p_monthly DOUBLE PRECISION,
        p_life DOUBLE PRECISION) RETURNS TABLE (hold_id BIGINT, tokens_today BIGINT, usd_month DOUBLE PRECISION)
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; t BIGINT; u DOUBLE PRECISION; new_id BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('qwen-key:' || p_name || ':budget', 0));
        PERFORM qwen_key_settle(p_name, p_dead, p_life);
        now_s := extract(epoch FROM clock_timestamp());
        SELECT (SELECT COALESCE(SUM(d.tokens), 0) FROM key_day d WHERE d.name = p_name AND d.day = p_today)
                + (SELECT COALESCE(SUM(h.tokens), 0) FROM key_holds h WHERE h.name = p_name),
               (SELECT COALESCE(SUM(d.usd), 0) FROM key_day d WHERE d.name = p_name AND d.day >= p_month_start
                    AND d.day <= p_today)
                + (SELECT COALESCE(SUM(h.usd), 0) FROM key_holds h WHERE h.name = p_name)
            INTO t, u;
        IF (p_daily > 0 AND t >= p_daily) OR (p_monthly > 0 AND u >= p_monthly) THEN
            RETURN QUERY SELECT 0::BIGINT, t, u;
            RETURN;
        END IF;
        INSERT INTO key_holds (name, tokens, usd, at, gateway) VALUES (p_name, p_tokens, p_usd, now_s, p_gateway)
            RETURNING id INTO new_id;
        RETURN QUERY SELECT new_id, t, u;
    END $$""",
    # A change applied everywhere (issue 68): qwen-keys waits until every running gateway said it applied its change
    "CREATE TABLE key_acks (token TEXT NOT NULL, gateway TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, "
    "refusing BOOLEAN NOT NULL DEFAULT false, PRIMARY KEY (token, gateway))",
    *budget_sql.PG_STEPS,  # every budget declared once (tenancy/budgets.py): their limits, days per model, one check
    "ALTER TABLE qwen_gateways ADD COLUMN quiet TEXT",  # each peer's quiet seconds, as this gateway saw (liveness.py)
)

FIRST_KEY_COLUMNS = "name, digest, rpm, tpm, daily_tokens, monthly_usd, revoked"  # what every release's table has
KEY_COLUMNS = FIRST_KEY_COLUMNS + ", budgets"
LIMITS = ("rpm", "tpm", "daily_tokens", "monthly_usd")


def record_of(row: tuple) -> KeyRecord:
    """A row of KEY_COLUMNS (or of FIRST_KEY_COLUMNS: no other budget)."""
    return KeyRecord(row[0], bytes.fromhex(row[1]), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0),
                     float(row[5] or 0), row[6] is not None, budgets=decode(row[7]) if len(row) > 7 else ())


def add_columns(conn: Any) -> None:
    """A SQLite file's tables as this gateway writes them: the columns and tables added since the first release
    (an older gateway's days count 0 there)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(key_day)")}
    if "unpriced" not in have:
        conn.execute(_UNPRICED.format(int="INTEGER"))
    budget_sql.sqlite_tables(conn)


@dataclass
class Tally:
    """What a key spent on one model: the meters a budget of one model reads (tenancy/budgets.py)."""

    tokens_today: int = 0
    usd_month: float = 0.0


@dataclass
class Spent:
    """A key's spend this UTC day (tokens, requests, refusals) and month (USD, plan units, the answers no price
    counted: their USD is unknown), and on each model (`models`)."""

    tokens_today: int = 0
    requests_today: int = 0
    refused_today: int = 0
    usd_month: float = 0.0
    plan_requests_month: int = 0
    plan_tokens_month: int = 0
    last_used: float | None = None
    unpriced_month: int = 0
    models: dict[str, Tally] = field(default_factory=dict)


meters_kept(Spent, Tally)  # a budget over a meter not kept above refuses to load (tenancy/budgets.py)


@dataclass
class Delta:
    """Spend not yet written, for one key and day."""

    requests: int = 0
    refused: int = 0
    tokens: int = 0
    usd: float = 0.0
    plan_requests: int = 0
    plan_tokens: int = 0
    last_used: float | None = None
    unpriced: int = 0
    models: dict[str, list] = field(default_factory=dict)  # model -> [tokens, usd] (key_model_day)

    def values(self) -> tuple:
        return (self.requests, self.refused, self.tokens, self.usd, self.plan_requests, self.plan_tokens,
                self.last_used, self.unpriced)


def spend_query(today: str, name: str | None = None) -> tuple[str, tuple]:
    """Each key's spend today and this month (one statement, `?` placeholders)."""
    month_start = today[:8] + "01"
    sql = ("SELECT name, SUM(CASE WHEN day = ? THEN tokens ELSE 0 END), SUM(CASE WHEN day = ? THEN requests ELSE 0 END), "
           "SUM(CASE WHEN day = ? THEN refused ELSE 0 END), SUM(usd), SUM(plan_requests), SUM(plan_tokens), "
           "MAX(last_used), SUM(unpriced) FROM key_day WHERE day >= ? AND day <= ?" + (" AND name = ?" if name is not None else "")
           + " GROUP BY name")
    return sql, (today, today, today, month_start, today, *((name,) if name is not None else ()))


def spent_of(row: tuple) -> Spent:
    return Spent(int(row[1] or 0), int(row[2] or 0), int(row[3] or 0), float(row[4] or 0), int(row[5] or 0),
                 int(row[6] or 0), float(row[7]) if row[7] else None, int(row[8] or 0))


def add_spend_sql(greatest: str) -> str:
    """Adds a delta to a key's day: gateways sharing the table add, never overwrite."""
    add = ", ".join(f"{c} = key_day.{c} + excluded.{c}" for c in
                    ("requests", "refused", "tokens", "usd", "plan_requests", "plan_tokens", "unpriced"))
    return ("INSERT INTO key_day (name, day, requests, refused, tokens, usd, plan_requests, plan_tokens, last_used, "
            f"unpriced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, day) DO UPDATE SET {add}, "
            f"last_used = {greatest}(COALESCE(key_day.last_used, 0), COALESCE(excluded.last_used, 0))")


# ---- notes: where a folder's keys went, which database a copy is of (tenancy/place.py) ----------------------

MOVED_TO = "moved_to"  # keys.sqlite3: its keys were moved to this database (qwen-keys migrate): none are left here
COPY_OF = "copy_of"  # keys-shared.sqlite3: the database whose keys it copies
NOTES = "CREATE TABLE IF NOT EXISTS key_notes (note TEXT PRIMARY KEY, value TEXT NOT NULL, at REAL NOT NULL)"
# every column, to move a key whole: its record, when it was made, changed and revoked; each day's spend
KEY_ROW = "name, digest, rpm, tpm, daily_tokens, monthly_usd, created, changed, revoked, budgets"
DAY_ROW = "name, day, requests, refused, tokens, usd, plan_requests, plan_tokens, last_used, unpriced"


def read_note(conn: Any, note: str) -> tuple[str, float] | None:
    """A SQLite file's note (value, when), or None (none; a file of before, without the table)."""
    try:
        row = conn.execute("SELECT value, at FROM key_notes WHERE note = ?", (note,)).fetchone()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return None
        raise
    return (str(row[0]), float(row[1])) if row else None


def write_note(conn: Any, note: str, value: str | None) -> None:
    """Inside the caller's transaction (a SQLite file): the note set, or removed (None)."""
    conn.execute(NOTES)
    conn.execute("DELETE FROM key_notes WHERE note = ?", (note,))
    if value is not None:
        conn.execute("INSERT INTO key_notes (note, value, at) VALUES (?, ?, ?)", (note, value, time.time()))
