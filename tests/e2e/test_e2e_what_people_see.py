"""What people see is true (issue 60, item 7), through real processes: the start-up of a gateway on a healthy
PostgreSQL whose named keys are not read yet, `qwen-usage` after the state moved to PostgreSQL, `qwen-auth status`
after a key's check failed, a Coding Plan's refusals in `/health`, and the cost options' trace on the request
line and in `/metrics`."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from helpers import commands
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


def _metric(gw: Gateway, name: str, **labels: str) -> float:
    """A sample of the gateway's /metrics (0 when it has none)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(gw.url + "/metrics", trust_env=False, timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _line(gw: Gateway, path: str, n: int = 1) -> str:
    """The request line of the `n`th request to `path`, once it is written."""
    from helpers.procs import until

    def found() -> str | None:
        lines = [ln for ln in gw.log().splitlines() if f"POST {path} " in ln]
        return lines[n - 1] if len(lines) >= n else None
    return until(found, f"request line {n} of {path}", limit=10)


def test_the_cost_options_leave_a_trace_on_the_request_line_and_in_metrics(tmp_path, emu):
    """qwen_responses_native (a Responses request sent to Qwen's own Responses API) and qwen_cache_fixes (the
    tools sorted by name): each says so on the request line and counts in /metrics; a request they leave as it
    was says nothing."""
    from e2e.test_e2e_responses_native import INSTRUCTIONS, MODEL, native_gateway
    import openai

    gw = native_gateway(emu, tmp_path, "--set", "qwen_cache_fixes=tool-order")
    try:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30)
        tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
                 for n in ("zeta", "alpha")]
        c.chat.completions.create(model=MODEL, messages=HI, tools=tools)
        fixed = _line(gw, "/v1/chat/completions")
        assert " fixed=tool-order " in fixed, fixed
        c.chat.completions.create(model=MODEL, messages=HI, tools=list(reversed(tools)))  # in order already
        assert " fixed=" not in _line(gw, "/v1/chat/completions", 2)
        assert _metric(gw, "qwen_cache_fixes_total", fix="tool-order", account="emu") == 1
        assert c.responses.create(model=MODEL, instructions=INSTRUCTIONS, input="ping").status == "completed"
        native = _line(gw, "/v1/responses")
        assert " via=responses " in native, native
        assert _metric(gw, "qwen_native_requests_total", api="responses", account="emu") == 1
    finally:
        gw.stop()


def _usage(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`qwen-usage today --json` as a user runs it (no --state-url, no QWEN_STATE_URL): its requests, and what it
    said on stderr."""
    import json
    import os

    from helpers.team import QWEN_USAGE

    clean = {k: v for k, v in os.environ.items() if k != "QWEN_STATE_URL"}
    r = commands.run([QWEN_USAGE, "today", "--json", *args], timeout=60,
                       env={**clean, **env})
    assert r.returncode == 0, r.stdout + r.stderr
    return sum(row["requests"] for row in json.loads(r.stdout)), r.stderr


def test_qwen_usage_follows_the_gateway_to_its_database_and_says_so(tmp_path, emu, pg_url):
    """The issue: after moving the state to PostgreSQL, `qwen-usage` read the folder's old ledger (14 requests
    instead of 181), without a word."""
    env = team_env(tmp_path, emu)
    folder_gw = Gateway(tmp_path / "gw-folder", env=env).start()
    try:
        for _ in range(2):
            assert httpx.post(folder_gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": HI},
                              trust_env=False, timeout=30).status_code == 200
    finally:
        folder_gw.stop()
    shared_gw = Gateway(tmp_path / "gw-db", env=env, args=("--set", f"qwen_state_url={pg_url}")).start()
    try:
        for _ in range(5):
            assert httpx.post(shared_gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": HI},
                              trust_env=False, timeout=30).status_code == 200
    finally:
        shared_gw.stop()
    requests, said = _usage({"QWEN_GATEWAY_HOME": env["QWEN_GATEWAY_HOME"]})
    assert requests == 5, (requests, said)
    assert f"the shared database {pg_url}" in said and "gateway-store.json" in said, said
    local, said = _usage({"QWEN_GATEWAY_HOME": env["QWEN_GATEWAY_HOME"]}, "--state-url", "")  # the folder's own
    assert local == 2 and "shared database" not in said, (local, said)


def test_health_counts_a_coding_plans_refusals_of_clients(tmp_path, emu, make_gateway):
    """The issue: a Coding Plan account that refuses non-agent clients (its 405) showed plain `ok` in /health,
    however many it refused. It stays `ok` (it serves the agents it accepts), with how many it refused, when,
    and the last client refused."""
    from e2e.test_e2e_plans import CLAUDE_CODE, client, plan_gateway
    import openai

    gw, _ = plan_gateway(tmp_path, emu, make_gateway)
    for _ in range(2):
        with pytest.raises(openai.PermissionDeniedError):
            client(gw).chat.completions.create(model="gpt-4o", messages=HI)
    client(gw, **{"User-Agent": CLAUDE_CODE}).chat.completions.create(model="gpt-4o", messages=HI)
    (row,) = httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()["accounts"]
    assert row["state"] == "ok", row
    refusals = row.get("plan_refusals")
    assert refusals is not None and refusals["count"] == 2, row
    assert refusals["last_client"].startswith("OpenAI/Python ") and refusals["last"].endswith("Z"), refusals


def test_mitmweb_without_a_password_says_where_its_login_is_and_it_works(make_gateway, emu, oauth_home):
    """The issue: mitmweb on a server or over SSH (no browser opened for you) answers 403, and the token its login
    needs is redacted from the console. The log names a file (0600, never the token itself) holding the login URL;
    that URL opens the UI (as through an SSH tunnel to the port: the same loopback address)."""
    import os
    import re
    import stat
    from pathlib import Path

    port = free_port()
    gw = make_gateway("web", tool="mitmweb", env=oauth_home["env"], args=(
        "--set", f"web_port={port}", "--set", "web_host=127.0.0.1"))
    from helpers.procs import until

    line = until(lambda: next((ln for ln in gw.log().splitlines() if "mitmweb's login" in ln), None),
                 "the line saying where the login is", limit=15)
    path = Path(re.search(r" in (/\S+?)[ :;,)]", line + " ").group(1))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
    url = path.read_text().strip()
    token = re.search(r"[?&]token=([0-9a-f]+)", url).group(1)
    assert token not in gw.log()  # the console and the log never hold it
    with httpx.Client(trust_env=False, timeout=10) as browser:
        assert browser.get(f"http://127.0.0.1:{port}/").status_code == 403  # without it: the login form
        assert browser.get(url).status_code == 200  # with it: in, and a cookie keeps it so
        assert browser.get(f"http://127.0.0.1:{port}/flows").status_code == 200
    gw.stop()
    assert not path.exists()  # the token was this run's: gone with it
