"""Cache money counted (issue 39, item 2), through a real mitmdump with openai-python: what Qwen's explicit cache
created and read and what its implicit cache read, in each dialect's own usage fields (chat whole and
streamed, Responses streamed), priced as Model Studio bills them (creation 125% of the input price, explicit
hits 10%, implicit hits the table's `cached`) in the ledger (`qwen-usage`, with what the cache saved, and its
report), a named key's `--monthly-usd` budget and `/metrics`."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from qwen_gateway.pricing.prices import signed_usd

from helpers import commands
from helpers.team import QWEN_USAGE, add_key, openai_client, qwen_keys, team_env, until

pytestmark = pytest.mark.e2e

INPUT, OUTPUT, IMPLICIT_HIT = 2.0, 10.0, 0.4  # USD per million tokens, the user's file
EXPLICIT_HIT, CREATION = INPUT * 0.10, INPUT * 1.25  # Model Studio's ratios, the gateway's defaults
PRICES = {"*": {"qwen3-coder-plus": {"input": INPUT, "output": OUTPUT, "cached": IMPLICIT_HIT}}}
LONG = "Read every file of the repository before you answer a question about it. " * 70  # ~1,300 tokens


def usage_cmd(env: dict, *args: str) -> str:
    import os
    r = commands.run([QWEN_USAGE, *args], timeout=60, env={**os.environ, **env})
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def priced(prompt: int, completion: int, hits: int, written: int, explicit: bool) -> tuple[float, float]:
    """(cost, saved) in USD, as Model Studio bills the request."""
    hit = EXPLICIT_HIT if explicit else IMPLICIT_HIT
    prompt_usd = (prompt - hits - written) * INPUT + hits * hit + written * CREATION
    return (prompt_usd + completion * OUTPUT) / 1e6, (prompt * INPUT - prompt_usd) / 1e6


def chat_usage(u) -> tuple[int, int, int, int, bool]:
    d = u.prompt_tokens_details
    explicit = getattr(d, "cache_type", None) == "ephemeral"  # Qwen's own field, passed on
    return u.prompt_tokens, u.completion_tokens, d.cached_tokens, d.cache_write_tokens or 0, explicit


def test_cache_creation_and_hits_counted_and_priced_everywhere(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    alice = add_key(env, "alice", "--monthly-usd", "5")
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}"))
    c = openai_client(gw.url, alice)
    system = {"role": "system", "content": LONG}
    seen = []  # (prompt, completion, hits, written, explicit) of every answer, as the clients saw them

    whole = c.chat.completions.create(model="gpt-4o", messages=[system, {"role": "user", "content": "first"}])
    seen.append(chat_usage(whole.usage))
    assert seen[-1][2] == 0 and seen[-1][3] > 1024 and seen[-1][4]  # nothing read, the prompt written
    stream = c.chat.completions.create(model="gpt-4o", stream=True, stream_options={"include_usage": True}, messages=[
        system, {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"}])
    streamed = [ch.usage for ch in stream if ch.usage][-1]
    seen.append(chat_usage(streamed))
    assert seen[-1][2] == seen[0][3] and seen[-1][3] > 0  # the first turn read, the rest written

    events = list(c.responses.create(model="gpt-4o", instructions=LONG, input="a Responses turn " * 50, stream=True))
    done = next(e for e in events if e.type == "response.completed").response.usage
    d = done.input_tokens_details
    assert d.cached_tokens > 1024 and d.cache_write_tokens > 0  # the system prompt read (it was stored above)
    seen.append((done.input_tokens, done.output_tokens, d.cached_tokens, d.cache_write_tokens, True))

    short = [{"role": "user", "content": "an unmarked question of a few hundred tokens " * 30}]
    for _ in range(2):  # under 1,024 tokens: no marker, Qwen's implicit cache
        seen.append(chat_usage(c.chat.completions.create(model="gpt-4o", messages=short).usage))
    assert seen[-1][2] > 256 and seen[-1][3:] == (0, False)

    cost = sum(priced(*s)[0] for s in seen)
    saved = sum(priced(*s)[1] for s in seen)
    written, hits = sum(s[3] for s in seen), sum(s[2] for s in seen)
    assert 0 < saved

    (row,) = until(lambda: (r := json.loads(usage_cmd(env, "--by", "key", "--json"))) and r[0]["requests"] == 5
                   and r, "the ledger's rows", limit=10)
    assert row["key"] == "alice" and row["cost_usd"] == pytest.approx(cost, abs=2e-6)
    assert row["cache_saved_usd"] == pytest.approx(saved, abs=2e-6)
    (today,) = json.loads(usage_cmd(env, "--json"))
    assert (today["cached_tokens"], today["cache_write_tokens"]) == (hits, written)
    text = usage_cmd(env)
    assert "cache write" in text and "cache saved" in text and signed_usd(round(saved, 6)) in text
    report = tmp_path / "report.html"
    usage_cmd(env, "report", "--out", str(report))
    assert 'data-name="cache saved"' in report.read_text() and f"<b>{written:,}</b>cache writes" in report.read_text()

    spent = until(lambda: [r for r in json.loads(qwen_keys(env, "list", "--json").stdout)
                           if r["usd_this_month"] > 0], "the spend written")[0]
    assert spent["usd_this_month"] == pytest.approx(cost, abs=2e-6)  # what the budget counts

    scrape = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {alice}"}, trust_env=False).text
    lines = scrape.splitlines()
    assert any(ln.startswith("qwen_tokens_total{") and 'kind="cache_write"' in ln and 'key="alice"' in ln
               and float(ln.rsplit(" ", 1)[1]) == written for ln in lines), scrape
    (gauge,) = [ln for ln in lines if ln.startswith("qwen_cache_saved_usd{") and 'key="alice"' in ln]
    assert float(gauge.rsplit(" ", 1)[1]) == pytest.approx(saved, abs=1e-9)
    line = until(lambda: [ln for ln in gw.log().splitlines() if "key=alice" in ln and "cache_write=" in ln],
                 "a request line with its cache writes")[0]
    assert f"cache_write={seen[0][3]}" in line


def test_a_monthly_budget_counts_cache_writes(tmp_path, emu, make_gateway):
    """Writes priced far above the input price: one request that stores ~1,300 tokens spends the key's $1 (at
    the input price alone it would cost a thousandth of that), and the next request is refused."""
    env = team_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {"qwen3-coder-plus": {"input": 1.0, "output": 1.0, "cache_write": 1000.0}}}))
    key = add_key(env, "bob", "--monthly-usd", "1")
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}"))
    c = openai_client(gw.url, key)
    first = c.chat.completions.create(model="gpt-4o", messages=[{"role": "system", "content": LONG},
                                                               {"role": "user", "content": "hi"}])
    assert first.usage.prompt_tokens_details.cache_write_tokens > 1000
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "insufficient_quota" and "monthly budget" in e.value.message
