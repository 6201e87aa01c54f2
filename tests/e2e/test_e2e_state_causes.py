"""A shared database the gateway cannot use says why, in the operator's words: a password refused (or none given),
a host name DNS does not know, a server that is down — in the outage's log line, in /health, and in the 503 of
what needs the database — at start and at run time (mitmweb's options API), each still an outage: the ledger
keeps the rows of requests served meanwhile and writes them once the database is back. Real gateways on a real
PostgreSQL that asks one role for a password (scram-sha-256), a `.invalid` host name, and the server stopped."""

from __future__ import annotations

import os
import time

import httpx
import openai
import psycopg
import pytest

from helpers.pgserver import PgServer, unavailable
from helpers.procs import Gateway, free_port, mitmweb_api
from helpers.team import openai_client, team_env, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]
HI = [{"role": "user", "content": "hi"}]
NO_PASSFILE = {"PGPASSFILE": "/nonexistent/pgpass"}  # the machine's ~/.pgpass never used


@pytest.fixture
def pg():
    srv = PgServer().start()  # its own: the test asks for passwords, and stops it
    try:
        srv.db = srv.new_database()
        srv.require_password("gw", "right")
        until(lambda: _refused(srv.db.replace("postgres@", "gw@")), "the password asked for", limit=10)
        yield srv
    finally:
        srv.stop()


def _refused(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5, passfile="/nonexistent/pgpass").close()
    except psycopg.OperationalError:
        return True
    return False


def _storage(gw: Gateway) -> list[tuple[str, str]]:
    health = httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()
    return [(s["name"], s["reason"]) for s in health.get("storage", [])]


def _outage_lines(gw: Gateway) -> list[str]:
    return [line for line in gw.log().splitlines() if "] qwen: the shared database" in line and "unavailable" in line]


def _rows(url: str) -> int:
    """The ledger's rows of API requests (the test's /health reads are rows too)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM usage WHERE endpoint NOT LIKE '%health%'").fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return 0


def _said(gw: Gateway, cause: str, *, keys_read: bool = True, line_within: float = 10) -> None:
    """Chat served (refused 503 naming the cause by a gateway that never read its keys: it cannot know whether
    any exist); a stored Response refused 503 naming the cause; the log's line (within `line_within` seconds) and
    /health name it."""
    c = openai_client(gw.url, "unused")
    if keys_read:
        assert c.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "Echo: hi"
    else:
        with pytest.raises(openai.APIStatusError) as e:
            c.chat.completions.create(model="gpt-4o", messages=HI)
        assert e.value.status_code == 503 and cause in e.value.body["message"], e.value.body
    with pytest.raises(openai.APIStatusError) as e:
        c.responses.create(model="gpt-4o", input="kept?")
    assert e.value.status_code == 503 and e.value.body["code"] == "state_unavailable", e.value.body
    assert cause in e.value.body["message"], e.value.body
    until(lambda: any(cause in line for line in _outage_lines(gw)), f"the outage line naming {cause!r}",
          limit=line_within)
    assert any(name == "shared state database" and cause in reason for name, reason in _storage(gw)), _storage(gw)
    assert "Traceback" not in gw.log() and "OperationalError" not in gw.log(), gw.log()


CAUSES = {
    "no password given": ("gw", {}, "no password: libpq found none"),
    "a wrong password": ("gw", {"PGPASSWORD": "wrong"}, "password refused"),
    "an unknown host": ("host", {}, "unknown host"),
    "the server stopped": ("stopped", {}, "down or unreachable: connection refused"),
}


@pytest.mark.parametrize("what", CAUSES.values(), ids=CAUSES.keys())
def test_at_start_the_cause_is_named_and_rows_are_kept(tmp_path, emu, pg, what):
    how, env_more, cause = what
    url = pg.db
    if how == "gw":
        url = url.replace("postgres@", "gw@")
    elif how == "host":
        url = url.replace("127.0.0.1", "qwen-db.invalid")
    elif how == "stopped":
        pg.halt()
    env = {**team_env(tmp_path, emu), **NO_PASSFILE, **env_more}
    gw = Gateway(tmp_path / "gw", env=env, args=("--set", f"qwen_state_url={url}")).start()
    try:
        _said(gw, cause, keys_read=False)  # a gateway new to the database
        if how == "stopped":  # an outage: the rows of what was served meanwhile are written once it is back
            pg.resume()
            until(lambda: _rows(pg.db) >= 2, "the rows kept during the outage", limit=20)
    finally:
        gw.stop()


def test_at_run_time_each_cause_is_named_and_no_row_is_lost(tmp_path, emu, pg):
    env = {**team_env(tmp_path, emu), **NO_PASSFILE, "PGPASSWORD": "wrong"}  # postgres@ is trusted, gw@ is not
    web = free_port()
    gw = Gateway(tmp_path / "gw", env=env, tool="mitmweb", args=(
        "--set", f"qwen_state_url={pg.db}", "--set", "web_password=pw", "--set", f"web_port={web}",
        "--set", "web_host=127.0.0.1")).start()
    api = mitmweb_api(gw, web, "pw")
    xsrf = {"X-XSRFToken": "c0ffee", "Cookie": "_mitmproxy_xsrf=c0ffee"}
    c = openai_client(gw.url, "unused")
    try:
        assert c.responses.create(model="gpt-4o", input="kept").output_text == "Echo: kept"
        served = 1
        for url, cause in ((pg.db.replace("postgres@", "gw@"), "password refused"),
                           (pg.db.replace("127.0.0.1", "qwen-db.invalid"), "unknown host")):
            assert api.put("/options", json={"qwen_state_url": url}, headers=xsrf).status_code == 200
            _said(gw, cause)
            served += 2
            assert api.put("/options", json={"qwen_state_url": pg.db}, headers=xsrf).status_code == 200
            until(lambda: _storage(gw) == [], "the database set back", limit=10)
        pg.halt()
        # a fast shutdown ends the gateway's sessions with AdminShutdown ("restarting") first; once its probe
        # finds nothing listening, the cause is "down or unreachable": each try is two requests, two rows. Tries
        # are bounded by a deadline well inside the test's guard, not by a count (a try waits for the log line)
        deadline = time.monotonic() + 120
        while True:
            served += 2
            try:
                _said(gw, "down or unreachable", line_within=3)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        pg.resume()
        assert until(lambda: _rows(pg.db) >= served, f"{served} ledger rows", limit=30)
        assert _rows(pg.db) == served, (served, _rows(pg.db))
    finally:
        api.close()
        gw.stop()
    assert os.environ.get("PGPASSWORD") != "wrong"  # the test's own environment untouched
