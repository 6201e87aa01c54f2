"""Many gateways on one PostgreSQL (issue 63 item 1), real processes: what one gateway asks of the database (one
session connection that LISTENs, one pool for every store), and eight gateways behind nginx with their pools
through PgBouncer in transaction mode, their LISTEN connections direct (`qwen_state_listen_url`): a revocation,
a learned fact and an account's state reach all eight by their notifications (the gateways' periodic full reads held
off: helpers/notify_only.py), and a load round-robin through nginx meets no connection error. The figures each run
measures are printed (docs/performance.md keeps them); what is asserted is counted, never timed."""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import time

import httpx
import psycopg
import pytest

from helpers.home import change_accounts
from helpers.nginx import Nginx
from helpers.pgbouncer import PgBouncer, unavailable as no_pgbouncer
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import ROOT, Gateway, free_port, stop_all, until
from helpers.team import add_key, qwen_keys, team_env

pytestmark = pytest.mark.e2e

POOL_MOST = 6  # storage/pg.py's POOL_MAX: what one gateway's stores share
# and the two threads' own connections: the usage ledger's writer, the named keys' store (docs/deploy.md)
THREADS = 2
HI = [{"role": "user", "content": "hi"}]
NOTIFY_ONLY = ROOT / "tests" / "helpers" / "notify_only.py"
REACHED_S = 60  # a bound for a change to reach every gateway: never met on any machine (under a second here)


def sessions(url: str) -> list[tuple[str, str]]:
    """The database's client sessions but this one: (state, query), `LISTEN qwen_state` for a listener."""
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as c:
        return c.execute("SELECT state, query FROM pg_stat_activity WHERE datname = current_database() AND "
                         "pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchall()


def transactions(url: str) -> int:
    """The database's committed transactions so far (every statement outside a transaction is one)."""
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as c:
        c.execute("SELECT pg_stat_clear_snapshot()")
        return c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def listeners(url: str) -> int:
    return sum(1 for _, q in sessions(url) if q.startswith("LISTEN"))


def chat(url: str, key: str, text: str = "hi") -> int:
    return httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}, timeout=60).status_code


def test_one_gateway_holds_one_listener_and_one_pool(tmp_path, emu, pg_url):
    env = team_env(tmp_path, emu, "one")
    gw = Gateway(tmp_path / "one" / "gw", env=env, args=("--set", f"qwen_state_url={pg_url}")).start()
    try:
        key = add_key({"QWEN_STATE_URL": pg_url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}, "alice")
        until(lambda: chat(gw.url, "nobody") == 401, "the key read")
        assert chat(gw.url, key) == 200
        time.sleep(1)  # every store's first read done, the pool idle
        rest = sessions(pg_url)
        before = transactions(pg_url)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda i: chat(gw.url, key, f"hi {i}"), range(200)))
        loaded = sessions(pg_url)
        time.sleep(2.5)  # the batched writes (ledger, counts, spend) of those requests done
        per_request = (transactions(pg_url) - before - 2) / 200  # less this test's own two reads
        print(f"\none gateway: {len(rest)} sessions at rest ({listeners(pg_url)} listening), {len(loaded)} after 200 "
              f"requests at concurrency 16; {per_request:.2f} transactions per request (a named key, no limit)")
        assert codes.count(200) == 200
        assert listeners(pg_url) == 1, rest
        assert len(rest) <= 1 + POOL_MOST + THREADS and len(loaded) <= 1 + POOL_MOST + THREADS, (rest, loaded)
    finally:
        gw.stop()


def three_accounts(tmp_path, emu, name: str, keys: dict[str, str]) -> dict[str, str]:
    """A state folder with three key accounts on the emulator (team_env's, with two more), the team's keys."""
    env = team_env(tmp_path, emu, name)
    change_accounts(tmp_path / name / "state", lambda accounts: [
        *accounts, *({**accounts[0], "name": f"emu{i}", "key_env": f"EMU_KEY_{i}"} for i in (2, 3))])
    return {**env, **keys}  # every gateway the same three accounts, as a team configures them


