"""Who owns each file and batch (api/batches/store.py): another key's id is not found, a batch is billed once,
and both survive a restart."""

from __future__ import annotations

import stat

import pytest

from qwen_gateway.api.batches.store import BATCH, FILE, BatchStore, Record


def test_objects_belong_to_their_key_and_a_batch_is_billed_once_across_restarts(tmp_path):
    store = BatchStore(tmp_path)
    store.put(Record("file-1", FILE, "alice", "ds", "gpt-4o", "qwen-plus"))
    store.put(Record("batch_1", BATCH, "alice", "ds", "gpt-4o", "qwen-plus"))
    store.put(Record("file-2", FILE, "bob", "other", "", ""))
    assert store.get("file-1", "alice", FILE) == Record("file-1", FILE, "alice", "ds", "gpt-4o", "qwen-plus")
    assert store.get("file-1", "bob", FILE) is None and store.get("batch_1", "alice", FILE) is None
    assert store.owned("alice", ["file-1", "file-2", "batch_1", "nope"]) == {"file-1", "batch_1"}
    assert store.owned("alice", []) == set()
    assert store.accounts("alice", FILE) == ["ds"] and store.accounts("carol", BATCH) == []
    assert store.claim_bill("batch_1") and not store.claim_bill("batch_1")
    store.close()

    again = BatchStore(tmp_path)  # a restart
    assert again.get("batch_1", "alice", BATCH).billed and not again.claim_bill("batch_1")
    again.unbill("batch_1")
    assert again.claim_bill("batch_1")
    again.forget("file-1")
    assert again.get("file-1", "alice", FILE) is None
    assert stat.S_IMODE(again.path.stat().st_mode) == 0o600
    again.close()


def test_a_state_folder_that_cannot_be_used_is_the_storages_outage_not_a_failure(tmp_path):
    from qwen_gateway.storage.health import StateUnavailable

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    store = BatchStore(blocked / "state")
    for attempt in (store.ready, lambda: store.get("file-1", "alice", FILE),
                    lambda: store.put(Record("file-1", FILE, "alice", "ds", "", ""))):
        with pytest.raises(StateUnavailable):
            attempt()
