"""How every budget's spend is kept and read, whichever budget it is (tenancy/budgets.py declares them): the key's
days (key_day, tenancy/schema.py) for a budget of all its requests, its days per model (key_model_day, here) for a
budget of one model's; a budget's spend is the sum of what it counts (`tokens` or `usd`, the same columns in both
tables) from the first day of its period to today. Written for SQLite (`?`); `storage/pg.placeholders` makes them
psycopg's. On PostgreSQL one function checks every budget of a request at once (`qwen_key_hold_budgets`)."""

from __future__ import annotations

from typing import Any

_MODEL_DAYS = ("CREATE TABLE {ine} key_model_day (name TEXT NOT NULL, model TEXT NOT NULL, day TEXT NOT NULL, "
               "tokens {int} NOT NULL DEFAULT 0, usd {real} NOT NULL DEFAULT 0, PRIMARY KEY (name, model, day))")
_BUDGETS = "ALTER TABLE client_keys ADD COLUMN budgets TEXT NOT NULL DEFAULT ''"
MODEL_DAY_ROW = "name, model, day, tokens, usd"  # every column: what a move carries
ADD_MODEL_SPEND = ("INSERT INTO key_model_day (name, model, day, tokens, usd) VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                   "(name, model, day) DO UPDATE SET tokens = key_model_day.tokens + excluded.tokens, "
                   "usd = key_model_day.usd + excluded.usd")


def sqlite_tables(conn: Any) -> None:
    """A SQLite keys file as this gateway writes it: the `budgets` column and the days per model (a file of before
    gets them empty: its keys have no other budget, and what they spent on each model counts from now)."""
    if "budgets" not in {row[1] for row in conn.execute("PRAGMA table_info(client_keys)")}:
        conn.execute(_BUDGETS)
    conn.execute(_MODEL_DAYS.format(ine="IF NOT EXISTS", int="INTEGER", real="REAL"))


def model_spend_query(today: str, name: str | None = None) -> tuple[str, tuple]:
    """Each key's spend on each model: (name, model, tokens today, USD this month)."""
    sql = ("SELECT name, model, SUM(CASE WHEN day = ? THEN tokens ELSE 0 END), SUM(usd) FROM key_model_day "
           "WHERE day >= ? AND day <= ?" + (" AND name = ?" if name is not None else "") + " GROUP BY name, model")
    return sql, (today, today[:8] + "01", today, *((name,) if name is not None else ()))


