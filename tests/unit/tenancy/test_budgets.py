"""Budgets declared once (tenancy/budgets.py): the first release's two are declarations whose refusals read as they
always did; what a declaration says (what it counts, over which period, of which requests) is all the check, the
holds and the stores need — shown here with a budget of one model's requests declared in the test itself, counted in
memory and on a real PostgreSQL; and a keys file or database of before is brought up to date without losing a
thing (the functions older gateways call still answer)."""

from __future__ import annotations

import asyncio
import calendar
import sqlite3

import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.errors import GatewayError
from qwen_gateway.tenancy import budget_sql, budgets, refusals
from qwen_gateway.tenancy.budgets import DAILY_TOKENS, MONTHLY_USD, USD, Budget, Line
from qwen_gateway.tenancy.holds import MemoryHolds, SharedHolds
from qwen_gateway.tenancy.ring import Keyring, KeyRecord
from qwen_gateway.tenancy.schema import COMPONENT, PG_STEPS, SQLITE_SCHEMA, Delta, Tally
from qwen_gateway.tenancy.spend import SpendBook
from qwen_gateway.tenancy.store import KeyStore
from qwen_gateway.tenancy.team import Team
from qwen_gateway.tenancy.team_budgets import BudgetChecks
from qwen_gateway.tenancy.team_pg import SharedKeys
from qwen_gateway.storage.pg import Database
from qwen_gateway.storage.pg_tasks import close_pools

TODAY = "2026-03-14"
ON_ONE_MODEL = Budget("test-model-usd", USD, budgets.MONTH, True, "USD a month on one model", "Key {key!r}: {model}",
                      "key {key!r}: {model}")  # declared here: the mechanism needs nothing more of it


@pytest.fixture(autouse=True)
async def _pools_closed():
    yield
    await close_pools()


def test_the_first_two_budgets_are_declarations_and_say_what_they_always_said():
    assert [b.flag for b in budgets.BUDGETS[:2]] == ["daily-tokens", "monthly-usd"]
    assert (DAILY_TOKENS.meter, MONTHLY_USD.meter) == ("tokens_today", "usd_month")
    rec = KeyRecord("ci", daily_tokens=20, monthly_usd=5)
    assert budgets.lines(rec, "any-model") == [Line(DAILY_TOKENS, "", 20.0), Line(MONTHLY_USD, "", 5.0)]
    now = calendar.timegm((2026, 11, 23, 14, 3, 0))
    assert refusals.over_daily(rec, 22, now=now).message == (
        "Key 'ci' has used its daily budget: 22 of 20 tokens today (qwen-keys --daily-tokens). It resets at 00:00 "
        "UTC, in 9 h 57 min.")
    assert refusals.over_monthly(rec, 5.25, "anthropic", now).message == (
        "You have reached your specified API usage limits. You will regain access on 2026-12-01 at 00:00 UTC. "
        "(key 'ci': $5.25 of $5.00 this month, qwen-keys --monthly-usd)")
    unpriced = refusals.unpriced("ci", "qwen3.7-flash", Line(MONTHLY_USD, "", 5.0)).message
    assert "has a monthly USD budget (qwen-keys --monthly-usd)" in unpriced
    assert unpriced.endswith("(qwen-keys set NAME --monthly-usd 0 --daily-tokens N).")


def test_a_flags_value_and_the_budgets_column():
    assert budgets.parse(DAILY_TOKENS, "20") == ("", 20.0) and budgets.parse(MONTHLY_USD, "$2.5") == ("", 2.5)
    assert budgets.parse(ON_ONE_MODEL, "qwen3-max=1.5") == ("qwen3-max", 1.5)
    for budget, bad in ((DAILY_TOKENS, "1.5"), (MONTHLY_USD, "nan"), (ON_ONE_MODEL, "1.5"), (ON_ONE_MODEL, "=1")):
        with pytest.raises(ValueError):
            budgets.parse(budget, bad)
    entries = budgets.merged(None, {"test-model-usd": [("qwen3-max", 1.5), ("qwen-plus", 2.0)]})
    assert budgets.decode(budgets.encode(entries)) == entries
    rec = KeyRecord("k", budgets=entries)
    assert budgets.merged(rec, {"test-model-usd": [("qwen3-max", 0.0)]}) == (("test-model-usd", "qwen-plus", 2.0),)
    assert budgets.decode("") == () and budgets.encode(()) == ""


