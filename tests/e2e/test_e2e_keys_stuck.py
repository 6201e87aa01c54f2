"""A stuck peer stalls nobody (trust round 6, item 3), on a real PostgreSQL and a real gateway: another session —
standing in for a gateway frozen or cut off in the middle of its one-second spend transaction — holds the key's
spend row locked (SELECT … FOR UPDATE) and sits, and that "gateway" is taken for dead with a delivered answer on
its hold. Before, each request of the key waited 8 s (the statement_timeout) on that lock, settling the dead
gateway's hold under the key's budget lock, and was answered 503 state_unavailable. Now the budget check skips a
settlement it would have to wait for (the dead hold keeps counting until it can be settled), the spend write gives
up a locked row after SPEND_LOCK_MS and tries again the next second, and the heartbeat goes on: every request is
decided, right; once the lock is let go, every request and the dead gateway's answer are counted once."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway
from helpers.team import add_key, qwen_keys, team_env, until

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]
REQUESTS = 6
GHOST_TOKENS = 7  # what the dead "gateway" delivered on its hold


def _ask(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                      json={"model": "gpt-4o", "messages": HI}, timeout=60)


def _listed(env: dict[str, str]) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(qwen_keys(env, "list", "--json").stdout)}


def test_a_spend_row_locked_by_a_stuck_session_stalls_no_request(tmp_path, emu, pg_url):  # noqa: F811
    import psycopg

    gw = Gateway(tmp_path / "gw", env=team_env(tmp_path, emu), args=("--set", f"qwen_state_url={pg_url}")).start()
    try:
        cli = {"QWEN_STATE_URL": pg_url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}
        alice = add_key(cli, "alice", "--daily-tokens", "1000000")
        until(lambda: _ask(gw, alice).status_code == 200, "alice's first answer")
        until(lambda: _listed(cli)["alice"]["requests_today"] == 1, "its spend written")
        today = time.strftime("%Y-%m-%d", time.gmtime())
        with psycopg.connect(pg_url, autocommit=True) as stuck:
            # the stuck gateway: taken for dead (not seen for a minute), an answer it delivered on its hold
            stuck.execute("INSERT INTO qwen_gateways (id, host, pid, started, seen) VALUES ('ghost', 'elsewhere', 1, "
                          "extract(epoch FROM clock_timestamp()) - 60, extract(epoch FROM clock_timestamp()) - 60)")
            stuck.execute("INSERT INTO key_holds (name, tokens, usd, at, gateway, done_tokens, done_usd) VALUES "
                          "('alice', 50, 0, extract(epoch FROM clock_timestamp()) - 60, 'ghost', %s, 0)",
                          (GHOST_TOKENS,))
            stuck.execute("BEGIN")  # … and its spend transaction, open, holding the key's row
            assert stuck.execute("SELECT requests FROM key_day WHERE name = 'alice' AND day = %s FOR UPDATE",
                                 (today,)).fetchone() == (1,)
            answers, took = [], []
            for _ in range(REQUESTS):
                began = time.monotonic()
                answers.append(_ask(gw, alice))
                took.append(time.monotonic() - began)
            print(f"\nwith the row locked: {[r.status_code for r in answers]}, "
                  f"{', '.join(f'{t:.2f}' for t in took)} s")
            assert [r.status_code for r in answers] == [200] * REQUESTS, [r.text[:200] for r in answers]
            stuck.execute("ROLLBACK")  # the stuck session ends (its server dropped it)
        until(lambda: _listed(cli)["alice"]["requests_today"] == 1 + REQUESTS + 1,
              "every request, and the dead gateway's answer, counted", limit=30)
        listed = _listed(cli)["alice"]
        tokens = sum(r.json()["usage"]["total_tokens"] for r in answers)
        first = listed["tokens_today"] - tokens - GHOST_TOKENS
        assert first > 0  # the first answer's, before the lock
        time.sleep(0)  # (nothing more to count: the next list says the same)
        assert _listed(cli)["alice"]["requests_today"] == 1 + REQUESTS + 1
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM key_holds WHERE name = 'alice'").fetchone() == (0,)
    finally:
        gw.stop()
