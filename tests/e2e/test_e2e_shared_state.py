"""Two real gateways (mitmdump processes, each with its own state folder, as on two machines) sharing one real
PostgreSQL database through `--set qwen_state_url=…`: stored responses, account cooldowns and the usage
ledger are one state for both."""

from __future__ import annotations

import contextlib
import json
import signal
import threading

import httpx
import pytest

from helpers import commands
from helpers.home import CODING_PLAN, Home
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import BIN, Gateway, until, write_creds

pytestmark = pytest.mark.e2e


def two_gateways(tmp_path, emu, url: str):
    """Two gateways on one database, each with its own state folder (as on two machines), an OAuth login and a
    key account: (gateway one, gateway two, the login's token, the key), started; the caller stops them."""
    issued = emu.admin("POST", "tokens", {"expires_in": 3600})
    key = emu.seed_token(kind="key")
    gws: list[Gateway] = []
    for name in ("one", "two"):
        home = Home(tmp_path / name, emu)
        write_creds(home.qwen_dir, access_token=issued["access_token"], refresh_token=issued["refresh_token"],
                    resource_url=emu.url)
        home.key("b", path=CODING_PLAN, key_env="KEY_B", secret=key, default_model="qwen3-coder-plus")
        env = home.env(QWEN_OAUTH_BASE_URL=emu.url)
        gws.append(Gateway(home.root / "gw", env=env, args=("--set", f"qwen_state_url={url}")))
    try:
        for gw in gws:
            gw.start()
    except BaseException:
        for gw in gws:
            gw.stop()
        raise
    return gws[0], gws[1], issued["access_token"], key


@pytest.fixture
def pair(tmp_path, emu, pg_url):
    """(gateway one, gateway two, the OAuth account's token, the key account's key, the database URL)."""
    one, two, token, key = two_gateways(tmp_path, emu, pg_url)
    try:
        yield one, two, token, key, pg_url
    finally:
        one.stop()
        two.stop()


def client(gw: Gateway):
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


_until = until


def test_a_response_stored_through_one_is_continued_through_the_other(pair, emu):
    one, two, *_ = pair
    first = client(one).responses.create(model="gpt-4o", input="remember the word kumquat")
    assert first.output_text == "Echo: remember the word kumquat"
    second = client(two).responses.create(model="gpt-4o", previous_response_id=first.id, input="which word?")
    assert second.output_text == "Echo: which word?"
    sent = emu.chat_requests()[-1]["body"]["messages"]
    assert [m["role"] for m in sent][-3:] == ["user", "assistant", "user"]
    assert "kumquat" in json.dumps(sent)  # the first turn, read by gateway two from the database
    # and the other way round, streamed
    with client(one).responses.stream(model="gpt-4o", previous_response_id=second.id, input="again") as s:
        assert s.get_final_response().output_text == "Echo: again"
    assert "which word?" in json.dumps(emu.chat_requests()[-1]["body"]["messages"])


@pytest.mark.parametrize("stream", [False, True])
def test_a_response_answered_by_a_gateway_killed_at_once_is_read_through_the_other(pair, stream):
    one, two, *_ = pair
    if stream:
        with client(one).responses.stream(model="gpt-4o", input="durable stream") as s:
            rid = s.get_final_response().id
    else:
        rid = client(one).responses.create(model="gpt-4o", input="durable").id
    assert one.proc is not None
    one.proc.send_signal(signal.SIGKILL)  # no shutdown: what was committed is all there is
    one.proc.wait(10)
    got = client(two).responses.retrieve(rid)
    assert got.id == rid and got.output_text == ("Echo: durable stream" if stream else "Echo: durable")


def _accounts(gw: Gateway) -> dict[str, str]:
    health = httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()
    return {a["name"]: a["state"] for a in health["accounts"]}


def test_an_account_one_finds_exhausted_is_skipped_by_the_other(pair, emu):
    one, two, token, key, _ = pair
    oauth = next(name for name, state in _accounts(two).items() if name != "b")
    assert _accounts(two)[oauth] != "cooling_down"
    emu.fault("quota429", token=token)
    r = client(one).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "rotate"}])
    assert r.choices[0].message.content == "Echo: rotate"  # gateway one rotated to the key account
    _until(lambda: _accounts(two)[oauth] == "cooling_down", "gateway two seeing the cooldown")
    before = len(emu.chat_requests())
    for i in range(3):  # round robin would reach the OAuth account within two requests
        r = client(two).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"t{i}"}])
        assert r.choices[0].message.content == f"Echo: t{i}"
    auths = [c["headers"]["authorization"] for c in emu.chat_requests()[before:]]
    assert auths == [f"Bearer {key}"] * 3  # the exhausted account was never tried by gateway two