async def test_a_budget_of_one_model_counts_that_models_spend_and_holds_alone(monkeypatch):
    monkeypatch.setattr(budgets, "BUDGETS", (*budgets.BUDGETS, ON_ONE_MODEL))
    rec = KeyRecord("k", budgets=(("test-model-usd", "qwen3-max", 1.0),))
    assert budgets.lines(rec, "qwen-plus") == [] and budgets.lines(rec, "qwen3-max") == [Line(ON_ONE_MODEL,
                                                                                           "qwen3-max", 1.0)]
    book = SpendBook()
    book.charge("k", requests=1, tokens=10, usd=0.75, model="qwen3-max")
    book.charge("k", requests=1, tokens=10, usd=5.0, model="qwen-plus")
    spent = book.spent("k")
    assert spent.models == {"qwen3-max": Tally(10, 0.75), "qwen-plus": Tally(10, 5.0)} and spent.usd_month == 5.75
    line = budgets.lines(rec, "qwen3-max")[0]
    assert budgets.spent_on(line, spent) == 0.75
    (pending,) = book.take_pending().values()
    assert pending.models == {"qwen3-max": [10, 0.75], "qwen-plus": [10, 5.0]}
    line = line._replace(limit=0.75)  # $0.50 spent (below), $0.25 a request: one hold at a time
    mem = MemoryHolds()
    first, counted = await mem.take("k", 10, 0.25, [line], [0.5], TODAY, "qwen3-max")
    assert first is not None and counted == (0.5,)
    other, _ = await mem.take("k", 10, 9.0, [Line(MONTHLY_USD, "", 100.0)], [0.0], TODAY, "qwen-plus")
    assert other is not None  # another model's hold: not this budget's
    second, counted = await mem.take("k", 10, 0.25, [line], [0.5], TODAY, "qwen3-max")
    assert second is None and counted == (0.75,)
    mem.release(first)
    assert (await mem.take("k", 10, 0.25, [line], [0.5], TODAY, "qwen3-max"))[0] is not None


async def test_a_request_over_a_budget_is_refused_in_its_words_before_it_holds_anything():
    team = Team()
    assert isinstance(team, BudgetChecks)
    rec = KeyRecord("ci", daily_tokens=20)
    team.ring = Keyring((rec,))
    team.book.charge("ci", requests=1, tokens=25, model="qwen3-coder-plus")
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"))
    team.bind(ex, rec)
    with pytest.raises(GatewayError) as e:
        await team.limit(ex)
    assert e.value.status == 429 and "25 of 20 tokens today" in e.value.message and ex.key.hold is None


async def test_every_budget_of_a_request_in_one_function_across_two_gateways(pg_url, monkeypatch):
    monkeypatch.setattr(budgets, "BUDGETS", (*budgets.BUDGETS, ON_ONE_MODEL))
    dbs = [Database(pg_url, max_size=8), Database(pg_url, max_size=8)]
    try:
        await dbs[0].amigrate(COMPONENT, PG_STEPS)
        await dbs[0].fetch("INSERT INTO client_keys (name, digest, created, changed) VALUES ('k', '00', 0, 0) "
                           "RETURNING name")
        holds = [SharedHolds(db) for db in dbs]
        model, wide = Line(ON_ONE_MODEL, "qwen3-max", 1.25), Line(MONTHLY_USD, "", 10.0)
        got = await asyncio.gather(*(holds[i % 2].take("k", 10, 0.25, [wide, model], [0.0, 0.0], TODAY, "qwen3-max")
                                     for i in range(12)))
        made = [h for h, _ in got if h is not None]
        assert len(made) == 5  # $1.25 on the model, $0.25 a request: exactly five at once, on both gateways
        assert all(c == (1.25, 1.25) for h, c in got if h is None)
        other, counted = await holds[0].take("k", 10, 0.25, [wide], [0.0], TODAY, "qwen-plus")
        assert other is not None and counted == (1.25,)  # the key's budget counts every model's holds
        holds[0].release(made[0])  # its spend and the end of its hold: one transaction, counted once
        spent = Delta(requests=1, tokens=10, usd=0.5, models={"qwen3-max": [10, 0.5]})
        await SharedKeys(dbs[0]).write_spend({("k", TODAY): spent}, *holds[0].take_released())
        _, counted = await holds[1].take("k", 10, 0.25, [model], [0.0], TODAY, "qwen3-max")
        assert counted == (0.5 + 4 * 0.25,)
        assert (await SharedKeys(dbs[1]).spend(TODAY))["k"].models == {"qwen3-max": Tally(10, 0.5)}
    finally:
        for db in dbs:
            await db.aclose()


