"""A revoke is a promise kept everywhere (issue 68 item 1), on real gateways and the real `qwen-keys`: it returns
once every running gateway applied it — on a state folder each gateway is told through its socket; on the shared
database each acknowledges, even with its pool's PgBouncer stopped (it reads and answers over its LISTEN's direct
route) — so the very next request is refused; a gateway that did not apply it within `--wait` is named (exit 3); a
LISTEN that hears nothing is said at start, naming qwen_state_listen_url; and the requests in flight with the key
end at once with the client's own error (qwen_key_change_in_flight=end), or finish (=finish)."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal

import httpx
import openai
import pytest

from helpers.ledger import ledger_rows
from helpers.pgbouncer import PgBouncer, unavailable as no_pgbouncer
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import ROOT, Gateway, stop_all
from helpers.team import add_key, openai_client, qwen_keys, team_env, until

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]
LISTEN_DEAF = "LISTEN did not hear this gateway's own notification"


def status(gw: Gateway, key: str) -> int:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                      json={"model": "gpt-4o", "messages": HI}, timeout=30).status_code


def test_a_revoke_on_a_state_folder_returns_once_every_gateway_refuses_the_key(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    keys = {f"k{i}": add_key(env, f"k{i}") for i in range(5)}
    gws = [make_gateway("one", env=env), make_gateway("two", env=env)]  # two gateways on one folder
    sockets = tmp_path / "team" / "state" / "gateways"
    for name, key in keys.items():
        assert [status(gw, key) for gw in gws] == [200, 200]
        done = qwen_keys(env, "revoke", name)
        assert [status(gw, key) for gw in gws] == [401, 401], name  # the very next request, on each gateway
        assert done.stdout == f"Revoked key {name}: gateways refuse it (401).\nApplied on 2 running gateways.\n"
    assert len(list(sockets.glob("*.sock"))) == 2 and oct(sockets.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in sockets.glob("*.sock"))

    stopped = gws[1]
    stopped.proc.send_signal(signal.SIGSTOP)  # alive, and deaf: named once the wait is over
    try:
        late = qwen_keys(env, "add", "late", "--wait", "1", ok=False)
        assert late.returncode == 3, late.stdout + late.stderr
        assert f"Not confirmed within 1 s by pid {stopped.proc.pid}" in late.stderr
        assert "Applied on 1 running gateway;" not in late.stdout and late.stdout.splitlines()[-1].startswith("sk-qg-")
    finally:
        stopped.proc.send_signal(signal.SIGCONT)
    stopped.proc.kill()  # SIGKILL: its socket stays behind, and the next change removes it
    stopped.proc.wait(10)
    assert (sockets / f"{stopped.proc.pid}.sock").exists()
    done = qwen_keys(env, "revoke", "late")
    assert done.stdout.endswith("Applied on 1 running gateway.\n")
    assert not (sockets / f"{stopped.proc.pid}.sock").exists()
    gws[0].stop()
    assert list(sockets.glob("*.sock")) == []  # a gateway that stops takes its socket with it


@pytest.mark.parametrize("in_flight", ["end", "finish"])
def test_requests_in_flight_with_a_revoked_key_end_with_their_error_or_finish(tmp_path, emu, make_gateway, in_flight):
    env = team_env(tmp_path, emu)
    alice, bob, carol = add_key(env, "alice"), add_key(env, "bob"), add_key(env, "carol")
    gw = make_gateway(env=env, args=("--set", f"qwen_key_change_in_flight={in_flight}"))
    state = tmp_path / "team" / "state"
    # a stream under way: alice's and bob's run about 9 s (far beyond a qwen-keys run on a busy machine)
    emu.switches(chunk_count=30, gap_ms=300)
    hers = iter(openai_client(gw.url, alice).chat.completions.create(model="gpt-4o", messages=HI, stream=True))
    his = iter(openai_client(gw.url, bob).chat.completions.create(model="gpt-4o", messages=HI, stream=True))
    got = [next(hers), next(his)]
    qwen_keys(env, "revoke", "alice")
    if in_flight == "end":
        with pytest.raises(openai.APIError) as ended:
            got += list(hers)
        assert "The key 'alice' was revoked while this request ran" in ended.value.message
        assert ended.value.code == "invalid_api_key"
        assert len(got) < 20  # ended at the revoke, not at the answer's end
    else:
        got += list(hers)
        assert [c.choices[0].finish_reason for c in got if c.choices and c.choices[0].finish_reason] == ["stop"]
    rest = list(his)  # bob's stream is not touched
    assert [c.choices[0].finish_reason for c in rest if c.choices and c.choices[0].finish_reason] == ["stop"]

    # a whole answer under way (the Messages API): carol's waits 8 s for Qwen's first byte
    emu.switches(chunk_count=1, gap_ms=0, first_byte_delay_ms=8000)
    asked = len(emu.chat_requests())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        whole = pool.submit(httpx.post, gw.url + "/v1/messages", trust_env=False, timeout=60,
                            headers={"anthropic-version": "2023-06-01", "x-api-key": carol},
                            json={"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": HI})
        until(lambda: len(emu.chat_requests()) > asked, "carol's answer under way", every=0.02)
        qwen_keys(env, "delete", "carol")
        answer = whole.result()
    if in_flight == "end":
        assert answer.status_code == 401 and answer.json()["type"] == "error", answer.text
        assert answer.json()["error"]["type"] == "authentication_error"
        assert "The key 'carol' was deleted while this request ran" in answer.json()["error"]["message"]
    else:
        assert answer.status_code == 200, answer.text
    emu.switches(first_byte_delay_ms=0)
    assert status(gw, alice) == 401 and status(gw, carol) == 401 and status(gw, bob) == 200
    log = gw.log()
    if in_flight == "end":
        assert "qwen: key alice revoked: 1 answer in flight ended (qwen_key_change_in_flight)" in log
        assert "qwen: key carol deleted: 1 answer in flight ended (qwen_key_change_in_flight)" in log
        until(lambda: len([r for r in ledger_rows(state) if r["key_name"] in ("alice", "carol")]) >= 2, "the ledger")
        rows = {(r["key_name"], r["status"], r["error"]) for r in ledger_rows(state) if r["key_name"]}
        assert ("carol", 401, "invalid_api_key") in rows, rows  # said on its flow's record
        assert ("alice", 200, "invalid_api_key") in rows, rows  # the stream's error event
    else:
        assert "in flight ended" not in log


def pooled(pg_server) -> tuple[str, PgBouncer, str]:  # noqa: F811
    """A fresh database and PgBouncer (transaction mode) in front of it: (the direct URL, PgBouncer, the URL
    through it). Without PgBouncer: skipped, and a failure in CI (scripts/install-test-tools.sh installs it)."""
    if (why := no_pgbouncer()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    direct = pg_server.new_database()
    bouncer = PgBouncer(pg_server.port).start()
    return direct, bouncer, bouncer.url(direct.rsplit("/", 1)[1])


@pytest.fixture
def bounced(tmp_path, emu, pg_server):  # noqa: F811
    """Three gateways whose pools go through PgBouncer (transaction mode) and whose LISTEN goes straight to
    PostgreSQL (docs/deploy.md's setup): (the gateways, qwen-keys' env on the direct URL, PgBouncer)."""
    direct, bouncer, via = pooled(pg_server)
    gws: list[Gateway] = []
    try:
        for i in range(3):
            gws.append(Gateway(tmp_path / f"gw{i}" / "gw", env=team_env(tmp_path, emu, f"gw{i}"), args=(
                "--set", f"qwen_state_url={via}", "--set", f"qwen_state_listen_url={direct}")).start())
        yield gws, {"QWEN_STATE_URL": direct, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}, bouncer
    finally:
        stop_all(gws)
        bouncer.stop()


def test_with_pgbouncer_stopped_a_revoke_is_refused_by_every_gateway_when_it_returns(bounced):
    gws, cli, bouncer = bounced
    keys = {f"k{i}": add_key(cli, f"k{i}") for i in range(3)}
    for gw in gws:
        until(lambda gw=gw: status(gw, keys["k0"]) == 200 and status(gw, "sk-qg-other") == 401, "the keys read")
    assert all(LISTEN_DEAF not in gw.log() for gw in gws)
    bouncer.stop()  # every gateway's pool is down; their LISTEN is not
    for name, key in keys.items():
        done = qwen_keys(cli, "revoke", name)
        assert [status(gw, key) for gw in gws] == [401, 401, 401], name  # the very next request, on each gateway
        assert done.stdout == f"Revoked key {name}: gateways refuse it (401).\nApplied on 3 running gateways.\n"


def test_a_listen_through_pgbouncer_is_said_at_start_and_named_by_a_change(tmp_path, emu, pg_server):  # noqa: F811
    direct, bouncer, via = pooled(pg_server)
    hears = Gateway(tmp_path / "hears", env=team_env(tmp_path, emu, "hears"), args=(
        "--set", f"qwen_state_url={via}", "--set", f"qwen_state_listen_url={direct}"))
    deaf = Gateway(tmp_path / "deaf", env=team_env(tmp_path, emu, "deaf"), args=(
        "--set", f"qwen_state_url={via}"))  # no listen URL: its LISTEN goes through PgBouncer and hears nothing
    try:
        hears.start(), deaf.start()
        until(lambda: LISTEN_DEAF in deaf.log(), "the warning", limit=30)
        line = next(ln for ln in deaf.log().splitlines() if LISTEN_DEAF in ln)
        assert "set qwen_state_listen_url to the database itself" in line
        cli = {"QWEN_STATE_URL": direct, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}
        added = qwen_keys(cli, "add", "alice", "--wait", "2", ok=False)
        assert added.returncode == 3, added.stdout + added.stderr
        said = added.stderr.strip()
        assert said.startswith("qwen-keys: Applied on 1 running gateway. Not confirmed within 2 s by ")
        assert f":{deaf.proc.pid}: " in said and f":{hears.proc.pid}" not in said
        shown = next(ln for ln in (ROOT / "docs" / "keys.md").read_text().splitlines()
                     if ln.startswith("qwen-keys: Applied on"))  # docs/keys.md's sample, host, pid and wait aside
        assert re.sub(r"within \d+ s by \S+:\d+:", "", said) == re.sub(r"within \d+ s by \S+:\d+:", "", shown)
        assert LISTEN_DEAF not in hears.log()
    finally:
        stop_all([hears, deaf])
        bouncer.stop()
