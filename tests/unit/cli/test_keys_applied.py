"""qwen-keys waits until its change holds (cli/keys_applied.py), on a real PostgreSQL: the running gateways are
those seen alive lately and those whose LISTEN session is open; each must acknowledge the change's token, else it
is named after the wait and the exit status is 3; acknowledgements an hour old are deleted. And what it says.
tests/e2e/test_e2e_keys_revoke.py runs it against real gateways."""

from __future__ import annotations

import time

import psycopg
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.cli import keys_applied
from qwen_gateway.storage.pg import Database
from qwen_gateway.tenancy.store import KeyStore


def test_what_it_says():
    assert keys_applied.said(0, 0, [], 10, "") == ("No gateway is running on it: each reads the keys when it starts.", 0)
    assert keys_applied.said(3, 0, [], 10, "") == ("Applied on 3 running gateways.", 0)
    line, status = keys_applied.said(1, 1, ["db-2:7"], 10, " (hint)")
    assert status == keys_applied.NOT_EVERYWHERE == 3
    assert line == ("Applied on 1 running gateway; 1 running gateway could not read the change and refuses the key "
                    "(503) until it can. Not confirmed within 10 s by db-2:7: such a gateway applies the change "
                    "when it next reads the keys (hint).")


def test_every_running_gateway_must_acknowledge_and_the_silent_are_named(pg_server, pg_url, monkeypatch):  # noqa: F811
    store = KeyStore.remote(Database(pg_url))  # its tables, as qwen-keys opens them
    conn = store.conn
    now = time.time()
    conn.execute("INSERT INTO qwen_gateways (id, host, pid, started, seen) VALUES ('g1', 'db-1', 11, %s, %s), "
                 "('g2', 'db-2', 22, %s, %s), ('gone', 'db-9', 99, %s, %s)",
                 (now, now, now, now, now - 3600, now - 3600))  # 'gone': not seen for an hour
    conn.execute("INSERT INTO key_acks (token, gateway, at) VALUES ('t', 'g1', %s), ('t', 'g2', %s), "
                 "('old', 'g1', %s)", (now, now, now - 7200))
    monkeypatch.setattr(keys_applied.secrets, "token_hex", lambda n: "t")
    assert keys_applied.in_database(conn, "alice", 0.2) == ("Applied on 2 running gateways.", 0)
    assert conn.execute("SELECT token FROM key_acks WHERE token = 'old'").fetchall() == []  # an hour old: deleted

    # a gateway whose pool is down beats no more, but its LISTEN session shows it runs: it must answer too
    with psycopg.connect(pg_url, application_name="qwen-gateway g3 db-3:33", autocommit=True):
        line, status = keys_applied.in_database(conn, "alice", 0.2)
    assert status == 3 and line.startswith("Applied on 2 running gateways. Not confirmed within 0.2 s by db-3:33: ")
    # a gateway of another database on the same server (another team's): not one of this database's
    other = pg_server.new_database()
    with psycopg.connect(other, application_name="qwen-gateway g4 db-4:44", autocommit=True):
        assert keys_applied.in_database(conn, "alice", 0.2) == ("Applied on 2 running gateways.", 0)
    conn.execute("INSERT INTO key_acks (token, gateway, at, refusing) VALUES ('t', 'g3', %s, true)", (now,))
    with psycopg.connect(pg_url, application_name="qwen-gateway g3 db-3:33", autocommit=True):
        line, status = keys_applied.in_database(conn, "alice", 0.2)
    assert (line, status) == ("Applied on 2 running gateways; 1 running gateway could not read the change and "
                              "refuses the key (503) until it can.", 0)
    store.close()


@pytest.mark.parametrize("value", ["0", "-1", "x", "3601"])
def test_a_wait_out_of_bounds_is_refused(value, capsys):
    from qwen_gateway.cli.keys import main

    with pytest.raises(SystemExit) as exited:
        main(["revoke", "alice", "--wait", value])
    assert exited.value.code == 2 and "expected seconds between 0 and 3600" in capsys.readouterr().err


def test_a_gateway_that_starts_listening_after_the_first_notification_still_acknowledges(pg_url, monkeypatch):
    """A gateway starting: its session is open (it counts as running) but its LISTEN comes a moment later, so the
    first notification passes it by (seen in a clean-clone CI run: `qwen-keys add` right after two gateways
    started, one named silent). qwen-keys asks again while any is silent: the late listener hears and answers."""
    import threading

    from qwen_gateway.storage.pg import CHANNEL

    store = KeyStore.remote(Database(pg_url))
    monkeypatch.setattr(keys_applied.secrets, "token_hex", lambda n: "late")
    heard = threading.Event()

    def late_gateway() -> None:
        with psycopg.connect(pg_url, application_name="qwen-gateway g9 db-9:99", autocommit=True) as conn:
            started.set()
            time.sleep(0.5)  # the first notification goes out meanwhile
            conn.execute(f"LISTEN {CHANNEL}")
            notes = [n.payload for n in conn.notifies(timeout=5, stop_after=1)]  # (the connection's own, meanwhile)
            if notes and notes[0].startswith("key-ack:late:"):
                conn.execute("INSERT INTO key_acks (token, gateway, at) VALUES ('late', 'g9', 0)")
                heard.set()
            time.sleep(0.5)  # still running while qwen-keys reads the acknowledgement
    started = threading.Event()
    thread = threading.Thread(target=late_gateway)
    thread.start()
    started.wait(5)
    try:
        assert keys_applied.in_database(store.conn, "alice", 3) == ("Applied on 1 running gateway.", 0)
    finally:
        thread.join(10)
        store.close()
    assert heard.is_set()  # (after the join: qwen-keys may read the row before the thread says it heard)
