"""Unknown is a value, never zero (issue 59), through a real mitmdump and the emulator: a named key with a USD budget
is refused a model its account has no price for — openai-python on chat and Responses, the image route's model,
raw HTTP on the Messages API getting Anthropic's error shape — before the emulator sees a chat request; with
`qwen_unpriced_as` the same request is answered and charged to the budget at that model's price; a key without a
USD budget is answered, and qwen-usage, /metrics and /health show the answer as unpriced. The emulator's key
account has no known billing and Qwen's own list of it cannot be read here (a host without it): only what a price
file or `qwen_unpriced_as` prices has a price there (a list that prices it: test_e2e_model_list.py)."""

from __future__ import annotations

import json
import os

import httpx
import openai
import pytest

from helpers import commands
from helpers.procs import ROOT
from helpers.team import QWEN_USAGE, add_key, openai_client, qwen_keys, team_env, until

pytestmark = pytest.mark.e2e
UNPRICED = "qwen3.7-flash"  # served by Model Studio, priced nowhere here
HI = [{"role": "user", "content": "hi"}]
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
       "AAAABJRU5ErkJggg==")


def usage_json(env: dict, *args: str) -> list[dict]:
    r = commands.run([QWEN_USAGE, *args, "--json"], timeout=60,
                       env={**os.environ, **env})
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def usage_text(env: dict, *args: str) -> str:
    r = commands.run([QWEN_USAGE, *args], timeout=60, env={**os.environ, **env})
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def doc_refusal() -> dict:
    """docs/keys.md's sample of the refusal (key `ci`, model qwen3.7-flash)."""
    text = (ROOT / "docs" / "keys.md").read_text()
    (line,) = [ln.strip() for ln in text.splitlines() if '"code": "model_unpriced"' in ln]
    return json.loads(line)


@pytest.fixture(autouse=True)
def no_list(emu):
    emu.switches(model_list={"unreadable": 404})


def test_a_usd_budget_refuses_what_has_no_price_before_anything_goes_upstream(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {"qwen3-coder-plus": {"input": 1.0, "output": 5.0}}}))  # the default model
    key = add_key(env, "ci", "--monthly-usd", "5")
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}"))
    client = openai_client(gw.url, key)
    assert client.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content  # priced: served
    sent = len(emu.chat_requests())
    assert sent == 1

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=UNPRICED, messages=HI)
    err = e.value
    assert (err.status_code, err.code, err.param, err.type) == (400, "model_unpriced", "model", "invalid_request_error")
    assert err.response.headers["x-should-retry"] == "false"
    assert err.response.json() == doc_refusal()  # as docs/keys.md prints it
    assert key not in err.message and "qwen_prices_file" in err.message and "--daily-tokens" in err.message

    # an image sent to the priced default model goes to the vision model, which has no price: named as sent
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]}])
    assert e.value.code == "model_unpriced" and "qwen3.6-plus has no price" in e.value.message

    with pytest.raises(openai.BadRequestError) as e:  # the Responses API, streamed: refused before the stream
        client.responses.create(model=UNPRICED, input="hi", stream=True)
    assert e.value.code == "model_unpriced" and e.value.param == "model"

    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                   json={"model": UNPRICED, "max_tokens": 64, "messages": HI}, trust_env=False, timeout=30)
    assert r.status_code == 400 and r.headers["x-should-retry"] == "false"
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body  # Anthropic's shape
    assert f"{UNPRICED} has no price" in body["error"]["message"]

    assert len(emu.chat_requests()) == sent  # nothing of the four went upstream

    rows = until(lambda: [r for r in usage_json(env, "--by", "key") if r["key"] == "ci" and r["refused"] == 4],
                 "the refusals in the ledger")
    assert rows[0]["requests"] == 5 and rows[0]["unpriced"] == 0 and rows[0]["cost_usd"] > 0
    listed = until(lambda: [r for r in json.loads(qwen_keys(env, "list", "--json").stdout) if r["refused_today"] == 4],
                   "the refusals counted for the key")
    assert listed[0]["requests_today"] == 1


