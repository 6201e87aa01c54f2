"""The state a gateway cannot use as configured, each caused for real under real gateways (mitmdump and mitmweb
processes): a state folder mounted read-only (a read-only bind mount in a private mount namespace: the tests
run as root, for whom a folder's mode is no barrier) holding named client keys, on SQLite and beside a shared
PostgreSQL database; and a `qwen_state_url` switched at run time to URLs libpq cannot use, and back. What the
gateway promises (docs/reliability.md, "Storage"): it starts and holds the entrance as the keys say, a bad URL is
refused in one line, every storage failure is an outage (503 `state_unavailable`, one line, no traceback) and
no ledger row of a served request is lost."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway, free_port, mitmweb_api, until
from helpers.team import add_key, openai_client, qwen_keys, team_env

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]

# the state folder bound over itself read-only, in the gateway's own mount namespace; then the gateway
_READ_ONLY = """set -e
mount --bind "$1" "$1"
mount -o remount,bind,ro "$1"
shift
exec "$@"
"""


def _mount_namespace_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a read-only bind mount in a private mount namespace)"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare/nsenter (util-linux) not installed"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=20)
    return None if r.returncode == 0 else f"no private mount namespace here: {r.stderr.decode().strip()}"


def _read_only_gateway(workdir: Path, env: dict[str, str], *args: str, tool: str = "mitmdump") -> Gateway:
    """A gateway whose state folder (`QWEN_GATEWAY_HOME`) is read-only for it (and it alone)."""
    reason = _mount_namespace_problem()
    if reason:
        pytest.skip(reason)
    prefix = ("unshare", "-m", "--propagation", "private", "--", "sh", "-c", _READ_ONLY, "sh",
              env["QWEN_GATEWAY_HOME"])
    return Gateway(workdir, env=env, args=args, tool=tool, prefix=prefix).start()


def _writable_again(gw: Gateway, folder: str) -> None:
    assert gw.proc is not None
    subprocess.run(["nsenter", "-t", str(gw.proc.pid), "-m", "mount", "-o", "remount,bind,rw", folder],
                   check=True, timeout=20)


def _chat(gw: Gateway, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(gw.url + "/v1/chat/completions", headers=headers, json={"model": "gpt-4o", "messages": HI},
                      trust_env=False, timeout=30)


def _problems(gw: Gateway) -> list[str]:
    """Tracebacks, 500s and start-up failures in the gateway's log."""
    return [line for line in gw.log().splitlines()
            if "Traceback" in line or " 500 " in line or "failed" in line and "configure" in line]


def _outage_lines(gw: Gateway) -> list[str]:
    return [line for line in gw.log().splitlines() if "] qwen: the " in line and " is unavailable (" in line]


def _ledger_rows(state: Path) -> int:
    path = state / "usage.sqlite3"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        return int(db.execute("SELECT count(*) FROM usage").fetchone()[0])


def _spent_today(env: dict[str, str], name: str) -> int:
    rows = json.loads(qwen_keys(env, "list", "--json").stdout)
    return next(r["requests_today"] for r in rows if r["name"] == name)


