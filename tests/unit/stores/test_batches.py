"""Who owns each file and batch (stores/batches.py): another key's id is not found, a batch is billed once,
and both survive a restart; the same in the state folder's SQLite and in the shared PostgreSQL (several gateways:
a batch made through one is found through another)."""

from __future__ import annotations

import stat

import pytest

from qwen_gateway.stores.batches import BATCH, FILE, BatchStore, Record, SharedBatchStore
from qwen_gateway.storage.health import StateUnavailable
from qwen_gateway.storage.pg import Database

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request, tmp_path):
    """Two stores on one storage: a restart, or two gateways."""
    if request.param == "sqlite":
        made = [BatchStore(tmp_path), BatchStore(tmp_path)]
    else:
        url = request.getfixturevalue("pg_url")
        made = [SharedBatchStore(Database(url)), SharedBatchStore(Database(url))]
    return made


async def test_objects_belong_to_their_key_and_a_batch_is_billed_once_across_restarts(stores):
    store, again = stores
    await store.ready()
    await store.put(Record("file-1", FILE, "alice", "ds", "gpt-4o", "qwen-plus"))
    await store.put(Record("batch_1", BATCH, "alice", "ds", "gpt-4o", "qwen-plus"))
    await store.put(Record("file-2", FILE, "bob", "other", "", ""))
    await store.put(Record("file-1", FILE, "bob", "other", "", ""))  # an id is its first owner's
    assert await store.get("file-1", "alice", FILE) == Record("file-1", FILE, "alice", "ds", "gpt-4o", "qwen-plus")
    assert await store.get("file-1", "bob", FILE) is None and await store.get("batch_1", "alice", FILE) is None
    assert await store.owned("alice", ["file-1", "file-2", "batch_1", "nope"]) == {"file-1", "batch_1"}
    assert await store.owned("alice", []) == set()
    assert await store.accounts("alice", FILE) == ["ds"] and await store.accounts("carol", BATCH) == []
    await store.put(Record("batch_2", BATCH, "bob", "other", "", ""))
    assert [r.id for r in await store.unsettled(10)] == ["batch_1", "batch_2"]  # the oldest first
    assert [r.id for r in await store.unsettled(1)] == ["batch_1"]
    assert await store.settled("batch_1") and not await store.settled("batch_1")

    assert (await again.get("batch_1", "alice", BATCH)).billed and not await again.settled("batch_1")
    assert [r.id for r in await again.unsettled(10)] == ["batch_2"]  # files are never looked at
    await again.forget("file-1")
    assert await store.get("file-1", "alice", FILE) is None
    for s in stores:
        await s.aclose()


def test_the_state_folders_file_is_private(tmp_path):
    import asyncio

    store = BatchStore(tmp_path)
    asyncio.run(store.ready())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


async def test_a_state_folder_that_cannot_be_used_is_the_storages_outage_not_a_failure(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    store = BatchStore(blocked / "state")
    for attempt in (store.ready, lambda: store.get("file-1", "alice", FILE),
                    lambda: store.put(Record("file-1", FILE, "alice", "ds", "", ""))):
        with pytest.raises(StateUnavailable):
            await attempt()


async def test_a_batch_keeps_its_advice_across_restarts_newest_first(stores):
    store, again = stores
    await store.ready()
    await store.put(Record("file-9", FILE, "alice", "ds", "gpt-4o", "qwen-plus", advice='[{"model": "qwen-plus"}]'))
    await store.put(Record("batch_8", BATCH, "bob", "ds", "gpt-4o", "qwen-plus"))
    await store.put(Record("batch_9", BATCH, "alice", "ds", "gpt-4o", "qwen-plus", advice='[{"model": "qwen-plus"}]'))
    assert (await again.get("file-9", "alice", FILE)).advice == '[{"model": "qwen-plus"}]'
    listed = await again.batches(10)
    assert [(r.id, r.owner, r.advice) for r, _ in listed] == [("batch_9", "alice", '[{"model": "qwen-plus"}]'),
                                                             ("batch_8", "bob", "")]
    assert all(isinstance(created, float) for _, created in listed)
    assert [r.id for r, _ in await again.batches(10, owner="bob")] == ["batch_8"]
    for s in stores:
        await s.aclose()


async def test_a_state_folder_of_an_older_gateway_takes_the_advice_column(tmp_path):
    import sqlite3

    from qwen_gateway.stores import batches as module

    old = sqlite3.connect(tmp_path / module.FILENAME)  # the table as gateways before the advice made it
    old.executescript(module.TABLE.format(if_new="", real="REAL") + ";")
    old.execute("INSERT INTO batch_objects VALUES ('batch_1', 'batch', 'alice', 'ds', 'm', 'qwen-plus', 0, 1.0)")
    old.commit()
    old.close()
    store = BatchStore(tmp_path)
    assert await store.get("batch_1", "alice", BATCH) == Record("batch_1", BATCH, "alice", "ds", "m", "qwen-plus")
    await store.put(Record("batch_2", BATCH, "alice", "ds", "m", "qwen-plus", advice="[]"))
    assert (await store.get("batch_2", "alice", BATCH)).advice == "[]"
    await store.aclose()


async def test_a_shared_database_of_an_older_gateway_takes_the_advice_column(pg_url):
    from qwen_gateway.stores import batches as module

    db = Database(pg_url)
    db.migrate(module.COMPONENT, module.STEPS[:2])  # the table as gateways before the advice made it
    with db.connect() as conn:
        conn.execute("INSERT INTO batch_objects VALUES ('batch_1', 'batch', 'alice', 'ds', 'm', 'qwen-plus', 0, 1.0)")
    store = SharedBatchStore(Database(pg_url))
    assert await store.get("batch_1", "alice", BATCH) == Record("batch_1", BATCH, "alice", "ds", "m", "qwen-plus")
    await store.put(Record("batch_2", BATCH, "alice", "ds", "m", "qwen-plus", advice="[]"))
    assert (await store.get("batch_2", "alice", BATCH)).advice == "[]"
    await store.aclose()
    await db.aclose()
