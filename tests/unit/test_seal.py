"""The sealing key where the state folder cannot keep one (seal.py). On PostgreSQL the key lives in the database:
a gateway whose folder is read-only (or full) publishes one made in memory, or adopts the database's, and
seals as every other gateway does. Without PostgreSQL the folder is where the key lives: a folder that cannot
keep it is its outage (503 `state_unavailable`), never a 500. Before (issue 50): `load_key` wrote its key
file in the folder, and every stored Response of a PostgreSQL gateway with a read-only folder was a 500
"The gateway failed: OSError". The round trip through a real gateway: tests/e2e/test_e2e_state_faults.py."""

from __future__ import annotations

import base64

import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.seal import KEY_FILE, Sealer, load_key
from qwen_gateway.storage.health import StateUnavailable, local_health
from qwen_gateway.storage.pg_tasks import close_pools


@pytest.fixture(autouse=True)
async def _pools_closed():
    yield
    await close_pools()


@pytest.fixture
def unwritable(tmp_path):
    """A state folder that can never be made (under a file: ENOTDIR, "cannot be created"); its outage
    forgotten afterwards (one Health per folder in the process)."""
    (tmp_path / "a-file").write_text("")
    folder = tmp_path / "a-file" / "state"
    yield folder
    local_health(folder).forget()


def test_a_folder_that_cannot_take_a_key_gives_one_in_memory_to_publish(unwritable):
    one, two = load_key(unwritable), load_key(unwritable)
    assert len(one) == len(two) == 32 and one != two  # made each time: nothing kept anywhere


def test_a_folder_with_a_key_gives_that_key(tmp_path):
    key = load_key(tmp_path)
    assert (tmp_path / KEY_FILE).exists() and load_key(tmp_path) == key


def test_sealing_without_a_shared_database_where_no_key_can_be_kept_is_the_folders_outage(unwritable):
    sealer = Sealer(unwritable)
    with pytest.raises(StateUnavailable) as e:
        sealer.seal("reasoning", {"text": "t"})
    assert "local storage" in e.value.message and local_health(unwritable).reason == "cannot be created"


async def test_on_postgresql_gateways_whose_folders_cannot_keep_a_key_share_the_databases(pg_url, unwritable,
                                                                                        tmp_path):
    from qwen_gateway.stores.responses_pg import SharedResponseStore
    from qwen_gateway.storage.pg import Database

    first = SharedResponseStore(unwritable / "responses.sqlite3", Database(pg_url))
    await first.ready()  # publishes a key made in memory
    other = tmp_path / "other"
    other.mkdir()
    own = load_key(other)  # a gateway of before, with a key of its own in its folder
    second = SharedResponseStore(other / "responses.sqlite3", Database(pg_url))
    await second.ready()  # adopts the database's
    token = first.sealer.seal("reasoning", {"text": "shared"})
    assert second.sealer.open("reasoning", token) == {"text": "shared"}
    rows = await first.db.fetch("SELECT value FROM shared_secrets WHERE name='seal.key'")
    assert base64.b64decode(rows[0][0]) != own and not unwritable.exists()