def _crash_after_revoking(env: dict[str, str], name: str) -> None:
    """`name` revoked by a process that ends without closing the keys file: the revocation stays in its
    write-ahead log (keys.sqlite3-wal), which no checkpoint folded into the file."""
    code = ("import os, sys, time\nfrom pathlib import Path\nfrom qwen_gateway.tenancy.store import KeyStore\n"
            "store = KeyStore.local(Path(sys.argv[1]))\nstore.conn.execute('PRAGMA wal_autocheckpoint=0')\n"
            "store.update(sys.argv[2], revoked=time.time())\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, env["QWEN_GATEWAY_HOME"], name], check=True, timeout=60)


def _a_gateway_ran(tmp_path: Path, env: dict[str, str]) -> None:
    """A gateway served a chat and stored a Response in the folder, and stopped (its files left as they are)."""
    gw = Gateway(tmp_path / "before", env=env).start()
    try:
        c = openai_client(gw.url, "unused")
        c.chat.completions.create(model="gpt-4o", messages=HI)
        c.responses.create(model="gpt-4o", input="kept")
        time.sleep(1.0)  # the ledger's rows written
    finally:
        gw.stop()


@pytest.mark.parametrize("closed", ["cleanly", "by a crash", "after a gateway ran"])
def test_a_read_only_state_folder_with_named_keys_starts_and_holds_the_door(tmp_path, emu, closed):
    env = team_env(tmp_path, emu)
    if closed == "after a gateway ran":
        _a_gateway_ran(tmp_path, env)
    alice = add_key(env, "alice")
    ci = add_key(env, "ci")
    state = Path(env["QWEN_GATEWAY_HOME"])
    if closed != "by a crash":
        qwen_keys(env, "revoke", "ci")
    else:  # the revocation only in keys.sqlite3-wal, and no -shm beside it (a copy, a restore)
        _crash_after_revoking(env, "ci")
        Path(f"{state / 'keys.sqlite3'}-shm").unlink()
        assert Path(f"{state / 'keys.sqlite3'}-wal").stat().st_size > 0
    rows = _ledger_rows(state)
    files = sorted(p.name for p in state.iterdir())
    gw = _read_only_gateway(tmp_path / "gw", env)
    try:
        assert gw.alive(), gw.log()
        assert _chat(gw, alice).status_code == 200
        refused = _chat(gw, ci)
        assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"], refused.text
        assert _chat(gw, None).status_code == 401
        assert _chat(gw, "sk-qg-someone-else").status_code == 401
        assert sorted(p.name for p in state.iterdir()) == files  # nothing written
        until(lambda: _outage_lines(gw), "the folder's outage said", limit=5)  # at start, or the first write
        log = gw.log()
        assert _problems(gw) == [], log
        assert len(_outage_lines(gw)) == 1, log
        time.sleep(1.5)  # the keys' spend tried (every second) and kept while the folder refuses it
        assert _spent_today(env, "alice") == 0
        # writable again: alice's requests (spend) are written, without a restart
        _writable_again(gw, str(state))
        assert _chat(gw, alice).status_code == 200
        until(lambda: _spent_today(env, "alice") == 2, "alice's spend written", limit=15)
        assert _chat(gw, ci).status_code == 401
        # every store opens its file anew (none kept the read-only connection SQLite gives a file it cannot
        # write): a Response is stored and read back
        tries: list[int] = []
        stored = until(lambda: tries.append(1) or _stored(openai_client(gw.url, alice)), "a stored Response",
                       limit=15)
        assert openai_client(gw.url, alice).responses.retrieve(stored.id).output_text == "Echo: kept"
    finally:
        gw.stop()
    log = gw.log()
    assert _problems(gw) == [] and "could not be written" not in log, log
    # every exchange of the read-only time too, written once it was not: 6 chats, the stores, the read
    assert _ledger_rows(state) == rows + 6 + len(tries) + 1


def _readiness(gw: Gateway) -> httpx.Response:
    return httpx.get(gw.url + "/health/readiness", trust_env=False, timeout=10)


def test_on_postgresql_a_read_only_state_folder_refuses_stored_responses_until_it_is_writable(tmp_path, emu, pg_url):
    """Stored Responses and chat completions on PostgreSQL keep a local copy in the state folder (the synchronous
    read path): a read-only folder is that storage's outage — 503 before Qwen is asked, readiness says so —,
    while chat, `store: false` Responses and the shared sealing key (published from memory) need no folder."""
    env = team_env(tmp_path, emu)
    gw = _read_only_gateway(tmp_path / "gw", env, "--set", f"qwen_state_url={pg_url}")
    try:
        c = openai_client(gw.url, "unused")
        assert c.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "Echo: hi"
        assert c.responses.create(model="gpt-4o", input="unstored", store=False).output_text == "Echo: unstored"
        sent = len(emu.chat_requests())
        with pytest.raises(openai.APIStatusError) as e:
            c.responses.create(model="gpt-4o", input="kept?")
        assert e.value.status_code == 503 and e.value.body["code"] == "state_unavailable", e.value.body
        assert "local storage" in e.value.body["message"]
        assert len(emu.chat_requests()) == sent  # refused before Qwen was asked
        ready = _readiness(gw)
        assert ready.status_code == 503 and ready.json()["reasons"] == ["storage_unavailable"], ready.text
        health = httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()
        assert [(s["name"], s["reason"]) for s in health["storage"]] == [("local storage", "not writable")], health
        _writable_again(gw, env["QWEN_GATEWAY_HOME"])
        stored = until(lambda: _stored(c), "a stored Response once the folder is writable", limit=15)
        assert c.responses.retrieve(stored.id).output_text == "Echo: kept"
        assert until(lambda: _readiness(gw).status_code == 200, "ready again", limit=10)
        log = gw.log()
        assert _problems(gw) == [], log
        assert len(_outage_lines(gw)) == 1, log
    finally:
        gw.stop()


def _stored(c: openai.OpenAI):
    try:
        return c.responses.create(model="gpt-4o", input="kept")
    except openai.APIStatusError as e:
        assert e.status_code == 503, e
        return None


def _usage_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM usage").fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return 0


BAD_URLS = {  # before, each was taken: every store's use failed, the ledger dropped the rows of the time
    "an unknown libpq option": "?colour=blue",
    "a space in the host": "bad host",
    "a 64-character host label": "a" * 64,
}


def _with_host(url: str, host: str) -> str:
    scheme, rest = url.split("://", 1)
    user, after = rest.split("@", 1)
    return f"{scheme}://{user}@{host}:5432/{after.split('/', 1)[1]}"


@pytest.mark.parametrize("bad", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_a_state_url_libpq_cannot_use_stops_the_gateway_at_start_in_one_line(tmp_path, emu, bad):
    url = "postgresql://gw@db.example:5432/qwen"
    url = url + bad if bad.startswith("?") else _with_host(url, bad)
    gw = Gateway(tmp_path / "gw", env=team_env(tmp_path, emu), args=("--set", f"qwen_state_url={url}"))
    try:
        with pytest.raises(RuntimeError, match="exited with 2"):
            gw.start()
    finally:
        gw.stop()  # (a gateway that started after all)
    lines = [line for line in gw.log().splitlines() if "qwen" in line and "Loading script" not in line]
    assert len(lines) == 1 and "the gateway cannot start:" in lines[0] and "qwen_state_url" in lines[0], gw.log()
    assert "Traceback" not in gw.log()


def test_a_state_url_switched_to_a_bad_one_and_back_loses_no_ledger_row(tmp_path, emu, pg_url):
    env = team_env(tmp_path, emu)
    web = free_port()
    gw = Gateway(tmp_path / "gw", env=env, tool="mitmweb", args=(
        "--set", f"qwen_state_url={pg_url}", "--set", "web_password=pw", "--set", f"web_port={web}",
        "--set", "web_host=127.0.0.1")).start()
    api = mitmweb_api(gw, web, "pw")
    xsrf = {"X-XSRFToken": "c0ffee", "Cookie": "_mitmproxy_xsrf=c0ffee"}
    c = openai_client(gw.url, "unused")
    served = 0

    def traffic() -> None:
        nonlocal served
        for _ in range(5):
            assert c.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "Echo: hi"
            served += 1

    try:
        traffic()
        for what, bad in BAD_URLS.items():
            url = pg_url + bad if bad.startswith("?") else _with_host(pg_url, bad)
            r = api.put("/options", json={"qwen_state_url": url}, headers=xsrf)
            assert r.status_code == 400 and "qwen_state_url" in r.text, (what, r.status_code, r.text)
            assert api.get("/options").json()["qwen_state_url"]["value"] == pg_url
            traffic()
        # a URL libpq takes, whose database is nowhere: an outage — chat served, its rows kept, stored
        # Responses refused — until the URL is set back
        nowhere = _with_host(pg_url, "127.0.0.1").replace(":5432/", f":{free_port()}/")
        assert api.put("/options", json={"qwen_state_url": nowhere}, headers=xsrf).status_code == 200
        traffic()
        time.sleep(1.0)  # the ledger's flush meets the outage: the rows kept
        with pytest.raises(openai.APIStatusError) as e:
            c.responses.create(model="gpt-4o", input="kept?")
        assert e.value.status_code == 503 and e.value.body["code"] == "state_unavailable", e.value.body
        served += 1  # its refusal is a row too
        assert api.put("/options", json={"qwen_state_url": pg_url}, headers=xsrf).status_code == 200
        traffic()
        assert c.responses.create(model="gpt-4o", input="kept").output_text == "Echo: kept"
        served += 1
        until(lambda: _usage_rows(pg_url) >= served, f"{served} ledger rows", limit=20)
        time.sleep(1.5)  # none more than served (each row once)
        assert _usage_rows(pg_url) == served
        until(lambda: _readiness(gw).status_code == 200, "ready again", limit=10)  # the old outage forgotten
        assert _problems(gw) == [], gw.log()
    finally:
        api.close()
        gw.stop()