def test_qwen_usage_shows_the_requests_of_both_gateways(pair, tmp_path):
    one, two, _, _, url = pair
    for gw, n in ((one, 2), (two, 3)):
        for i in range(n):
            client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"u{i}"}])

    def total() -> int:
        r = commands.run([BIN / "qwen-usage", "models", "--json", "--state-url", url,
                            "--state-dir", str(tmp_path / "nowhere")], timeout=60)
        assert r.returncode == 0, r.stderr
        return sum(row["requests"] for row in json.loads(r.stdout))

    assert _until(lambda: total() == 5, "five ledger rows from two gateways")


@pytest.mark.parametrize("how", ["whole", "stream", "websocket"])
def test_no_client_hears_of_a_response_before_it_is_committed(pair, how):
    """The database is held (the responses table locked): the answer, or a stream's final events, must not
    reach the client while the write waits. Gateway one is then killed: whatever the client was told
    exists must be readable through gateway two."""
    import psycopg

    one, two, _, _, url = pair
    client(one).responses.create(model="gpt-4o", input="warm up")  # tables and pools ready
    told: list[str] = []
    failed: list[BaseException] = []

    def ask() -> None:
        try:
            if how == "stream":
                with client(one).responses.create(model="gpt-4o", input="held", stream=True) as events:
                    for ev in events:
                        if ev.type == "response.completed":
                            told.append(ev.response.id)
            elif how == "websocket":
                import websocket

                ws = websocket.create_connection(one.url.replace("http://", "ws://") + "/v1/responses", timeout=30)
                ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "input": "held"}))
                while True:
                    event = json.loads(ws.recv())
                    if event["type"] == "response.completed":
                        told.append(event["response"]["id"])
                        break
            else:
                told.append(client(one).responses.create(model="gpt-4o", input="held").id)
        except BaseException as e:  # noqa: BLE001  (the gateway is killed under it)
            failed.append(e)

    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE responses IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=ask)
        worker.start()
        with psycopg.connect(url, autocommit=True) as watch:
            _until(lambda: watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type='Lock' "
                                         "AND query LIKE 'INSERT INTO responses%'").fetchone()[0] > 0,
                   "the response's INSERT waiting for the lock")
        worker.join(2)  # bounded: with the write held, nothing more may reach the client
        assert told == []
        assert one.proc is not None
        one.proc.send_signal(signal.SIGKILL)
        one.proc.wait(10)
        holder.rollback()
    worker.join(30)
    assert not worker.is_alive()
    for rid in told:  # (none: the client heard nothing, and nothing was promised)
        assert client(two).responses.retrieve(rid).id == rid


async def test_two_machines_refreshing_one_login_at_once_make_one_refresh(tmp_path, emu, pg_url):
    """Two gateways on two machines (their own credential files, so their own file locks) share a login:
    the account's advisory lock lets one refresh; the other adopts the published login, written 0600."""
    import asyncio
    import os

    from qwen_gateway.auth.credfile import read_creds
    from qwen_gateway.auth.oauth_account import OAuthAccount
    from qwen_gateway.storage.pg import Database
    from qwen_gateway.settings.auth import AuthSettings
    from qwen_gateway.auth.state_pg import SharedAccountState

    issued = emu.admin("POST", "tokens", {"expires_in": 3600})
    accounts = []
    for name in ("m1", "m2"):
        path = write_creds(tmp_path / name / ".qwen", access_token=issued["access_token"],
                           refresh_token=issued["refresh_token"], resource_url=emu.url, expires_in=-60)
        settings = AuthSettings.from_env(qwen_dir=tmp_path / name / ".qwen", state_dir=tmp_path / name / "state",
                                         oauth_base_url=emu.url, state_url=pg_url)
        state = SharedAccountState(Database(pg_url))
        accounts.append((OAuthAccount("default", path, settings, state), path, state))
    before = emu.stats()["refresh_calls"]
    try:
        creds = await asyncio.gather(*(acct.credential() for acct, _, _ in accounts))
    finally:
        for _, _, state in accounts:
            state.close()
    assert emu.stats()["refresh_calls"] == before + 1
    assert creds[0].token == creds[1].token != issued["access_token"]
    for _, path, _ in accounts:
        assert read_creds(path)["access_token"] == creds[0].token
        assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_database_that_is_down_is_a_clear_503_for_stored_responses_and_chat_still_answers(
        make_gateway, emu, oauth_home):  # emu: the emulator reset (another test's canned reply would answer)
    from helpers.procs import free_port

    url = f"postgresql://qwen@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    # a flat client key: a gateway that never read its named keys refuses every other request
    # (test_e2e_keys_faults.py); the keys file needs no database
    gw = make_gateway("down", env={**oauth_home["env"], "QWEN_GATEWAY_KEYS": "client-key"},
                      args=("--set", f"qwen_state_url={url}"))
    r = httpx.post(gw.url + "/v1/responses", json={"model": "gpt-4o", "input": "hi"}, trust_env=False, timeout=60,
                   headers={"Authorization": "Bearer client-key"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "state_unavailable" and "database" in r.json()["error"]["message"]
    chat = client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "still"}])
    assert chat.choices[0].message.content == "Echo: still"
    assert "shared database postgresql://qwen@127.0.0.1" in gw.log()