@pytest.fixture(params=[1, 3], ids=["one-account", "three-accounts"])
def eight(request, tmp_path, emu, pg_server):  # noqa: F811
    """Eight gateways on one database through PgBouncer (transaction mode), LISTEN direct, behind nginx, each with
    one key account (or three): (nginx's URL, the gateways, the direct URL, qwen-keys' env, PgBouncer)."""
    if (why := no_pgbouncer()) is not None:
        if os.environ.get("CI") == "true":  # .ci/run installs it: there, missing is a failure
            pytest.fail(why)
        pytest.skip(why)
    direct = pg_server.new_database()
    bouncer = PgBouncer(pg_server.port).start()
    gws: list[Gateway] = []
    nginx = None
    try:
        via = bouncer.url(direct.rsplit("/", 1)[1])
        keys = {"EMU_KEY": emu.seed_token(kind="key"), **{f"EMU_KEY_{i}": emu.seed_token(kind="key") for i in (2, 3)}}
        # one after another: eight starts at once on a loaded 2-core machine can exceed a first read's 3 s deadline
        # through PgBouncer (a gateway then refuses until it reads its keys, as it must, and says so in its log)
        for i in range(8):
            env = team_env(tmp_path, emu, f"gw{i}") if request.param == 1 else \
                three_accounts(tmp_path, emu, f"gw{i}", keys)
            gws.append(Gateway(tmp_path / f"gw{i}" / "gw", env=env, args=(
                "--set", f"qwen_state_url={via}", "--set", f"qwen_state_listen_url={direct}",
                "-s", str(NOTIFY_ONLY))).start())
        for gw in gws:  # as a balancer would: each takes traffic once ready (its keys read through PgBouncer)
            until(lambda gw=gw: httpx.get(gw.url + "/health/readiness", trust_env=False).status_code == 200,
                  f"gateway {gw.port} ready", limit=30)
        port = free_port()
        servers = "".join(f"    server 127.0.0.1:{gw.port};\n" for gw in gws)
        site = (f"upstream gateways {{\n{servers}}}\nserver {{\n  listen 127.0.0.1:{port};\n"
                "  location / { proxy_pass http://gateways; proxy_http_version 1.1; proxy_set_header Host $host;"
                " proxy_set_header Connection \"\"; }\n}")
        nginx = Nginx(tmp_path / "nginx", port, site).start()
        yield f"http://127.0.0.1:{port}", gws, direct, {"QWEN_STATE_URL": direct,
                                                        "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}, bouncer
    finally:
        if nginx is not None:
            nginx.stop()
        stop_all(gws)
        bouncer.stop()


def reached(gws: list[Gateway], seen, what: str) -> list[float]:
    """Seconds until each gateway shows what `seen(gw)` looks for, each polled on its own thread every 10 ms
    (REACHED_S at most): how long the change took to reach it, give or take one poll (a figure, printed)."""
    start = time.monotonic()

    def watch(gw: Gateway) -> float | None:
        while time.monotonic() - start < REACHED_S:
            if seen(gw):
                return time.monotonic() - start
            time.sleep(0.01)
        return None
    with concurrent.futures.ThreadPoolExecutor(len(gws)) as pool:
        took = list(pool.map(watch, gws))
    assert None not in took, f"{what}: reached {[t is not None for t in took]} in {REACHED_S} s"
    return sorted(t for t in took if t is not None)


LOAD = 320  # requests round-robin through nginx, 32 at once: each gateway's pool of 6 and PgBouncer's 20 in use
# (800 before: the same concurrency, and a fifth of the suite's time on a slow machine)


@pytest.mark.parametrize("eight", [1], indirect=True, ids=["one-account"])
def test_eight_gateways_behind_pgbouncer_share_what_changes_and_meet_no_connection_error(eight, emu):
    url, gws, direct, cli, bouncer = eight
    key = add_key(cli, "alice")
    keys = reached(gws, lambda gw: chat(gw.url, "nobody") == 401, "the new key")
    bob = add_key(cli, "bob")
    until(lambda: all(chat(gw.url, bob) == 200 for gw in gws), "bob on every gateway")
    qwen_keys(cli, "revoke", "alice")
    revoked = reached(gws, lambda gw: chat(gw.url, key) == 401, "alice's revocation")
    emu.switches(extra_models=["qwen9-max"], model_caps={"qwen9-max": 40000},
                 model_list={"omit": ["qwen9-max"]})  # newer than the list read: only a refusal teaches its cap
    assert httpx.post(gws[0].url + "/v1/chat/completions", headers={"Authorization": f"Bearer {bob}"},
                      json={"model": "qwen9-max", "max_completion_tokens": 50000, "messages": HI}, trust_env=False,
                      timeout=30).status_code == 200

    def health(gw: Gateway) -> dict:
        return httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()
    learned = reached(gws, lambda gw: "learned" in health(gw), "the learned fact")
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(lambda i: chat(url, bob, f"load {i}"), range(LOAD)))
    emu.fault("quota429")  # the account's state last: it cools down on every gateway
    assert chat(gws[3].url, bob) in (429, 503)
    cooled = reached(gws, lambda gw: any(a.get("state") == "cooling_down" for a in health(gw)["accounts"]),
                     "the account's cooldown")
    server = sessions(direct)
    logs = "".join(gw.log() for gw in gws)
    print(f"\neight gateways: the key reached all in {keys[-1]:.2f} s (median {statistics.median(keys):.2f}), the "
          f"revocation in {revoked[-1]:.2f} s, the learned fact in {learned[-1]:.2f} s, the cooldown in "
          f"{cooled[-1]:.2f} s; {LOAD} requests at concurrency 32 through nginx: {codes.count(200)} answered 200; "
          f"{len(server)} server sessions ({listeners(direct)} listening)")
    assert codes.count(200) == LOAD, {c: codes.count(c) for c in set(codes)}
    assert listeners(direct) == 8
    for said in ("too many clients", "state_unavailable", "cannot be used", "Traceback", "prepared statement"):
        assert said not in logs, said
    assert "ERROR" not in bouncer.log() or "too many" not in bouncer.log()


