"""The probes through real mitmdump (issue 40, item 3): a gateway that requires client keys answers
/health/liveness and /health/readiness to a client without one; readiness follows the accounts (none, then one
added with qwen-auth while it runs) and the shared database (a real PostgreSQL stopped under it and started
again), while liveness stays 200 and chat goes on. Unit tests: tests/unit/test_health_probes.py."""

from __future__ import annotations

import json

import httpx
import pytest

from helpers import commands
from helpers.home import CODING_PLAN, Home
from helpers.pgserver import pg_own  # noqa: F401  (fixture)
from helpers.procs import BIN, until

pytestmark = pytest.mark.e2e

CLIENT_KEY = "probe-client-key"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "still here"}]}


def get(gw, path: str) -> tuple[int, dict]:
    r = httpx.get(gw.url + path, trust_env=False, timeout=10)  # no client key: as kubelet and Docker ask
    return r.status_code, r.json()


def key_home(tmp_path, emu, **extra: str) -> dict[str, str]:
    """The env of a home whose one account is a key for the emulator (what `qwen-auth add-key` writes)."""
    home = Home(tmp_path, emu)
    home.key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    return home.env(**extra)


def test_a_keyed_gateway_answers_the_probes_without_a_key_and_nothing_more(make_gateway, emu, tmp_path):
    env = key_home(tmp_path, emu, QWEN_GATEWAY_KEYS=CLIENT_KEY)
    gw = make_gateway(env=env)
    assert get(gw, "/health/liveness") == (200, {"status": "alive"})
    assert get(gw, "/health/readiness") == (200, {"status": "ready"})
    chat = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, trust_env=False, timeout=30)
    assert chat.status_code == 401  # the rest still needs the key
    until(lambda: "GET /health/readiness route=readiness 200" in gw.log(), "the probe's request line "
          "(told with its batch, dispatch.BATCH_S after the answer)", limit=5)
    lines = [ln for ln in gw.log().splitlines() if "/health/" in ln]
    assert emu.url not in "".join(lines) and "emu" not in json.dumps([get(gw, "/health/readiness")])


def test_readiness_follows_the_accounts(make_gateway, emu, tmp_path):
    """No account: not ready (a fresh container before its accounts). One added with qwen-auth while the
    gateway runs: ready, without a restart."""
    state = tmp_path / "state"
    env = {"QWEN_DIR": str(tmp_path / ".qwen"), "QWEN_GATEWAY_HOME": str(state), "HOME": str(tmp_path),
           "QWEN_ACCOUNTS_CHECK_S": "0.2", "EMU_KEY": emu.seed_token(kind="key")}
    gw = make_gateway(env=env)
    assert get(gw, "/health/readiness") == (503, {"status": "not_ready", "reasons": ["no_usable_account"]})
    assert get(gw, "/health/liveness") == (200, {"status": "alive"})
    r = commands.run([BIN / "qwen-auth", "add-key", "emu", "--base-url", emu.url + "/v1", "--key-env", "EMU_KEY"],
                       env={**env, "PATH": ""}, timeout=60)
    assert r.returncode == 0, r.stderr
    until(lambda: get(gw, "/health/readiness")[0] == 200, "ready once an account is added", limit=20)


def test_readiness_is_503_while_the_shared_database_is_down(make_gateway, emu, tmp_path, pg_own):
    """PostgreSQL stopped under the gateway (as `pg_ctl stop -m fast`): once the gateway has met the outage,
    readiness is 503 `storage_unavailable` — what needs the database would be refused — while liveness is 200
    and chat is still answered; started again, ready again without a restart."""
    import openai

    env = key_home(tmp_path, emu)
    gw = make_gateway(env=env, args=("--set", f"qwen_state_url={pg_own.db}"))
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=30)
    stored = c.responses.create(model="gpt-4o", input="kept").id  # the database in use
    assert get(gw, "/health/readiness") == (200, {"status": "ready"})
    pg_own.halt()
    with pytest.raises(openai.APIStatusError) as e:  # the gateway meets the outage
        c.responses.retrieve(stored)
    assert e.value.status_code == 503
    assert get(gw, "/health/readiness") == (503, {"status": "not_ready", "reasons": ["storage_unavailable"]})
    assert get(gw, "/health/liveness") == (200, {"status": "alive"})
    assert c.chat.completions.create(**CHAT).choices[0].message.content == "Echo: still here"
    pg_own.resume()
    until(lambda: get(gw, "/health/readiness")[0] == 200, "ready once the database is back", limit=20)
    assert c.responses.retrieve(stored).id == stored
