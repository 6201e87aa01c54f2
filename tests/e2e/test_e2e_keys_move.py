"""Where the named keys live changes — a state folder's keys.sqlite3, a shared PostgreSQL database — and the entrance
never opens: real gateways (mitmdump, mitmweb) and `qwen-keys` as the real command, on a real PostgreSQL.

- A folder with keys (alice active, ci revoked) and a gateway started on a database without them: it refuses to
  start (one line, no traceback, exit 2) and names `qwen-keys migrate`; the same URL set at run time through
  mitmweb's options API is refused, the previous value kept.
- `qwen-keys migrate --to URL` moves keys, revocations, limits and spend whole; the gateway then starts on the
  database and holds the same door. Back with `--from URL`, the same.
- A migration cut midway (the database stopped under it, the command killed) moves nothing: the folder keeps
  its keys, the database has none of them.
- A gateway pointed back at the folder after running on a database that has keys refuses to start.
- `qwen-keys` without `--state-url` says when the folder's gateway uses a database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from helpers.pgserver import PgServer, pg_server, pg_url, unavailable  # noqa: F401  (fixtures)
from helpers.procs import Gateway, free_port, mitmweb_api
from helpers.team import QWEN_KEYS, add_key, qwen_keys, team_env, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]
HI = [{"role": "user", "content": "hi"}]


def _chat(gw: Gateway, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(gw.url + "/v1/chat/completions", headers=headers, json={"model": "gpt-4o", "messages": HI},
                      trust_env=False, timeout=30)


def _team(tmp_path: Path, emu) -> tuple[dict[str, str], str, str]:
    """A state folder with alice (active, rpm 50, one request served) and ci (revoked)."""
    env = team_env(tmp_path, emu)
    alice = add_key(env, "alice", "--rpm", "50", "--daily-tokens", "100000")
    ci = add_key(env, "ci", "--monthly-usd", "5")
    qwen_keys(env, "revoke", "ci")
    gw = Gateway(tmp_path / "local", env=env).start()
    try:
        assert _chat(gw, alice).status_code == 200 and _chat(gw, None).status_code == 401
        until(lambda: _listed(env)["alice"]["requests_today"] == 1, "alice's spend written", limit=10)
    finally:
        gw.stop()
    return env, alice, ci


def _listed(env: dict[str, str], *args: str) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(qwen_keys(env, "list", "--json", *args).stdout)}


def _db_keys(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT name FROM client_keys ORDER BY name")]
        except psycopg.errors.UndefinedTable:
            return []


def _refused_start(gw: Gateway) -> list[str]:
    with pytest.raises(RuntimeError, match="exited with 2"):
        gw.start()
    lines = [line for line in gw.log().splitlines() if "qwen" in line and "Loading script" not in line]
    assert "Traceback" not in gw.log(), gw.log()
    return lines


def test_a_folder_with_keys_on_a_database_without_them_refuses_to_start(tmp_path, emu, pg_url):
    env, alice, ci = _team(tmp_path, emu)
    gw = Gateway(tmp_path / "gw", env=env, args=("--set", f"qwen_state_url={pg_url}"))
    try:
        lines = _refused_start(gw)
    finally:
        if gw.alive():  # before: it started, and a request without a key was answered 200
            status = _chat(gw, None).status_code
            gw.stop()
            pytest.fail(f"the gateway started on a database without the folder's keys: no key got {status}")
    assert len(lines) == 1, lines
    assert "the gateway cannot start" in lines[0] and "2 named client keys" in lines[0], lines
    assert "qwen-keys migrate" in lines[0] and pg_url.rsplit("/", 1)[-1] in lines[0], lines
    assert _db_keys(pg_url) == []  # nothing written to the database by the refused start


def _door(gw: Gateway, alice: str, ci: str) -> None:
    """alice served, ci refused as revoked, no key and a stranger's refused."""
    assert _chat(gw, alice).status_code == 200
    refused = _chat(gw, ci)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"], refused.text
    assert _chat(gw, None).status_code == 401 and _chat(gw, "sk-qg-stranger").status_code == 401