@pytest.mark.parametrize("eight", [3], indirect=True, ids=["three-accounts"])
def test_a_conversations_later_turns_stay_on_its_account_whichever_gateway_takes_them(eight, emu):
    """Issue 63 item 3: 12 conversations of 6 turns, round-robin over eight gateways by nginx, three key
    accounts each: the share of later turns served by the conversation's first account (goal: 95 %)."""
    url, gws, direct, _, _ = eight
    system = "You are a careful coding agent. " * 60
    chats = {n: [{"role": "system", "content": f"[conversation {n}] {system}"}] for n in range(12)}

    def turns(n: int, which: range) -> None:
        messages = chats[n]
        for t in which:
            messages.append({"role": "user", "content": f"step {t}: fix the next file"})
            r = httpx.post(url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": messages},
                           trust_env=False, timeout=60)
            assert r.status_code == 200, r.text
            messages.append({"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]})

    def placed() -> int:
        with psycopg.connect(direct, autocommit=True) as c:
            return c.execute("SELECT count(*) FROM conversation_account").fetchone()[0]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda n: turns(n, range(1)), range(12)))
        # the placement is written off the request path (affinity_pg.py): a later turn that outran it, on a busy
        # machine, measured the pace, not the affinity (91.7 % seen in CI) — the later turns go once it is shared
        until(lambda: placed() >= 12, "the twelve conversations' placements shared")
        list(pool.map(lambda n: turns(n, range(1, 6)), range(12)))
    served: dict[str, list[str]] = {}
    for r in emu.chat_requests():
        opening = r["body"]["messages"][0]["content"]
        opening = opening if isinstance(opening, str) else "".join(p.get("text") or "" for p in opening)
        served.setdefault(opening.split("]")[0], []).append(r["headers"]["authorization"][7:])
    later = [(accounts[0], a) for accounts in served.values() for a in accounts[1:]]
    share = sum(first == a for first, a in later) / len(later)
    used = {a for accounts in served.values() for a in accounts}
    print(f"\neight gateways, three accounts: {share:.0%} of {len(later)} later turns on their conversation's first "
          f"account ({len(used)} accounts used)")
    assert len(served) == 12 and len(later) == 60
    assert len(used) >= 2  # the conversations spread over the accounts (each gateway's round-robin)
    assert share >= 0.95
