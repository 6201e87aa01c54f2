"""What people see is true (issue 60, item 7), through real processes: the start-up of a gateway on a healthy
PostgreSQL whose named keys are not read yet, `qwen-usage` after the state moved to PostgreSQL, `qwen-auth status`
after a key's check failed, a Coding Plan's refusals in `/health`, and the cost options' trace on the request
line and in `/metrics`."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway, free_port
from helpers.team import add_key, team_env

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


def test_a_healthy_database_is_never_announced_as_one_that_cannot_be_used(tmp_path, emu, pg_url):
    """Requests that come while the gateway starts, before it has read its named keys from a database that
    answers: they wait for the first read and are served; no line, no answer says the database cannot be used."""
    env = team_env(tmp_path, emu)
    alice = add_key({**env, "QWEN_STATE_URL": pg_url}, "alice")
    port = free_port()
    answers: list[str] = []
    stop = threading.Event()

    def knock() -> None:
        with httpx.Client(trust_env=False, timeout=30) as c:
            for _ in range(3000):  # bounded: until the gateway is up and served one (or the test ends)
                if stop.is_set():
                    return
                try:
                    r = c.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "gpt-4o", "messages": HI},
                               headers={"authorization": f"Bearer {alice}"})
                except httpx.TransportError:
                    time.sleep(0.005)
                    continue
                answers.append(f"{r.status_code} {r.text[:300]}")
                if r.status_code == 200:
                    return

    knocker = threading.Thread(target=knock)
    knocker.start()
    gw = Gateway(tmp_path / "gw", env=env, args=("--set", f"qwen_state_url={pg_url}"), port=port)
    try:
        gw.start()
        knocker.join(40)
        assert answers and answers[-1].startswith("200"), answers[-5:]
        log = gw.log()
    finally:
        stop.set()
        gw.stop()
    assert not [a for a in answers if "cannot be used" in a], [a for a in answers if not a.startswith("200")]
    assert "cannot be used" not in log, log
    print(f"\n{len(answers)} requests while it started: {sorted({a[:3] for a in answers})}")
