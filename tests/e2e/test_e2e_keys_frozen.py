"""Slow is not dead, and a hold is settled once (trust round 6, item 4), on a real PostgreSQL and two real gateways:
gateway one is frozen (SIGSTOP: a VM paused) with a slow stream in flight, past the 15 s after which gateway two
takes it for dead and settles its hold — with nothing counted, since nothing was delivered yet — then resumed
(SIGCONT): the stream finishes. Before, gateway one then wrote the answer's cost minus what it took as "counted
meanwhile": the key's spend lost the whole answer (the issue: −1,176 tokens, 4 runs of 4). Now the settlement notes
what it counted (key_settled) and the gateway subtracts exactly that: the key's spend equals the usage ledger's."""

from __future__ import annotations

import json
import signal
import time
import threading

import pytest

from helpers.pgserver import pg_clocked, pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway, stop_all
from helpers.team import add_key, openai_client, qwen_keys, team_env, until

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


def _listed(env: dict[str, str]) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(qwen_keys(env, "list", "--json").stdout)}


def test_a_gateway_frozen_past_the_dead_window_counts_its_late_answer_once(tmp_path, emu, pg_url):  # noqa: F811
    import psycopg

    gws = [Gateway(tmp_path / name / "gw", env=team_env(tmp_path, emu, name),
                   args=("--set", f"qwen_state_url={pg_url}")) for name in ("one", "two")]
    try:
        for gw in gws:
            gw.start()
        one, two = gws
        cli = {"QWEN_STATE_URL": pg_url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}
        near = add_key(cli, "near", "--daily-tokens", "1000000")
        until(lambda: openai_client(one.url, near).chat.completions.create(model="gpt-4o", messages=HI), "served")
        emu.switches(chunk_count=120, gap_ms=300)  # a 36 s stream: longer than the freeze below
        began, usage, failed = threading.Event(), [], []

        def stream() -> None:
            try:
                for chunk in openai_client(one.url, near).chat.completions.create(
                        model="gpt-4o", messages=HI, stream=True, stream_options={"include_usage": True}):
                    began.set()
                    if chunk.usage is not None:
                        usage.append(chunk.usage.total_tokens)
            except Exception as e:
                failed.append(e)

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert began.wait(30)
        emu.switches(chunk_count=0, gap_ms=0)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            def held() -> int:
                return conn.execute("SELECT count(*) FROM key_holds WHERE name = 'near'").fetchone()[0]

            until(lambda: held() == 1, "the first answer's hold ended, the stream's held")
            one.proc.send_signal(signal.SIGSTOP)
            try:  # gateway two takes it for dead (not seen for 15 s, the database's clock) and settles its hold
                until(lambda: held() == 0, "the frozen gateway's hold settled by the other", limit=60, every=0.5)
                assert conn.execute("SELECT tokens FROM key_settled").fetchall() == [(None,)]  # nothing counted
            finally:
                one.proc.send_signal(signal.SIGCONT)
        reader.join(90)
        assert not reader.is_alive() and not failed and len(usage) == 1, failed
        with psycopg.connect(pg_url, autocommit=True) as conn:
            def ledger() -> tuple[int, int]:
                if conn.execute("SELECT to_regclass('usage')").fetchone() == (None,):
                    return 0, 0  # the ledger's first batch not written yet
                row = conn.execute("SELECT count(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage "
                                   "WHERE key_name = 'near' AND status = 200").fetchone()
                return int(row[0]), int(row[1])

            until(lambda: ledger()[0] == 2, "both answers in the ledger", limit=30)
            until(lambda: _listed(cli)["near"]["requests_today"] == 2, "both answers counted", limit=30)
            listed = _listed(cli)["near"]
            print(f"\nspend {listed['tokens_today']} tokens, ledger {ledger()[1]}, the stream {usage[0]}")
            assert listed["tokens_today"] == ledger()[1]  # before: the stream's tokens subtracted, never counted
            assert conn.execute("SELECT count(*) FROM key_settled").fetchone() == (0,)  # the note consumed
    finally:
        stop_all(gws)


def test_a_step_of_the_database_clock_declares_nobody_dead(tmp_path, emu, pg_clocked):
    """The database's clock stepped 60 s ahead while a stream runs on each of two gateways (issue 79 item 1: before,
    the first gateway to beat after the step saw the other's last beat 60 s old and settled its hold as a dead
    gateway's). Liveness is now judged by whether a gateway's beat still changes, on each observer's own monotonic
    clock: both holds stay, and the key's spend equals the usage ledger."""
    import psycopg

    from helpers.clock import move_clock

    url = pg_clocked.db
    gws = [Gateway(tmp_path / name / "gw", env=team_env(tmp_path, emu, name),
                   args=("--set", f"qwen_state_url={url}")) for name in ("one", "two")]
    try:
        for gw in gws:
            gw.start()
        cli = {"QWEN_STATE_URL": url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}
        near = add_key(cli, "near", "--daily-tokens", "1000000")
        for gw in gws:  # each gateway's first answer: the key's cost known there (no probe holds the stream back)
            until(lambda gw=gw: openai_client(gw.url, near).chat.completions.create(model="gpt-4o", messages=HI),
                  "served")
        emu.switches(gap_ms=1000)  # the echo of 24 words, one a second: past the step and four beats after it
        words = [{"role": "user", "content": " ".join(f"word{i}" for i in range(24))}]
        usage: list[int] = []
        failed: list[Exception] = []

        def stream(url: str) -> None:
            try:
                for chunk in openai_client(url, near).chat.completions.create(
                        model="gpt-4o", messages=words, stream=True, stream_options={"include_usage": True}):
                    if chunk.usage is not None:
                        usage.append(chunk.usage.total_tokens)
            except Exception as e:
                failed.append(e)

        readers = [threading.Thread(target=stream, args=(gw.url,), daemon=True) for gw in gws]
        for reader in readers:
            reader.start()
        with psycopg.connect(url, autocommit=True) as conn:
            def held() -> int:
                return conn.execute("SELECT count(*) FROM key_holds WHERE name = 'near'").fetchone()[0]

            until(lambda: held() == 2, "both streams held, one on each gateway")
            move_clock(pg_clocked.clock_rc, 60)  # the database's clock_timestamp() 60 s ahead from here on
            ahead = float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0]) - time.time()
            assert ahead > 50, ahead  # the step is real
            for i in range(16):  # 8 s: four beats of each gateway (HEARTBEAT_S 2 s) after the step
                assert held() == 2, (f"an alive gateway's hold settled as a dead one's ({i / 2} s after the step): "
                                     f"{conn.execute('SELECT * FROM key_settled').fetchall()}, streams done: "
                                     f"{len(usage)}")
                time.sleep(0.5)
            assert conn.execute("SELECT count(*) FROM key_settled").fetchone() == (0,)
        for reader in readers:
            reader.join(90)
        emu.switches(gap_ms=0)
        assert not any(r.is_alive() for r in readers) and not failed and len(usage) == 2, failed
        with psycopg.connect(url, autocommit=True) as conn:
            def ledger() -> tuple[int, int]:
                if conn.execute("SELECT to_regclass('usage')").fetchone() == (None,):
                    return 0, 0
                row = conn.execute("SELECT count(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage "
                                   "WHERE key_name = 'near' AND status = 200").fetchone()
                return int(row[0]), int(row[1])

            until(lambda: ledger()[0] == 4, "every answer in the ledger", limit=30)
            until(lambda: _listed(cli)["near"]["requests_today"] == 4, "every answer counted", limit=30)
            assert _listed(cli)["near"]["tokens_today"] == ledger()[1]
    finally:
        stop_all(gws)
