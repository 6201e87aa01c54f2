"""Whose each stored object is, and how long it is kept, one store at a time on both backends (the state
folder's SQLite; a real PostgreSQL, tests/helpers/pgserver.py): a key's objects found only by that key,
retention per key (one key storing many never evicts another's), the age limit, item ids two keys both
chose, and the files and databases of a gateway from before owners migrated with their rows kept. The whole
path with real clients: tests/e2e/test_e2e_tenancy.py."""

from __future__ import annotations

import sqlite3
import time

import psycopg
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.storage.pg_tasks import close_pools
from qwen_gateway.stores import responses_pg
from qwen_gateway.stores.responses import ResponseStore
from qwen_gateway.stores.responses_pg import TRIM_EVERY, SharedResponseStore
from qwen_gateway.stores.responses_schema import MAX_AGE_S
from qwen_gateway.stores import stored_chat_pg as chats_pg
from qwen_gateway.api.stored_chat.endpoint import chats_of
from qwen_gateway.api.stored_chat.records import row_of
from qwen_gateway.storage.pg import Database, migrate_sync


@pytest.fixture(autouse=True)
async def _pools_closed():
    """Every pool a test opened, closed in its event loop: psycopg_pool's workers would keep the loop's end
    waiting (storage/pg_tasks.py)."""
    yield
    await close_pools()

CAP = 3  # per key, in these tests


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request, tmp_path):
    """(a gateway's Responses store, its chat store, a second gateway's Responses store, the database URL or
    None), each keeping CAP objects per key."""
    if request.param == "sqlite":
        one = two = ResponseStore(tmp_path / "a" / "responses.sqlite3", per_key=CAP)
        url = None
    else:
        url = request.getfixturevalue("pg_url")
        one, two = (SharedResponseStore(tmp_path / n / "responses.sqlite3", Database(url), per_key=CAP)
                    for n in "ab")
    chats = chats_of(lambda: one)()
    chats.per_key = CAP
    yield one, chats, two, url
    await closed(one, two)


async def closed(*stores: ResponseStore) -> None:
    for store in stores:
        if isinstance(store, SharedResponseStore):
            await store.db.aclose()


async def put(store: ResponseStore, rid: str, owner: str, items: tuple[str, ...] = ()) -> None:
    write = store.put({"id": rid, "output": []}, {"items": []},
                      [{"id": i, "type": "message", "role": "user", "content": f"{owner}'s {i}"} for i in items],
                      owner=owner)
    if write is not None:
        await write


async def read(store: ResponseStore, rid: str, owner: str) -> dict | None:
    await store.load([rid], owner)
    return store.get(rid, owner)


def chat_row(cid: str, owner: str):
    return row_of({"messages": [{"role": "user", "content": cid}]}, {"id": cid, "model": "gpt-4o", "choices": []},
                  time.time(), owner)


async def test_a_keys_objects_are_found_by_that_key_only(stores):
    one, chats, two, _ = stores
    await one.ready()
    await put(one, "resp_carol", "carol", ("in_carol",))
    await chats.put(chat_row("chatcmpl-carol", "carol"))
    for store in (one, two):
        assert await read(store, "resp_carol", "dave") is None and await read(store, "resp_carol", "") is None
        assert store.item("in_carol", "dave") is None and store.inputs("resp_carol", "dave") is None
        assert not await store.delete("resp_carol", "dave")
        assert (await read(store, "resp_carol", "carol"))["id"] == "resp_carol"
        assert store.item("in_carol", "carol")["content"] == "carol's in_carol"
    assert await chats.get("chatcmpl-carol", "dave") is None and await chats.messages("chatcmpl-carol", "dave") is None
    assert await chats.index("dave") == [] and await chats.completions(["chatcmpl-carol"], "dave") == {}
    assert not await chats.update("chatcmpl-carol", {"k": "dave"}, "dave")
    assert not await chats.delete("chatcmpl-carol", "dave")
    assert (await chats.get("chatcmpl-carol", "carol"))["metadata"] == {}


async def test_an_item_id_two_keys_both_chose_is_each_ones_own(stores):
    one, _, two, _ = stores
    await one.ready()
    await put(one, "resp_carol", "carol", ("msg_1",))
    await put(one, "resp_dave", "dave", ("msg_1",))
    for store in (one, two):
        await store.load(["msg_1"], "carol")
        await store.load(["msg_1"], "dave")
        assert store.item("msg_1", "carol")["content"] == "carol's msg_1"
        assert store.item("msg_1", "dave")["content"] == "dave's msg_1"


async def test_one_key_storing_many_never_evicts_another_keys_objects(stores):
    """Each key keeps its newest CAP. On PostgreSQL a key's rows are trimmed every TRIM_EVERY of its puts
    through a gateway: TRIM_EVERY puts end in a trim."""
    one, chats, two, _ = stores
    await one.ready()
    await chats.check()
    for i in range(2):
        await put(one, f"resp_dave_{i}", "dave")
        await chats.put(chat_row(f"chatcmpl-dave-{i}", "dave"))
    for i in range(TRIM_EVERY):
        await put(one, f"resp_carol_{i}", "carol")
        await chats.put(chat_row(f"chatcmpl-carol-{i}", "carol"))
    newest = range(TRIM_EVERY - CAP, TRIM_EVERY)
    for store in (one, two):
        assert [i for i in range(TRIM_EVERY) if await read(store, f"resp_carol_{i}", "carol")] == list(newest)
        assert all([await read(store, f"resp_dave_{i}", "dave") for i in range(2)])
    assert [r[0] for r in await chats.index("carol")] == [f"chatcmpl-carol-{i}" for i in newest]
    assert [r[0] for r in await chats.index("dave")] == ["chatcmpl-dave-0", "chatcmpl-dave-1"]


