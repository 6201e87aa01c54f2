"""PostgreSQL's disk full, caused for real: the server's data folder is a tmpfs of its own mount namespace
(tests/helpers/pgserver.py, the WAL on disk), filled to ENOSPC — after the gateway's stores were migrated
(every write that needs a page fails with DiskFull), or before the gateway starts (its schema migration fails).
What the gateway promises (docs/reliability.md, "Storage"): every usage row is kept and written once space
returns (none lost, none counted twice), one log line for the outage and no traceback, /health names the
database, what needs it is refused 503 `state_unavailable` before any upstream call, chat goes on."""

from __future__ import annotations


import httpx
import pytest

from helpers.home import CODING_PLAN, Home
from helpers.pgserver import pg_tmpfs  # noqa: F401  (fixture)
from helpers.procs import Gateway, until
from e2e.test_e2e_shared_state import client
from e2e.test_e2e_storage_faults import (_db_rows_reach, _sql, _log_problems, _outage_lines, _served_again, _stored_chat_refused,
                                     _traffic, _unavailable)

pytestmark = pytest.mark.e2e

BURST = 300  # chats while the disk is full: their rows wait in memory (the issue lost 2,068 of 4,263)


def _gateway(tmp_path, emu, url: str) -> Gateway:
    """One gateway on the database, with a key account for the emulator (started; the caller stops it)."""
    home = Home(tmp_path / "gw-home", emu)
    home.key("b", path=CODING_PLAN, key_env="KEY_B", default_model="qwen3-coder-plus")
    # a flat client key: a gateway that cannot read its named keys from the database refuses every request
    # without one (docs/security.md, "Faults never open the entrance"), and this database is full from the start
    env = home.env(QWEN_GATEWAY_KEYS="client-key")
    return Gateway(home.root / "gw", env=env, args=("--set", f"qwen_state_url={url}")).start()


@pytest.fixture
def gateway(tmp_path, emu):
    started: list[Gateway] = []

    def start(url: str) -> Gateway:
        started.append(_gateway(tmp_path, emu, url))
        return started[-1]

    yield start
    for gw in started:
        gw.stop()


def _burst(gw: Gateway, n: int) -> int:
    """`n` chats, every tenth streamed, all served: the exchanges (one ledger row each)."""
    c = client(gw)
    for i in range(n):
        if i % 10:
            assert c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"r{i}"}]
                                             ).choices[0].message.content == f"Echo: r{i}"
        else:
            with c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"s{i}"}],
                                           stream=True) as s:
                assert "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices) == f"Echo: s{i}"
    return n


class _Health:
    """/health's storage entries, asked until the database is named (each ask is an exchange: counted)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.asked = 0
        self.entries: list[dict] = []

    def storage(self) -> list[tuple[str, str]]:
        self.asked += 1
        self.entries = httpx.get(self.gw.url + "/health", trust_env=False, timeout=10).json().get("storage", [])
        return [(s["name"], s["reason"]) for s in self.entries]

    def names_the_database(self) -> list[tuple[str, str]]:
        return until(lambda: [s for s in self.storage() if s[0] == "shared state database"],
                     f"/health naming the shared database\n{self.gw.log()}")


def _stored_refused_before_upstream(gw: Gateway, emu) -> int:
    """A stored Response and a stored chat completion: 503 state_unavailable, Qwen never asked (exchanges)."""
    import openai

    sent = len(emu.chat_requests())
    with pytest.raises(openai.APIStatusError) as e:
        client(gw).responses.create(model="gpt-4o", input="kept?")
    _unavailable(e.value)
    assert "database" in e.value.response.json()["error"]["message"]
    _stored_chat_refused(gw, stream=False)
    assert len(emu.chat_requests()) == sent
    return 2


def _clean(gw: Gateway) -> None:
    log = gw.log()
    assert _log_problems(gw) == [], log
    assert _outage_lines(gw) == 1, log  # one line for the whole outage


def test_a_full_database_keeps_every_ledger_row_and_writes_them_once_space_returns(pg_tmpfs, gateway, emu):
    gw = gateway(pg_tmpfs.db)
    exchanges, _stored = _traffic(gw, "before")  # every store migrated, the first rows written
    _db_rows_reach(pg_tmpfs.db, exchanges, "the rows before the disk filled")
    pg_tmpfs.fill()
    exchanges += _burst(gw, BURST)  # chat goes on; the rows' first write fails (DiskFull)
    health = _Health(gw)
    assert health.names_the_database() == [("shared state database", "DiskFull")]
    exchanges += _stored_refused_before_upstream(gw, emu)
    print(f"\nkept in memory while the disk was full: {exchanges - _sql(pg_tmpfs.db, 'SELECT count(*) FROM usage')} rows")
    pg_tmpfs.free()
    exchanges += _served_again(gw, "after the database's disk was full")
    exchanges += health.asked
    _db_rows_reach(pg_tmpfs.db, exchanges, "every row of the full-disk time, written once space returned")
    _clean(gw)


def test_a_migration_that_fails_at_start_up_serves_chat_refuses_stored_and_migrates_later(pg_tmpfs, gateway, emu):
    pg_tmpfs.fill()  # before the gateway's first write: its schema migration fails
    gw = gateway(pg_tmpfs.db)
    exchanges = _burst(gw, 20)
    health = _Health(gw)
    assert health.names_the_database() == [("shared state database", "DiskFull")]
    exchanges += _stored_refused_before_upstream(gw, emu)
    pg_tmpfs.free()
    exchanges += _served_again(gw, "after a migration the full disk refused")  # migrated now
    exchanges += health.asked
    _db_rows_reach(pg_tmpfs.db, exchanges, "every row since the start, written once the ledger could migrate")
    _clean(gw)