async def test_a_database_of_before_is_brought_up_to_date_and_older_gateways_still_count(pg_url):
    before = PG_STEPS[:len(PG_STEPS) - len(budget_sql.PG_STEPS)]
    db = Database(pg_url, max_size=4)
    try:
        await db.amigrate(COMPONENT, before)  # as the release before this one left it
        await db.fetch("INSERT INTO client_keys (name, digest, daily_tokens, created, changed) VALUES "
                       "('old', 'aa', 100, 0, 0) RETURNING name")
        await db.fetch("INSERT INTO key_day (name, day, requests, tokens) VALUES ('old', %s, 1, 60) RETURNING name",
                       (TODAY,))
        await Database(pg_url).amigrate(COMPONENT, PG_STEPS)  # this release's gateway starts on it
        keys = SharedKeys(db)
        assert [r.name for r in await keys.keys()] == ["old"] and (await keys.keys())[0].daily_tokens == 100
        assert (await keys.spend(TODAY))["old"].tokens_today == 60
        await db.fetch("INSERT INTO qwen_gateways (id, host, pid, started, seen) VALUES ('gw-old', 'h', 1, 0, "
                       "extract(epoch FROM clock_timestamp())) RETURNING id")  # a gateway of before, running
        rows = await db.fetch("SELECT hold_id, tokens_today FROM qwen_key_hold_by('gw-old', 15, 'old', %s, %s, 30, "
                              "0, 100, 0, 900)", (TODAY, TODAY[:8] + "01"))
        assert rows[0][0] > 0 and rows[0][1] == 60
        daily = [Line(DAILY_TOKENS, "", 100.0)]
        hold, counted = await SharedHolds(db).take("old", 20, 0.0, daily, [0.0], TODAY)
        assert hold is not None and counted == (90.0,)  # the older gateway's hold counts here
        hold, counted = await SharedHolds(db).take("old", 20, 0.0, daily, [0.0], TODAY)
        assert hold is None and counted == (110.0,)
    finally:
        await db.aclose()


def test_a_keys_file_of_before_gets_the_budgets_column_and_the_days_per_model(tmp_path):
    conn = sqlite3.connect(tmp_path / "keys.sqlite3")
    conn.executescript(SQLITE_SCHEMA)
    conn.execute("INSERT INTO client_keys (name, digest, monthly_usd, created, changed) VALUES ('a', 'ab', 2, 0, 0)")
    conn.commit()
    conn.close()
    store = KeyStore.local(tmp_path)
    try:
        assert store.keys() == (KeyRecord("a", b"\xab", monthly_usd=2.0),)
        store.write_spend({("a", TODAY): Delta(requests=1, tokens=5, usd=0.5, models={"qwen3-max": [5, 0.5]})})
        assert store.spend(today=TODAY)["a"].models == {"qwen3-max": Tally(5, 0.5)}
    finally:
        store.close()


def test_a_budget_over_a_meter_the_stores_do_not_keep_refuses_to_load():
    """A monthly token budget (or a daily USD one on a model) would read a meter neither Spent nor a model's Tally
    keeps: before, `spent_on` read it as 0 and the budget never refused, silently (issue 80 item 3)."""
    from qwen_gateway.tenancy.schema import Spent, Tally

    monthly_tokens = budgets.Budget("monthly-tokens", budgets.TOKENS, budgets.MONTH, False, "", "", "")
    daily_usd_on_a_model = budgets.Budget("model-daily-usd", budgets.USD, budgets.DAY, True, "", "", "")
    for bad in (monthly_tokens, daily_usd_on_a_model):
        with pytest.raises(TypeError, match=bad.meter):
            budgets.meters_kept(Spent, Tally, (*budgets.BUDGETS, bad))
    budgets.meters_kept(Spent, Tally)  # the declared ones all read a kept meter
    with pytest.raises(AttributeError):  # and a spend without it is an error, never 0
        budgets.spent_on(budgets.Line(monthly_tokens, "", 10.0), Spent())


def test_a_small_usd_budget_is_said_with_the_digits_that_tell_spent_from_limit():
    # issue 82: a $0.001 budget was refused as "$0.00 of $0.00"
    assert budgets.amounts(Line(MONTHLY_USD, "", 0.001), 0.0012) == ("$0.0012", "$0.0010")
    assert budgets.amounts(Line(MONTHLY_USD, "", 0.125), 0.2) == ("$0.200", "$0.125")
    assert budgets.amounts(Line(MONTHLY_USD, "", 5.0), 5.25) == ("$5.25", "$5.00")
    assert budgets.amounts(Line(MONTHLY_USD, "", 1500.0), 1500.5) == ("$1,500.50", "$1,500.00")
    rec = KeyRecord("ci", monthly_usd=0.001)
    now = calendar.timegm((2026, 11, 23, 14, 3, 0))
    assert "budget: $0.0012 of $0.0010 this month" in refusals.over_monthly(rec, 0.0012, "openai", now).message
