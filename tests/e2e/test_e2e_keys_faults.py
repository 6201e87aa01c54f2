"""Named keys when the shared PostgreSQL database goes away, for real (the test stops and starts its own
server): the entrance holds from memory, a key with a rate limit fails closed (503, nothing upstream), spend
made meanwhile is kept and written once the database is back (one log line for the outage, one when it is
back), and gateways restarted during the outage hold the entrance with their copy of the keys — every change
they heard of by NOTIFY saved in it, a revoked key refused. A gateway that never read its keys refuses every
request (503) rather than serve without them.
"""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import openai
import pytest

from helpers.pgserver import PgServer, unavailable
from helpers.procs import Gateway, free_port
from helpers.team import ANTHROPIC_PYTHON, MESSAGE, add_key, anthropic_calls, openai_client, qwen_keys, team_env, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]
HI = [{"role": "user", "content": "hi"}]
FAILING = "could not write named keys' spend to the shared database"
BACK = "named keys' spend written to the shared database again"


def post(gw: Gateway, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(gw.url + "/v1/chat/completions", headers=headers, trust_env=False,
                      json={"model": "gpt-4o", "messages": HI}, timeout=60)


def pg_down(srv: PgServer) -> None:
    """A "fast" shutdown: clients are disconnected (a smart one would wait for the gateway's pool)."""
    assert srv.proc is not None
    subprocess.run([*srv.as_user, str(srv.bindir / "pg_ctl"), "-D", str(srv.data), "stop", "-m", "fast", "-w"],
                   check=True, capture_output=True, timeout=60)
    srv.proc.wait(30)


def pg_up(srv: PgServer) -> None:
    srv.proc = subprocess.Popen(
        [*srv.as_user, str(srv.bindir / "postgres"), "-D", str(srv.data), "-h", "127.0.0.1", "-p", str(srv.port),
         "-k", str(srv.root / "sock"), "-c", "fsync=off", "-c", "max_connections=60"],
        stdout=srv.log, stderr=subprocess.STDOUT)
    until(lambda: subprocess.run([str(srv.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(srv.port)],
                                 capture_output=True).returncode == 0, "postgres back", limit=30)


@pytest.fixture
def own_pg():
    srv = PgServer().start()  # its own server: the session's is shared with other tests
    try:
        yield srv
    finally:
        srv.stop()


def test_the_door_holds_and_nothing_is_lost_while_the_database_is_down(tmp_path, emu, own_pg):
    url = own_pg.new_database()
    cli = {"QWEN_STATE_URL": url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}
    free = add_key(cli, "free")
    limited = add_key(cli, "limited", "--rpm", "100")  # under 120 a minute: every request asks the database
    gw = Gateway(tmp_path / "gw", env=team_env(tmp_path, emu), args=("--set", f"qwen_state_url={url}")).start()
    try:
        assert post(gw, free).status_code == 200 and post(gw, limited).status_code == 200
        before = len(emu.chat_requests())
        pg_down(own_pg)
        assert [post(gw, free).status_code for _ in range(2)] == [200, 200]  # from memory
        r = post(gw, limited)
        assert r.status_code == 503 and r.json()["error"]["code"] == "state_unavailable"
        assert "'limited'" in r.json()["error"]["message"] and r.headers["retry-after"]
        assert post(gw, "sk-qg-unknown").status_code == 401
        assert len(emu.chat_requests()) == before + 2  # the refused ones reached nothing
        until(lambda: FAILING in gw.log(), "the failed spend write said", limit=10)
        for _ in range(4):  # spend charged during the outage: a write fails every second, said once
            assert post(gw, free).status_code == 200
            time.sleep(0.5)

        pg_up(own_pg)
        until(lambda: post(gw, limited).status_code == 200, "the limited key served again", limit=30, every=0.5)
        spent = until(lambda: [k for k in json.loads(qwen_keys(cli, "list", "--json").stdout)
                               if k["name"] == "free" and k["requests_today"] == 7], "the outage's spend written",
                      limit=20, every=0.5)
        assert spent[0]["tokens_today"] > 0
        assert gw.log().count(FAILING) == 1 and gw.log().count(BACK) == 1, gw.log()

        pg_down(own_pg)  # and a gateway restarted meanwhile: its copy of the keys holds the entrance
        gw.stop()
        gw.start()
        assert post(gw, "sk-qg-unknown").status_code == 401
        assert post(gw, free).status_code == 200
        until(lambda: "could not read the named client keys" in gw.log(), "the gateway saying so", limit=20)
    finally:
        gw.stop()


def test_revoked_stays_revoked_through_an_outage_and_a_restart_of_both_gateways(tmp_path, emu, own_pg):
    url = own_pg.new_database()
    cli = {"QWEN_STATE_URL": url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}
    alice, bob, dave, erin = (add_key(cli, name) for name in ("alice", "bob", "dave", "erin"))
    gws = [Gateway(tmp_path / n / "gw", env=team_env(tmp_path, emu, n), args=("--set", f"qwen_state_url={url}"))
           for n in ("one", "two")]
    fresh = Gateway(tmp_path / "three" / "gw", env=team_env(tmp_path, emu, "three"),
                    args=("--set", f"qwen_state_url={url}"))
    try:
        for gw in gws:
            gw.start()
            assert post(gw, alice).status_code == 200 and post(gw, bob).status_code == 200
        # changes made while both run, each heard of by NOTIFY: a revocation, a new key, a rotation, a deletion
        qwen_keys(cli, "revoke", "bob")
        carol = add_key(cli, "carol")
        rotated = qwen_keys(cli, "rotate", "alice").stdout.strip().splitlines()[-1]
        qwen_keys(cli, "delete", "dave")
        for gw in gws:
            until(lambda gw=gw: [post(gw, k).status_code for k in (bob, carol, rotated, alice, dave)]
                  == [401, 200, 200, 401, 401], "every change on both gateways", limit=10, every=0.5)

        # and one while gateway one is stopped, by qwen-keys on its machine (its state folder): saved in its copy
        gws[0].stop()
        qwen_keys({**cli, "QWEN_GATEWAY_HOME": str(tmp_path / "one" / "state")}, "revoke", "erin")
        until(lambda: post(gws[1], erin).status_code == 401, "the revocation on gateway two", limit=10, every=0.5)

        pg_down(own_pg)
        for gw in gws:
            gw.stop()
            gw.start()
        before = len(emu.chat_requests())
        for gw in gws:  # from the copy each saved as it applied the changes
            with pytest.raises(openai.AuthenticationError) as e:
                openai_client(gw.url, bob).chat.completions.create(model="gpt-4o", messages=HI)
            assert "'bob' was revoked" in e.value.message
            assert [post(gw, k).status_code for k in (None, alice, dave, erin, "sk-qg-guessed")] == [401] * 5
            assert post(gw, carol).status_code == 200 and post(gw, rotated).status_code == 200
            copy = gw.workdir.parent / "state" / "keys-shared.sqlite3"
            assert copy.stat().st_mode & 0o777 == 0o600
            assert bob not in gw.log() and carol not in gw.log()
        assert len(emu.chat_requests()) == before + 4  # only carol's and alice's new key went upstream

        fresh.start()  # a fresh state folder, the database down: it never read the keys, and refuses everything
        for key in (None, carol, bob, "sk-qg-guessed"):
            r = post(fresh, key)
            assert r.status_code == 503 and r.json()["error"]["code"] == "state_unavailable", r.text
            assert "named client keys" in r.json()["error"]["message"]
        with pytest.raises(openai.InternalServerError) as e:
            openai_client(fresh.url, carol).chat.completions.create(model="gpt-4o", messages=HI)
        assert e.value.status_code == 503 and e.value.code == "state_unavailable"
        if ANTHROPIC_PYTHON.exists():  # the Messages API: in Anthropic's shape
            raised = anthropic_calls(fresh.url, carol, [{"op": "create", "params": MESSAGE}])[0]["raised"]
            assert raised["status"] == 503 and raised["body"]["type"] == "error"
            assert "named client keys" in raised["message"]
        assert len(emu.chat_requests()) == before + 4
        assert "has never read its named client keys" in fresh.log()
    finally:
        for gw in (*gws, fresh):
            gw.stop()


def test_a_gateway_that_never_read_its_keys_refuses_every_request_and_says_so(tmp_path, emu, make_gateway):
    url = f"postgresql://qwen@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    gw = make_gateway(env=team_env(tmp_path, emu), args=("--set", f"qwen_state_url={url}"))
    before = len(emu.chat_requests())
    r = post(gw, "anything")
    assert r.status_code == 503 and r.json()["error"]["code"] == "state_unavailable"
    assert post(gw, None).status_code == 503
    assert "has never read its named client keys" in gw.log()
    health = httpx.get(gw.url + "/health", trust_env=False, timeout=30).json()  # open on loopback, and says why
    assert health["status"] == "degraded" and health["keys"]["state"] == "unread"
    flat = make_gateway("flat", env={**team_env(tmp_path, emu, "flat"), "QWEN_GATEWAY_KEYS": "flat-key"},
                        args=("--set", f"qwen_state_url={url}"))
    assert post(flat, "anything").status_code == 503  # it may be a named key: not known
    assert post(flat, "flat-key").status_code == 200  # the keys file needs no database
    assert len(emu.chat_requests()) == before + 1