def _age(url: str | None, path, table: str, id: str) -> None:
    """The object stored MAX_AGE_S and a day ago (the database's row, or the state folder's)."""
    old = time.time() - MAX_AGE_S - 86400
    if url is None:
        with sqlite3.connect(path) as db:
            db.execute(f"UPDATE {table} SET created=? WHERE id=?", (old, id))
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"UPDATE {table} SET created=%s WHERE id=%s", (old, id))


async def test_objects_older_than_30_days_go_as_later_ones_are_stored(stores, tmp_path):
    one, chats, _, url = stores
    await one.ready()
    await chats.check()
    await put(one, "resp_old", "carol", ("in_old",))
    await chats.put(chat_row("chatcmpl-old", "carol"))
    _age(url, one.path, "responses", "resp_old")
    _age(url, one.path, "chat_completions", "chatcmpl-old")
    # a gateway (started again, or the other one) 31 days later: its writes drop what is past its age
    later = ResponseStore(one.path, per_key=CAP) if url is None else \
        SharedResponseStore(tmp_path / "later" / "responses.sqlite3", Database(url), per_key=CAP)
    later_chats = chats_of(lambda: later)()
    try:
        await later.ready()
        await later_chats.check()
        for i in range(TRIM_EVERY):  # another key's writes: on PostgreSQL, every TRIM_EVERY puts drop a batch
            await put(later, f"resp_new_{i}", "dave")
            await later_chats.put(chat_row(f"chatcmpl-new-{i}", "dave"))
        assert await read(later, "resp_old", "carol") is None and later.item("in_old", "carol") is None
        assert await later_chats.get("chatcmpl-old", "carol") is None
        assert await read(later, f"resp_new_{TRIM_EVERY - 1}", "dave") is not None
    finally:
        await closed(later)


# ---- stored before owners -------------------------------------------------------------------------------

OLD_SQLITE = """
CREATE TABLE responses (id TEXT PRIMARY KEY, created REAL, response TEXT, history TEXT);
CREATE TABLE response_inputs (id TEXT PRIMARY KEY, items TEXT);
CREATE TABLE response_items (id TEXT PRIMARY KEY, response_id TEXT, item TEXT);
CREATE INDEX response_items_by_response ON response_items (response_id);
CREATE TABLE chat_completions (id TEXT PRIMARY KEY, created REAL, model TEXT, metadata TEXT, completion TEXT,
    messages TEXT);
"""  # the state folder's tables as a gateway before owners made them


def _old_rows(now: float) -> list[tuple[str, tuple]]:
    return [("INSERT INTO responses VALUES (?,?,?,?)", ("resp_old", now, '{"id": "resp_old"}', '{"items": []}')),
            ("INSERT INTO response_inputs VALUES (?,?)", ("resp_old", '[{"id": "in_old"}]')),
            ("INSERT INTO response_items VALUES (?,?,?)", ("in_old", "resp_old", '{"id": "in_old"}')),
            ("INSERT INTO chat_completions VALUES (?,?,?,?,?,?)",
             ("chatcmpl-old", now, "gpt-4o", "{}", '{"id": "chatcmpl-old"}', "[]"))]


async def test_a_state_folder_from_before_owners_keeps_its_objects_as_no_keys(tmp_path):
    path = tmp_path / "responses.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SQLITE)
        for sql, args in _old_rows(time.time()):
            db.execute(sql, args)
    store = ResponseStore(path)
    await _objects_from_before_owners_are_no_keys(store, chats_of(lambda: store)())
    assert ResponseStore(path).get("resp_old", "") == {"id": "resp_old"}  # migrated once: opened again, as is


async def test_a_database_from_before_owners_keeps_its_objects_as_no_keys(tmp_path, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the tables as a gateway before owners made them
        migrate_sync(conn, responses_pg.COMPONENT, responses_pg.STEPS[:6])
        migrate_sync(conn, chats_pg.COMPONENT, chats_pg.STEPS[:2])
        for sql, args in _old_rows(time.time()):
            if "chat_completions" in sql:
                sql = sql.replace("VALUES", "(id, created, model, metadata, completion, messages) VALUES")
            conn.execute(sql.replace("?", "%s"), args)
    store = SharedResponseStore(tmp_path / "responses.sqlite3", Database(pg_url))
    try:
        await _objects_from_before_owners_are_no_keys(store, chats_of(lambda: store)())
    finally:
        await closed(store)


async def _objects_from_before_owners_are_no_keys(store, chats) -> None:
    await store.ready()
    await chats.check()
    assert await read(store, "resp_old", "carol") is None and await chats.get("chatcmpl-old", "carol") is None
    assert await read(store, "resp_old", "") == {"id": "resp_old"}
    assert store.inputs("resp_old", "") == [{"id": "in_old", "type": "message", "status": "completed"}]  # listed
    assert store.item("in_old", "") == {"id": "in_old"}
    assert (await chats.get("chatcmpl-old", ""))["id"] == "chatcmpl-old"
    await put(store, "resp_new", "carol", ("in_old",))  # the new tables take owners (the same item id: hers)
    await chats.put(chat_row("chatcmpl-new", "carol"))
    assert store.item("in_old", "carol")["content"] == "carol's in_old" and store.item("in_old", "") == {"id": "in_old"}
    assert [r[0] for r in await chats.index("")] == ["chatcmpl-old"]
    assert [r[0] for r in await chats.index("carol")] == ["chatcmpl-new"]
