"""Who owns each file and batch (api/batches/store.py): another key's id is not found, a batch is billed once,
and both survive a restart; the same in the state folder's SQLite and in the shared PostgreSQL (several gateways:
a batch made through one is found through another)."""

from __future__ import annotations

import stat

import pytest

from qwen_gateway.api.batches.store import BATCH, FILE, BatchStore, Record, SharedBatchStore
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