def _migrate(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    return qwen_keys(env, "migrate", *args, ok=ok)


def test_keys_moved_to_the_database_and_back_hold_the_same_door_with_their_limits_and_spend(tmp_path, emu, pg_url):
    env, alice, ci = _team(tmp_path, emu)
    before = _listed(env)
    out = _migrate(env, "--to", pg_url).stdout
    assert "Moved 2 named keys (1 active, 1 revoked), their limits and 1 day of spend" in out, out
    assert _db_keys(pg_url) == ["alice", "ci"]
    moved = _listed(env, "--state-url", pg_url)
    for name in ("alice", "ci"):  # limits, state and spend, whole
        assert {k: v for k, v in moved[name].items() if k != "last_used"} == \
            {k: v for k, v in before[name].items() if k != "last_used"}, (moved[name], before[name])
    # the folder says where its keys went: qwen-keys without --state-url, and a gateway without qwen_state_url
    followed = qwen_keys(env, "list")  # the keys file's note followed: the keys where they went (issue 68)
    assert "moved to the shared database" in followed.stderr and "alice" in followed.stdout, followed
    assert "No named keys" in qwen_keys(env, "list", "--state-url", "").stdout  # the folder's own: none left
    lines = _refused_start(Gateway(tmp_path / "folder", env=env))
    assert len(lines) == 1 and "were moved to the shared database" in lines[0] and "--from" in lines[0], lines

    gw = Gateway(tmp_path / "db", env=env, args=("--set", f"qwen_state_url={pg_url}")).start()
    try:
        _door(gw, alice, ci)
    finally:
        gw.stop()
    assert _listed(env, "--state-url", pg_url)["alice"]["requests_today"] == 2

    out = _migrate(env, "--from", pg_url).stdout  # back: the folder has them again, with the spend made meanwhile
    assert "Moved 2 named keys (1 active, 1 revoked)" in out, out
    assert _listed(env)["alice"]["requests_today"] == 2 and _listed(env)["ci"]["monthly_usd"] == 5
    gw = Gateway(tmp_path / "folder-again", env=env).start()
    try:
        _door(gw, alice, ci)
    finally:
        gw.stop()


def test_a_gateway_pointed_back_at_a_folder_without_the_databases_keys_refuses_to_start(tmp_path, emu, pg_url):
    env = team_env(tmp_path, emu)
    db = {**env, "QWEN_STATE_URL": pg_url}
    add_key(db, "bob")
    gw = Gateway(tmp_path / "db", env=env, args=("--set", f"qwen_state_url={pg_url}")).start()
    try:
        until(lambda: _chat(gw, None).status_code == 401, "the database's keys read", limit=10)
    finally:
        gw.stop()
    lines = _refused_start(Gateway(tmp_path / "folder", env=env))
    assert len(lines) == 1 and "1 named client key (bob)" in lines[0] and "keys-shared.sqlite3" in lines[0], lines
    assert "qwen-keys migrate" in lines[0] and "--from URL" in lines[0], lines


def test_qwen_keys_without_a_url_follows_the_database_the_folders_gateway_uses(tmp_path, emu, pg_url):
    """The folder's gateway runs on a database: `qwen-keys` reads and changes the keys there, saying so on stderr
    (it used to read the folder and refuse changes, issue 68); `--state-url ''` is the folder's own."""
    env = team_env(tmp_path, emu)
    gw = Gateway(tmp_path / "db", env=env, args=("--set", f"qwen_state_url={pg_url}")).start()
    try:
        until(lambda: "qwen: shared state on postgresql://" in gw.log(), "the shared-state line", limit=10)
        r = qwen_keys(env, "list")
        assert "uses the shared database postgresql://" in r.stderr and "read there" in r.stderr, r.stderr
        alice = add_key(env, "alice")  # into the database the gateway reads: it is asked for at once
        until(lambda: _chat(gw, alice).status_code == 200 and _chat(gw, None).status_code == 401, "alice, there")
        assert not (Path(env["QWEN_GATEWAY_HOME"]) / "keys.sqlite3").exists() and _db_keys(pg_url) == ["alice"]
        assert list(_listed(env)) == ["alice"] and _listed(env, "--state-url", "") == {}
    finally:
        gw.stop()
    # the folder's gateway again, without the copy of the database's keys the first one kept (it refuses to start
    # beside it, as its refusal says: tests/unit/tenancy/test_place.py): qwen-keys uses the folder
    (Path(env["QWEN_GATEWAY_HOME"]) / "keys-shared.sqlite3").unlink()
    folder = Gateway(tmp_path / "folder", env=env).start()
    try:
        until(lambda: "qwen: state in the folder " in folder.log(), "the state-folder line", limit=10)
        assert qwen_keys(env, "list").stderr == ""
    finally:
        folder.stop()


def test_after_a_move_every_command_reads_the_gateways_database_and_says_so(tmp_path, emu, pg_url):
    """`qwen-keys migrate --to URL`, then the gateway on that database: `qwen-keys list`, `qwen-usage`, `qwen-usage
    learned` and `qwen-usage batches` all read the database without being told, and say so (issue 68: `learned`
    read the folder's file silently, `qwen-keys list` said the keys moved and showed none)."""
    env, alice, _ = _team(tmp_path, emu)
    _migrate(env, "--to", pg_url)
    moved = qwen_keys(env, "list", "--json")  # no gateway on the database yet: the keys file's note is followed
    assert "were moved to the shared database" in moved.stderr and {r["name"] for r in json.loads(moved.stdout)} == \
        {"alice", "ci"}
    gw = Gateway(tmp_path / "db", env=env, args=("--set", f"qwen_state_url={pg_url}")).start()
    try:
        assert _chat(gw, alice).status_code == 200
        until(lambda: _listed(env)["alice"]["requests_today"] == 2, "alice's second request counted", limit=15)
        for command in (["qwen-keys", "list"], ["qwen-usage"], ["qwen-usage", "learned"], ["qwen-usage", "batches"]):
            r = subprocess.run([str(QWEN_KEYS.parent / command[0]), *command[1:]], capture_output=True, text=True,
                               timeout=60, env={**os.environ, **env})
            assert r.returncode == 0, (command, r.stdout, r.stderr)
            assert "uses the shared database postgresql://" in r.stderr, (command, r.stderr)
        learned = subprocess.run([str(QWEN_KEYS.parent / "qwen-usage"), "learned"], capture_output=True, text=True,
                                 timeout=60, env={**os.environ, **env}).stdout
        assert "(the shared database)" in learned, learned
    finally:
        gw.stop()


def _xsrf() -> dict[str, str]:
    return {"X-XSRFToken": "c0ffee", "Cookie": "_mitmproxy_xsrf=c0ffee"}


def test_the_url_set_at_run_time_to_a_database_without_the_keys_is_refused_and_the_door_holds(tmp_path, emu, pg_url):
    env, alice, ci = _team(tmp_path, emu)
    web = free_port()
    gw = Gateway(tmp_path / "web", env=env, tool="mitmweb", args=(
        "--set", "web_password=pw", "--set", f"web_port={web}", "--set", "web_host=127.0.0.1")).start()
    api = mitmweb_api(gw, web, "pw")
    try:
        _door(gw, alice, ci)
        r = api.put("/options", json={"qwen_state_url": pg_url}, headers=_xsrf())
        assert r.status_code == 400 and "qwen-keys migrate" in r.text and "alice, ci (revoked)" in r.text, r.text
        assert api.get("/options").json()["qwen_state_url"]["value"] == ""
        _door(gw, alice, ci)
        _migrate(env, "--to", pg_url)  # while it runs on the folder: its door shuts, it does not open
        until(lambda: _chat(gw, alice).status_code == 503, "the moved keys seen", limit=10)
        assert _chat(gw, None).status_code == 503 and "qwen-keys migrate" in _chat(gw, None).text
        assert api.put("/options", json={"qwen_state_url": pg_url}, headers=_xsrf()).status_code == 200
        until(lambda: _chat(gw, alice).status_code == 200, "the keys read from the database", limit=10)
        _door(gw, alice, ci)
        # and back to the folder, which has none of them now (it says where they went): refused, the database kept
        r = api.put("/options", json={"qwen_state_url": ""}, headers=_xsrf())
        assert r.status_code == 400 and "were moved to the shared database" in r.text, r.text
        assert api.get("/options").json()["qwen_state_url"]["value"] == pg_url
        _door(gw, alice, ci)
        assert "Traceback" not in gw.log(), gw.log()
    finally:
        api.close()
        gw.stop()


@pytest.fixture
def own_pg():
    srv = PgServer().start()  # its own: the test stops it
    try:
        srv.db = srv.new_database()
        yield srv
    finally:
        srv.stop()


def _waiting_migration(url: str) -> bool:
    """The migration's transaction wrote its keys and waits for the lock on key_day."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND query LIKE 'INSERT INTO key_day%'").fetchone()[0])


@pytest.mark.parametrize("cut", ["the database stopped", "the command killed"])
def test_a_migration_cut_midway_moves_nothing(tmp_path, emu, own_pg, cut):
    import psycopg

    env, alice, ci = _team(tmp_path, emu)
    url = own_pg.db
    qwen_keys(env, "list", "--state-url", url)  # the tables made, empty
    before = _listed(env)
    files = sorted(p.name for p in Path(env["QWEN_GATEWAY_HOME"]).iterdir())
    blocker = psycopg.connect(url, connect_timeout=5)  # holds key_day: the migration stops after its keys
    blocker.execute("LOCK TABLE key_day IN ACCESS EXCLUSIVE MODE")
    proc = subprocess.Popen([str(QWEN_KEYS), "migrate", "--to", url], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: _waiting_migration(url), "the migration midway", limit=30)
        if cut == "the database stopped":
            own_pg.halt()
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 1 and "nothing was moved" in err and "Traceback" not in err, (out, err)
            own_pg.resume()
        else:
            proc.kill()
            proc.wait(10)
            blocker.rollback()
            until(lambda: not _waiting_migration(url), "the killed migration's transaction ended", limit=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        blocker.close()
    time.sleep(0.5)
    assert _db_keys(url) == []  # nothing half-moved: the database has none of them
    assert _listed(env) == before  # the folder as it was: keys, revocation, limits and spend
    assert sorted(p.name for p in Path(env["QWEN_GATEWAY_HOME"]).iterdir()) == files
    gw = Gateway(tmp_path / "still", env=env).start()  # the folder's gateway holds its door as before
    try:
        _door(gw, alice, ci)
    finally:
        gw.stop()
    assert "Moved 2 named keys" in _migrate(env, "--to", url).stdout  # and the move, run again, is whole
    assert _db_keys(url) == ["alice", "ci"]


def test_cut_between_the_two_commits_the_door_is_the_same_and_the_move_run_again_finishes(tmp_path, emu, pg_url):
    env, alice, ci = _team(tmp_path, emu)
    state = Path(env["QWEN_GATEWAY_HOME"])
    twin = {**env, "QWEN_GATEWAY_HOME": str(tmp_path / "twin")}
    shutil.copytree(state, twin["QWEN_GATEWAY_HOME"])
    _migrate(twin, "--to", pg_url)  # the database committed; `state` is the folder the cut left as it was
    gw = Gateway(tmp_path / "db", env=env, args=("--set", f"qwen_state_url={pg_url}")).start()
    try:
        _door(gw, alice, ci)
    finally:
        gw.stop()
    out = _migrate(env, "--to", pg_url).stdout
    assert "Moved 0 named keys (0 active, 0 revoked), their limits and 0 days of spend" in out, out
    assert "2 were there already" in out, out
    assert _listed(env, "--state-url", pg_url)["alice"]["requests_today"] == 2  # the first move's one, and one since
    assert "were moved to" in _refused_start(Gateway(tmp_path / "folder", env=env))[0]
