"""Named keys when the shared PostgreSQL database goes away, for real (the test stops and starts its own
server): the door holds from memory, a key with a rate limit fails closed (503, nothing upstream), spend
made meanwhile is kept and written once the database is back, and a gateway restarted during the outage
keeps its door with the copy of the keys it read last. A gateway that never could read them serves as a
gateway without named keys would (loopback, flat keys) and says so."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from helpers.pgserver import PgServer, unavailable
from helpers.procs import Gateway, free_port
from helpers.team import add_key, qwen_keys, team_env, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]
HI = [{"role": "user", "content": "hi"}]


def post(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
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

        pg_up(own_pg)
        until(lambda: post(gw, limited).status_code == 200, "the limited key served again", limit=30, every=0.5)
        spent = until(lambda: [k for k in json.loads(qwen_keys(cli, "list", "--json").stdout)
                               if k["name"] == "free" and k["requests_today"] == 3], "the outage's spend written",
                      limit=20, every=0.5)
        assert spent[0]["tokens_today"] > 0

        pg_down(own_pg)  # and a gateway restarted meanwhile: its copy of the keys holds the door
        gw.stop()
        gw.start()
        assert post(gw, "sk-qg-unknown").status_code == 401
        assert post(gw, free).status_code == 200
        until(lambda: "could not read the named client keys" in gw.log(), "the gateway saying so", limit=20)
    finally:
        gw.stop()


def test_a_gateway_that_never_read_its_keys_serves_as_one_without_named_keys_and_says_so(tmp_path, emu, make_gateway):
    url = f"postgresql://qwen@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    gw = make_gateway(env=team_env(tmp_path, emu), args=("--set", f"qwen_state_url={url}"))
    t0 = time.monotonic()
    assert post(gw, "anything").status_code == 200  # loopback, no flat keys: as without named keys
    assert time.monotonic() - t0 < 30
    assert "has never read its named client keys" in gw.log()
    flat = make_gateway("flat", env={**team_env(tmp_path, emu, "flat"), "QWEN_GATEWAY_KEYS": "flat-key"},
                        args=("--set", f"qwen_state_url={url}"))
    assert post(flat, "anything").status_code == 401 and post(flat, "flat-key").status_code == 200