_PG = {"ine": "", "int": "BIGINT", "real": "DOUBLE PRECISION"}
# How long a budget check waits for a row a dead gateway's settlement needs (ms): a row locked longer is another
# session's (a stuck gateway's open spend transaction), and the settlement waits for a later check or heartbeat.
# Far below a request's patience, far above a healthy spend transaction's hold on the row (a few ms).
SETTLE_LOCK_MS = 200
# How long a settled hold's note is kept (s): a gateway taken for dead that writes its spend later than this (frozen
# for a day) finds none, and subtracts what it delivered, as before the notes.
SETTLED_KEEP_S = 86400.0
# After tenancy/schema.py's steps, in this order (applied steps are never edited: a change is a new step).
PG_STEPS: tuple[str, ...] = (
    _BUDGETS,
    _MODEL_DAYS.format(**_PG),
    "ALTER TABLE key_holds ADD COLUMN model TEXT NOT NULL DEFAULT ''",  # the model its request went to
    # qwen_key_settle as before, and a dead gateway's delivered answer counted on its model's day too
    """CREATE OR REPLACE FUNCTION qwen_key_settle(p_name TEXT, p_dead DOUBLE PRECISION, p_life DOUBLE PRECISION)
        RETURNS BIGINT
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; n BIGINT;
    BEGIN
        now_s := extract(epoch FROM clock_timestamp());
        WITH dead AS (
            DELETE FROM key_holds h WHERE (p_name IS NULL OR h.name = p_name) AND (h.at <= now_s - p_life
                OR h.gateway IS NOT NULL AND NOT EXISTS (SELECT 1 FROM qwen_gateways g WHERE g.id = h.gateway
                                                         AND g.seen > now_s - p_dead))
            RETURNING h.name, h.model, h.done_tokens, h.done_usd, h.at),
        kept AS (
            SELECT dead.*, to_char(to_timestamp(dead.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day FROM dead
            WHERE dead.done_tokens IS NOT NULL AND EXISTS (SELECT 1 FROM client_keys c WHERE c.name = dead.name)),
        spent AS (
            INSERT INTO key_day AS d (name, day, requests, refused, tokens, usd, plan_requests, plan_tokens,
                                      last_used, unpriced)
            SELECT kept.name, kept.day, COUNT(*), 0, SUM(kept.done_tokens), SUM(COALESCE(kept.done_usd, 0)), 0, 0,
                   MAX(kept.at), 0
            FROM kept GROUP BY 1, 2
            ON CONFLICT (name, day) DO UPDATE SET requests = d.requests + excluded.requests,
                tokens = d.tokens + excluded.tokens, usd = d.usd + excluded.usd,
                last_used = GREATEST(COALESCE(d.last_used, 0), COALESCE(excluded.last_used, 0))
            RETURNING 1),
        on_model AS (
            INSERT INTO key_model_day AS m (name, model, day, tokens, usd)
            SELECT kept.name, kept.model, kept.day, SUM(kept.done_tokens), SUM(COALESCE(kept.done_usd, 0))
            FROM kept WHERE kept.model <> '' GROUP BY 1, 2, 3
            ON CONFLICT (name, model, day) DO UPDATE SET tokens = m.tokens + excluded.tokens,
                usd = m.usd + excluded.usd
            RETURNING 1)
        SELECT COUNT(*) INTO n FROM dead;
        RETURN n;
    END $$""",
    # Every budget that counts a request, checked under the key's budget lock: each one's spend (`p_counts`:
    # tokens or usd, from `p_since` to today, of the key's days or of `p_models`' model's) and the holds it counts
    # read in one statement (one snapshot: a spend written with its hold deleted is counted once); a hold made
    # (on `p_model`) when every one is below its limit, else hold_id 0. `spent`: each budget's, in order.
    """CREATE FUNCTION qwen_key_hold_budgets(p_gateway TEXT, p_dead DOUBLE PRECISION, p_life DOUBLE PRECISION,
        p_name TEXT, p_model TEXT, p_today TEXT, p_tokens BIGINT, p_usd DOUBLE PRECISION, p_counts TEXT[],
        p_since TEXT[], p_models TEXT[], p_limits DOUBLE PRECISION[])
        RETURNS TABLE (hold_id BIGINT, spent DOUBLE PRECISION[])
    LANGUAGE plpgsql AS $$
    DECLARE counted DOUBLE PRECISION[]; new_id BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('qwen-key:' || p_name || ':budget', 0));
        PERFORM qwen_key_settle(p_name, p_dead, p_life);
        SELECT COALESCE(array_agg(b.spent ORDER BY b.i), '{}') INTO counted FROM (
            SELECT l.i, CASE WHEN l.model = '' THEN
                    (SELECT COALESCE(SUM(CASE WHEN l.counts = 'tokens' THEN d.tokens ELSE d.usd END), 0)
                     FROM key_day d WHERE d.name = p_name AND d.day >= l.since AND d.day <= p_today)
                ELSE
                    (SELECT COALESCE(SUM(CASE WHEN l.counts = 'tokens' THEN m.tokens ELSE m.usd END), 0)
                     FROM key_model_day m WHERE m.name = p_name AND m.model = l.model AND m.day >= l.since
                        AND m.day <= p_today) END
                + (SELECT COALESCE(SUM(CASE WHEN l.counts = 'tokens' THEN h.tokens ELSE h.usd END), 0)
                   FROM key_holds h WHERE h.name = p_name AND (l.model = '' OR h.model = l.model)) AS spent
            FROM unnest(p_counts, p_since, p_models) WITH ORDINALITY AS l(counts, since, model, i)) b;
        IF EXISTS (SELECT 1 FROM unnest(counted, p_limits) AS c(spent, lim) WHERE c.spent >= c.lim) THEN
            RETURN QUERY SELECT 0::BIGINT, counted;
            RETURN;
        END IF;
        INSERT INTO key_holds (name, tokens, usd, at, gateway, model)
            VALUES (p_name, p_tokens, p_usd, extract(epoch FROM clock_timestamp()), p_gateway, p_model)
            RETURNING id INTO new_id;
        RETURN QUERY SELECT new_id, counted;
    END $$""",
    # The same check, but a dead gateway's holds are settled only when that needs no wait: a row of the key's spend
    # locked by a stuck session (a gateway frozen or cut off inside its spend transaction) made every request of
    # the key wait under the key's budget lock until the statement_timeout, then 503 (trust round 6). Unsettled,
    # the dead holds count as holds: the check stays exact, never lower.
    """CREATE OR REPLACE FUNCTION qwen_key_hold_budgets(p_gateway TEXT, p_dead DOUBLE PRECISION, p_life DOUBLE PRECISION,
        p_name TEXT, p_model TEXT, p_today TEXT, p_tokens BIGINT, p_usd DOUBLE PRECISION, p_counts TEXT[],
        p_since TEXT[], p_models TEXT[], p_limits DOUBLE PRECISION[])
        RETURNS TABLE (hold_id BIGINT, spent DOUBLE PRECISION[])
    LANGUAGE plpgsql AS $$
    DECLARE counted DOUBLE PRECISION[]; new_id BIGINT; waited TEXT;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtextextended('qwen-key:' || p_name || ':budget', 0));
        waited := current_setting('lock_timeout');
        BEGIN  -- (a subtransaction: a settlement that would wait is undone, the setting with it)
            PERFORM set_config('lock_timeout', 'SETTLE_LOCK_MS', true);
            PERFORM qwen_key_settle(p_name, p_dead, p_life);
            PERFORM set_config('lock_timeout', waited, true);
        EXCEPTION WHEN lock_not_available THEN
            NULL;  -- a row another session holds (a stuck gateway's spend): its dead holds count as holds until then
        END;
        SELECT COALESCE(array_agg(b.spent ORDER BY b.i), '{}') INTO counted FROM (
            SELECT l.i, CASE WHEN l.model = '' THEN
                    (SELECT COALESCE(SUM(CASE WHEN l.counts = 'tokens' THEN d.tokens ELSE d.usd END), 0)
                     FROM key_day d WHERE d.name = p_name AND d.day >= l.since AND d.day <= p_today)
                ELSE
                    (SELECT COALESCE(SUM(CASE WHEN l.counts = 'tokens' THEN m.tokens ELSE m.usd END), 0)
                     FROM key_model_day m WHERE m.name = p_name AND m.model = l.model AND m.day >= l.since
                        AND m.day <= p_today) END
                + (SELECT COALESCE(SUM(CASE WHEN l.counts = 'tokens' THEN h.tokens ELSE h.usd END), 0)
                   FROM key_holds h WHERE h.name = p_name AND (l.model = '' OR h.model = l.model)) AS spent
            FROM unnest(p_counts, p_since, p_models) WITH ORDINALITY AS l(counts, since, model, i)) b;
        IF EXISTS (SELECT 1 FROM unnest(counted, p_limits) AS c(spent, lim) WHERE c.spent >= c.lim) THEN
            RETURN QUERY SELECT 0::BIGINT, counted;
            RETURN;
        END IF;
        INSERT INTO key_holds (name, tokens, usd, at, gateway, model)
            VALUES (p_name, p_tokens, p_usd, extract(epoch FROM clock_timestamp()), p_gateway, p_model)
            RETURNING id INTO new_id;
        RETURN QUERY SELECT new_id, counted;
    END $$""".replace("'SETTLE_LOCK_MS'", f"'{SETTLE_LOCK_MS}'"),
    # Whoever settles a dead gateway's hold notes what it counted (tokens and USD, or nothing: a stream cut, or still
    # running on a gateway only frozen or cut off): that gateway, back, subtracts exactly that from the spend it
    # writes, so a hold is counted once whoever settles it (before: what it delivered later was subtracted as
    # "counted meanwhile" though nothing was, −1,176 tokens after a 15 s freeze; trust round 6).
    "CREATE TABLE key_settled (id BIGINT PRIMARY KEY, tokens BIGINT, usd DOUBLE PRECISION, "
    "at DOUBLE PRECISION NOT NULL)",
    """CREATE OR REPLACE FUNCTION qwen_key_settle(p_name TEXT, p_dead DOUBLE PRECISION, p_life DOUBLE PRECISION)
        RETURNS BIGINT
    LANGUAGE plpgsql AS $$
    DECLARE now_s DOUBLE PRECISION; n BIGINT;
    BEGIN
        now_s := extract(epoch FROM clock_timestamp());
        WITH dead AS (
            DELETE FROM key_holds h WHERE (p_name IS NULL OR h.name = p_name) AND (h.at <= now_s - p_life
                OR h.gateway IS NOT NULL AND NOT EXISTS (SELECT 1 FROM qwen_gateways g WHERE g.id = h.gateway
                                                         AND g.seen > now_s - p_dead))
            RETURNING h.id, h.name, h.model, h.done_tokens, h.done_usd, h.at),
        kept AS (
            SELECT dead.*, to_char(to_timestamp(dead.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day FROM dead
            WHERE dead.done_tokens IS NOT NULL AND EXISTS (SELECT 1 FROM client_keys c WHERE c.name = dead.name)),
        spent AS (
            INSERT INTO key_day AS d (name, day, requests, refused, tokens, usd, plan_requests, plan_tokens,
                                      last_used, unpriced)
            SELECT kept.name, kept.day, COUNT(*), 0, SUM(kept.done_tokens), SUM(COALESCE(kept.done_usd, 0)), 0, 0,
                   MAX(kept.at), 0
            FROM kept GROUP BY 1, 2
            ON CONFLICT (name, day) DO UPDATE SET requests = d.requests + excluded.requests,
                tokens = d.tokens + excluded.tokens, usd = d.usd + excluded.usd,
                last_used = GREATEST(COALESCE(d.last_used, 0), COALESCE(excluded.last_used, 0))
            RETURNING 1),
        on_model AS (
            INSERT INTO key_model_day AS m (name, model, day, tokens, usd)
            SELECT kept.name, kept.model, kept.day, SUM(kept.done_tokens), SUM(COALESCE(kept.done_usd, 0))
            FROM kept WHERE kept.model <> '' GROUP BY 1, 2, 3
            ON CONFLICT (name, model, day) DO UPDATE SET tokens = m.tokens + excluded.tokens,
                usd = m.usd + excluded.usd
            RETURNING 1),
        noted AS (
            INSERT INTO key_settled (id, tokens, usd, at)
            SELECT dead.id, kept.done_tokens, kept.done_usd, now_s FROM dead LEFT JOIN kept ON kept.id = dead.id
            ON CONFLICT (id) DO NOTHING
            RETURNING 1)
        SELECT COUNT(*) INTO n FROM dead;
        DELETE FROM key_settled WHERE at < now_s - {keep};
        RETURN n;
    END $$""".replace("{keep}", f"{SETTLED_KEEP_S:g}"),
)
# Liveness judged on no wall clock (trust round 6): a step of the database's clock made every gateway's last beat look
# that much older, and their holds were settled as dead ones'. Which gateways are gone is now each observer's
# finding (tenancy/liveness.py: a beat that stopped changing, on its own monotonic clock), passed as `p_gone`; the
# database settles those, gateways with no row (stopped), and holds past their life. The old signature's `p_dead`
# is ignored from here on (a gateway of before still calls it: it settles only what has no row).
_SETTLE = PG_STEPS[-1]
_DEAD_BY_TIME = ("NOT EXISTS (SELECT 1 FROM qwen_gateways g WHERE g.id = h.gateway\n"
                 "                                                         AND g.seen > now_s - p_dead))")
assert _DEAD_BY_TIME in _SETTLE
PG_STEPS += (
    _SETTLE.replace("qwen_key_settle(p_name TEXT, p_dead DOUBLE PRECISION,", "qwen_key_settle_gone(p_name TEXT, "
                    "p_gone TEXT[],").replace(_DEAD_BY_TIME, "(h.gateway = ANY(p_gone) OR NOT EXISTS (SELECT 1 FROM "
                                              "qwen_gateways g WHERE g.id = h.gateway)))"),
    """CREATE OR REPLACE FUNCTION qwen_key_settle(p_name TEXT, p_dead DOUBLE PRECISION, p_life DOUBLE PRECISION)
        RETURNS BIGINT LANGUAGE sql AS $$ SELECT qwen_key_settle_gone(p_name, '{}'::TEXT[], p_life) $$""",
)
