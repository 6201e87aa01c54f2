"""The admin API (docs/admin-api.md) through real gateways: two mitmdump on one PostgreSQL, the API on the first
(qwen_admin_listen), an admin credential made by `qwen-keys add-admin`. A key's whole lifecycle driven through the
API is applied on both gateways when the API answers 200, as `qwen-keys` is; a gateway frozen (SIGSTOP) is named
unconfirmed (202), as `qwen-keys` names it with exit status 3; a client key is refused by the API, the admin
credential by /v1; the API is off unless its option is set."""

from __future__ import annotations

import json
import signal

import httpx
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway, free_port, stop_all
from helpers.team import qwen_keys, team_env, until

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


def status(gw: Gateway, key: str) -> int:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                      json={"model": "gpt-4o", "messages": HI}, timeout=30).status_code


def test_a_keys_lifecycle_through_the_admin_api_holds_on_two_gateways(tmp_path, emu, pg_url):  # noqa: F811
    import psycopg

    port = free_port()
    env_one = team_env(tmp_path, emu, "one")
    admin = qwen_keys(env_one, "add-admin", "lead").stdout.strip().splitlines()[-1]
    gws = [Gateway(tmp_path / "one" / "gw", env=env_one,
                   args=("--set", f"qwen_state_url={pg_url}", "--set", f"qwen_admin_listen={port}")),
           Gateway(tmp_path / "two" / "gw", env=team_env(tmp_path, emu, "two"), args=("--set", f"qwen_state_url={pg_url}"))]
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/admin/v1", headers={"Authorization": f"Bearer {admin}"},
                       trust_env=False, timeout=60)
    try:
        for gw in gws:
            gw.start()
        one, two = gws
        cli = {"QWEN_STATE_URL": pg_url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli")}
        with psycopg.connect(pg_url, autocommit=True) as conn:  # both listen: a change now is theirs to confirm
            until(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                                       "'qwen-gateway %'").fetchone()[0] == 2, "both gateways' LISTEN sessions")

        r = api.post("/keys", json={"name": "alice", "rpm": 100})
        assert r.status_code == 200, r.text
        added = r.json()
        assert added["confirmed"] and added["applied"] == "Applied on 2 running gateways.", added
        alice = added["key"]
        assert [status(gw, alice) for gw in gws] == [200, 200]  # at once: the API answered when both applied it

        assert httpx.get(f"http://127.0.0.1:{port}/admin/v1/keys", headers={"Authorization": f"Bearer {alice}"},
                         trust_env=False, timeout=30).status_code == 401  # a client key is no admin credential
        assert [status(gw, admin) for gw in gws] == [401, 401]  # nor the admin credential a client key

        r = api.patch("/keys/alice", json={"daily-tokens": 100000})
        assert r.status_code == 200 and r.json()["said"] == ["Key alice: rpm 100, daily-tokens 100,000."], r.text
        listed = {k["name"]: k for k in json.loads(qwen_keys(cli, "list", "--json").stdout)}
        assert listed["alice"]["daily_tokens"] == 100000

        r = api.post("/keys/alice/rotate")
        assert r.status_code == 200 and r.json()["confirmed"], r.text
        rotated = r.json()["key"]
        assert [status(gw, alice) for gw in gws] == [401, 401]
        assert [status(gw, rotated) for gw in gws] == [200, 200]

        r = api.post("/keys/alice/revoke")
        assert r.status_code == 200 and r.json()["confirmed"], r.text
        assert [status(gw, rotated) for gw in gws] == [401, 401]

        two.proc.send_signal(signal.SIGSTOP)  # frozen: the API cannot say the change holds there
        try:
            r = api.post("/keys", json={"name": "bob", "wait": 2})
        finally:
            two.proc.send_signal(signal.SIGCONT)
        body = r.json()
        assert r.status_code == 202 and not body["confirmed"], r.text  # as qwen-keys' exit status 3
        assert [u for u in body["unconfirmed"] if u.endswith(f":{two.proc.pid}")], body
        assert body["applied"].startswith("Applied on 1 running gateway. Not confirmed within 2 s by ")
        until(lambda: status(two, body["key"]) == 200, "the key read by the resumed gateway", limit=20)

        r = api.delete("/keys/alice")
        assert r.status_code == 200 and r.json()["said"][0].startswith("Deleted key alice"), r.text
        assert "alice" not in {k["name"] for k in json.loads(qwen_keys(cli, "list", "--json").stdout)}
        assert api.delete("/keys/alice").status_code == 404

        log = one.log()
        assert "qwen: admin API: POST /admin/v1/keys by lead: 200" in log
        assert "by lead: 202 (not confirmed by " in log and f":{two.proc.pid}" in log
        assert admin not in log and alice not in log and rotated not in log
        # the API is off by default: gateway two has none, and its proxy port does not serve one
        assert "admin API on" not in two.log()
        assert httpx.get(two.url + "/admin/v1/keys", headers={"Authorization": f"Bearer {admin}"},
                         trust_env=False, timeout=30).status_code != 200
    finally:
        api.close()
        stop_all(gws)


def test_the_health_check_through_the_admin_api_names_a_missing_tool_parser_and_a_small_window(tmp_path):
    """The model health check (issue 82 item 3) on demand over the API, as `qwen-auth check NAME --deep` runs it:
    a 2026 vLLM started without a tool parser or a reasoning parser, its window 40,960 tokens."""
    from helpers.home import Home
    from helpers.procs import start_emulator
    from helpers.team import qwen_keys

    secret, model = "sk-team-gpu", "Qwen/Qwen3.6-27B"
    server = start_emulator(tmp_path, "--serve", "vllm", "--vllm-version", "0.20.0", "--model", model, "--api-key",
                            secret, "--max-model-len", "40960")
    home = Home(tmp_path / "team")
    home.selfhosted("gpu", server.url + "/v1", secret=secret, default_model=model)
    env = home.env()
    admin = qwen_keys(env, "add-admin", "lead").stdout.strip().splitlines()[-1]
    port = free_port()
    gw = Gateway(tmp_path / "gw", env=env, args=("--set", f"qwen_admin_listen={port}"))
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/admin/v1", headers={"Authorization": f"Bearer {admin}"},
                       trust_env=False, timeout=120)
    try:
        gw.start()
        r = api.post("/accounts/gpu/check", json={"deep": True})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["healthy"] is False and body["account"] == "gpu", body
        said = "\n".join(body["lines"])
        assert "DIFF window: Qwen/Qwen3.6-27B's is 40,960 tokens" in said, said
        assert "DIFF tool calls: the server refuses tool_choice \"auto\"" in said and "--tool-call-parser" in said
        assert "DIFF reasoning:" in said and body["spent_tokens"] > 0, said
        assert secret not in r.text
        assert api.post("/accounts/gpu/check").json()["healthy"] is False  # not deep: the window, nothing spent
        assert api.post("/accounts/nobody/check").status_code == 404
        assert api.get("/accounts/gpu/check").status_code == 405
        refused = api.post("/accounts/gpu/check", json={"deep": "yes"})
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "deep"
    finally:
        api.close()
        stop_all([gw])
        server.stop()
    assert "admin API: POST /admin/v1/accounts/gpu/check by lead: 200" in gw.log() and secret not in gw.log()