def test_a_web_conversation_pinned_through_one_gateway_continues_through_the_other(tmp_path, emu, pg_url):
    """Two gateways serving one Qwen Chat web account (qwen_web_pin=user): the second turn, sent to the other
    gateway, continues the chat the first made (parent_id = its last response), sending only the new message."""
    import sqlite3
    import urllib.parse

    import openai

    from qwen_gateway.auth import web_cookies as wc
    from qwen_gateway.auth import web_session as ws
    from qwen_gateway.accounts import WEB
    from qwen_gateway.auth.registry import Registry
    from qwen_gateway.settings.auth import AuthSettings
    from e2e.test_e2e_qwenweb import UA

    minted = emu.admin("POST", "web/session", {"expires_in": 3600})
    gws = []
    for name in ("one", "two"):
        home = tmp_path / name
        settings = AuthSettings.from_env(qwen_dir=home / ".qwen", state_dir=home / "state")
        session = ws.new_session(minted["access_token"], wc.keep(wc.parse_header(minted["cookie_header"])),
                                 user_agent=UA, bx={"bx-v": "2.5.36", "bx-ua": "bx-ua-secret-value"})
        ws.save(settings.web_session_path("chat"), session)
        Registry(settings).put({"name": "chat", "kind": WEB})
        env = {"QWEN_DIR": str(home / ".qwen"), "QWEN_GATEWAY_HOME": str(home / "state"), "HOME": str(home),
               "QWEN_OAUTH_BASE_URL": emu.url, "QWEN_WEB_BASE_URL": emu.url, "QWEN_WEB_AUTH_BASE_URL": emu.url}
        gws.append(Gateway(home / "gw", env=env, args=(
            "--set", "qwen_web_accounts=true", "--set", "qwen_web_min_interval=0", "--set", "qwen_web_pin=user",
            "--set", f"qwen_state_url={pg_url}")))
    try:
        for gw in gws:
            gw.start()
        one, two = (openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30) for gw in gws)
        history = [{"role": "user", "content": "one"}]
        r = one.chat.completions.create(model="gpt-4o", messages=history, user="alice")
        history += [{"role": "assistant", "content": r.choices[0].message.content}]

        def pinned_on_two() -> bool:
            path = tmp_path / "two" / "state" / "web_pins.sqlite3"
            if not path.exists():
                return False
            with contextlib.closing(sqlite3.connect(path)) as db:
                return db.execute("SELECT count(*) FROM pins").fetchone()[0] == 1

        _until(pinned_on_two, "gateway two holding gateway one's pin")
        chats = [r for r in emu.requests() if "/api/v2/chat/completions" in r["path"]]
        chat_id = urllib.parse.parse_qs(urllib.parse.urlsplit(chats[-1]["path"]).query)["chat_id"][0]
        parent = emu.admin("GET", "web/state")["chats"][chat_id]["last_response_id"]
        r = two.chat.completions.create(model="gpt-4o", messages=[*history, {"role": "user", "content": "two"}],
                                        user="alice")
        assert r.choices[0].message.content == "Echo: two"
        sent = [r for r in emu.requests() if "/api/v2/chat/completions" in r["path"]][-1]
        assert sent["body"]["chat_id"] == chat_id and sent["body"]["parent_id"] == parent
        assert [m["content"] for m in sent["body"]["messages"]] == ["two"]
    finally:
        for gw in gws:
            gw.stop()


def test_an_output_cap_one_gateway_learned_holds_the_others_requests(pair, emu):
    """Qwen's 400 naming a model's cap is paid once by the team: the other gateway's first request on that model
    goes within the cap (issue 49)."""
    one, two, _, _, _ = pair
    emu.switches(extra_models=["qwen9-max"], model_caps={"qwen9-max": 40000},
                 model_list={"omit": ["qwen9-max"]})  # newer than the list read: only a refusal teaches its cap
    hi = [{"role": "user", "content": "hi"}]
    client(one).chat.completions.create(model="qwen9-max", max_completion_tokens=50000, messages=hi)
    assert [r["body"]["max_completion_tokens"] for r in emu.chat_requests()] == [50000, 40000]

    def learned_by_two() -> bool:  # its local copy, from the database's notification: no request asked
        facts = httpx.get(two.url + "/health", trust_env=False).json().get("learned", {}).get("facts", [])
        return [(f["model"], f["fact"], f["value"]) for f in facts] == [("qwen9-max", "output", 40000)]

    _until(learned_by_two, "the other gateway's copy of the learned cap", limit=15)
    client(two).chat.completions.create(model="qwen9-max", max_completion_tokens=50000, messages=hi)
    assert [r["body"]["max_completion_tokens"] for r in emu.chat_requests()] == [50000, 40000, 40000]
