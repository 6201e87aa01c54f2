"""What named keys spent, where users look: the cost of each request (a user price file over the built-in
table), the usage ledger (`qwen-usage --by key`, `qwen-usage report`), /metrics labelled by key name, the
request line and the mitmweb summary (read from a `-w` flow file); a monthly USD budget; Coding Plan style
accounts counted in their own unit. Real mitmdump, openai-python, the real qwen-keys and qwen-usage."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from mitmproxy import io

from qwen_gateway.pricing.prices import usd

from helpers import commands
from helpers.team import QWEN_USAGE, add_key, openai_client, qwen_keys, team_env, until

pytestmark = pytest.mark.e2e
PRICES = {"*": {"qwen3-coder-plus": {"input": 2.0, "output": 10.0, "cached": 1.0}}}


def usage_cmd(env: dict, *args: str) -> str:
    import os
    r = commands.run([QWEN_USAGE, *args], timeout=60, env={**os.environ, **env})
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_cost_per_request_per_key_in_the_ledger_metrics_request_line_and_mitmweb(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    alice = add_key(env, "alice")
    flows = tmp_path / "flows.mitm"
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}", "-w", str(flows)))
    client = openai_client(gw.url, alice)
    usages = [client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello " * n}]).usage
              for n in (1, 40)]
    expected = sum((u.prompt_tokens * 2.0 + u.completion_tokens * 10.0) / 1e6 for u in usages)
    with pytest.raises(openai.AuthenticationError):
        openai_client(gw.url, "sk-qg-unknown").chat.completions.create(model="gpt-4o", messages=[])

    rows = until(lambda: (r := json.loads(usage_cmd(env, "--by", "key", "--json"))) and len(r) == 2 and r,
                 "the ledger rows", limit=10)
    alice_row = next(r for r in rows if r["key"] == "alice")
    assert alice_row["requests"] == 2 and alice_row["refused"] == 0
    assert alice_row["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert next(r for r in rows if r["key"] == "-")["refused"] == 1  # the unknown key, refused
    shown = usage_cmd(env, "--by", "key")
    assert "alice" in shown and " cost " in shown and usd(expected) in shown

    report = tmp_path / "report.html"
    usage_cmd(env, "report", "--out", str(report))
    page = report.read_text()
    assert 'id="by-key"' in page and "<td>alice</td>" in page and usd(expected) in page

    scrape = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {alice}"}, trust_env=False).text
    cost = next(ln for ln in scrape.splitlines() if ln.startswith("qwen_cost_usd_total{") and 'key="alice"' in ln)
    assert float(cost.rsplit(" ", 1)[1]) == pytest.approx(expected, abs=1e-9)
    assert any(ln.startswith("qwen_requests_total{") and 'key="alice"' in ln and ln.endswith(" 2.0")
               for ln in scrape.splitlines()), scrape
    assert alice not in scrape

    line = until(lambda: [ln for ln in gw.log().splitlines() if "key=alice" in ln], "the request lines")[0]
    assert "cost=$" in line and alice not in gw.log()
    gw.stop()
    with open(flows, "rb") as f:
        comments = [fl.comment for fl in io.FlowReader(f).stream()]
    assert any("key alice" in c and "$0.0" in c for c in comments), comments
    assert alice.encode() not in flows.read_bytes()


def test_a_monthly_usd_budget_refuses_once_spent(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {"qwen3-coder-plus": {"input": 1000.0, "output": 1000.0}}}))  # $0.001 a token
    key = add_key(env, "bob", "--monthly-usd", "0.01")
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}"))
    client = openai_client(gw.url, key)
    assert client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "word " * 20}]).usage \
        .total_tokens > 10  # over $0.01
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "insufficient_quota" and "monthly budget" in e.value.message
    assert "of $0.01 this month" in e.value.message and "at 00:00 UTC" in e.value.message
    assert e.value.response.headers["x-should-retry"] == "false"
    listed = until(lambda: [r for r in json.loads(qwen_keys(env, "list", "--json").stdout) if r["refused_today"]],
                   "the spend written")[0]  # within about a second
    assert listed["usd_this_month"] > 0.01 and listed["refused_today"] == 1 and listed["requests_today"] == 1


def test_a_plan_account_counts_its_own_unit_not_money(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {"unit": "requests"}}))  # as the built-in table does for Coding Plan hosts
    key = add_key(env, "coder", "--monthly-usd", "0.000001")
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}"))
    client = openai_client(gw.url, key)
    for _ in range(3):  # a plan's requests cost no money: the USD budget never refuses them
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    rows = until(lambda: [r for r in json.loads(usage_cmd(env, "--by", "key", "--json")) if r["requests"] == 3],
                 "the ledger rows")
    assert rows[0]["plan_requests"] == 3 and rows[0]["cost_usd"] == 0
    listed = until(lambda: [r for r in json.loads(qwen_keys(env, "list", "--json").stdout)
                            if r["plan_requests_this_month"] == 3], "the spend in qwen-keys list")
    assert listed[0]["usd_this_month"] == 0
    assert "3 requests" in qwen_keys(env, "list").stdout