def test_unpriced_as_answers_the_same_request_and_charges_the_budget(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "ci", "--monthly-usd", "5")
    gw = make_gateway(env=env, args=("--set", "qwen_unpriced_as=qwen3-max"))
    answer = openai_client(gw.url, key).chat.completions.create(model=UNPRICED, messages=HI)
    assert answer.choices[0].message.content and len(emu.chat_requests()) == 1
    expected = (answer.usage.prompt_tokens * 1.2 + answer.usage.completion_tokens * 6.0) / 1e6  # qwen3-max, ≤32K
    rows = until(lambda: [r for r in usage_json(env, "--by", "key") if r["key"] == "ci"], "the ledger row")
    assert rows[0]["cost_usd"] == pytest.approx(expected, abs=1e-6) and rows[0]["unpriced"] == 0
    listed = until(lambda: [r for r in json.loads(qwen_keys(env, "list", "--json").stdout) if r["usd_this_month"]],
                   "the spend charged to the key")
    assert listed[0]["usd_this_month"] == pytest.approx(expected, abs=1e-6)
    line = until(lambda: [ln for ln in gw.log().splitlines() if "key=ci" in ln], "the request line")[0]
    assert "cost=$" in line and "priced_as=qwen3-max" in line


def test_a_key_without_a_usd_budget_is_answered_and_shown_unpriced(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "alice", "--daily-tokens", "100000")
    gw = make_gateway(env=env)
    client = openai_client(gw.url, key)
    for _ in range(2):
        assert client.chat.completions.create(model=UNPRICED, messages=HI).choices[0].message.content
    assert len(emu.chat_requests()) == 2

    rows = until(lambda: [r for r in usage_json(env, "models") if r["model"] == UNPRICED and r["requests"] == 2],
                 "the ledger rows")
    assert rows[0]["unpriced"] == 2 and rows[0]["cache_saved_usd"] is None
    shown = usage_text(env, "models")
    assert f"unpriced: 2 requests on {UNPRICED}" in shown and "unknown" in shown
    (alice,) = [r for r in usage_json(env, "--by", "key") if r["key"] == "alice"]
    assert alice["cost_usd"] is None and alice["unpriced"] == 2
    listed = until(lambda: [r for r in json.loads(qwen_keys(env, "list", "--json").stdout)
                            if r["unpriced_this_month"] == 2], "the unpriced answers in qwen-keys list")
    assert listed[0]["usd_this_month"] == 0.0  # what had a price: nothing; the two are unknown, said apart
    assert "$0 + 2 unpriced" in qwen_keys(env, "list", "--wide").stdout
    assert "2 unpriced this month" in qwen_keys(env, "list").stdout
    page = tmp_path / "report.html"
    usage_text(env, "report", "--out", str(page))
    assert f"unpriced: 2 requests on {UNPRICED}" in page.read_text()

    auth = {"Authorization": f"Bearer {key}"}
    scrape = httpx.get(gw.url + "/metrics", headers=auth, trust_env=False).text
    assert f'qwen_unpriced_requests_total{{account="emu",key="alice",model="{UNPRICED}"}} 2.0' in scrape, scrape
    assert "qwen_cost_usd_total{" not in scrape
    health = httpx.get(gw.url + "/health", headers=auth, trust_env=False).json()
    assert health["unpriced"] == [{"model": UNPRICED, "billing": "", "requests": 2}]
    assert key not in json.dumps(health) and key not in scrape


def test_a_usd_budget_refuses_what_has_no_price_over_the_responses_websocket(tmp_path, emu, make_gateway):
    """A WebSocket turn is limited by the connection's key as an HTTP request is: its USD budget too."""
    from e2e.test_e2e_responses_ws import connect, turn, user

    env = team_env(tmp_path, emu)
    key = add_key(env, "ci", "--monthly-usd", "5")
    gw = make_gateway(env=env)
    ws = connect(gw, Authorization=f"Bearer {key}")
    try:
        events = turn(ws, {"model": UNPRICED, "store": False, "input": [user("hi")]}, validate=False)
    finally:
        ws.close()
    assert events[-1]["type"] in ("error", "response.failed"), events
    assert "model_unpriced" in json.dumps(events[-1]) and f"{UNPRICED} has no price" in json.dumps(events[-1])
    assert emu.chat_requests() == []  # nothing went upstream
