"""A per-key budget on one model (`qwen-keys add NAME --model-monthly-usd MODEL=X`) through a real mitmdump: once
what the key spent on that model this UTC month reached it, the key's next request for that model is refused — 429
`insufficient_quota` on OpenAI's API, Anthropic's spend-limit 400 on the Messages API, `x-should-retry: false` —
while its requests for other models are served; on a state folder, and on PostgreSQL across two gateways (what one
spent on the model refuses it at the other, asked under the key's lock). Real qwen-keys, openai-python and httpx.
gpt-4o is the account's default model, qwen3-coder-plus, only once the account is chosen: the engine's check of the
attempt counts it there."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway
from helpers.team import add_key, openai_client, qwen_keys, team_env, until

pytestmark = pytest.mark.e2e
# $0.001 a token on the default model (gpt-4o goes to qwen3-coder-plus), next to nothing on qwen3-max
PRICES = {"*": {"qwen3-coder-plus": {"input": 1000.0, "output": 1000.0}, "qwen3-max": {"input": 0.1, "output": 0.1}}}
WORDS = [{"role": "user", "content": "word " * 20}]
HI = [{"role": "user", "content": "hi"}]


def prices_file(tmp_path) -> str:
    f = tmp_path / "prices.json"
    f.write_text(json.dumps(PRICES))
    return str(f)


def spent_on_model(env: dict) -> dict:
    return json.loads(qwen_keys(env, "list", "--json").stdout)[0]["model_monthly_usd"]["qwen3-coder-plus"]


def test_a_budget_on_one_model_refuses_that_model_once_spent_and_serves_the_others(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "bob", "--model-monthly-usd", "qwen3-coder-plus=0.01")
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices_file(tmp_path)}"))
    client = openai_client(gw.url, key)
    assert client.chat.completions.create(model="gpt-4o", messages=WORDS).usage.total_tokens > 10  # over $0.01
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert e.value.code == "insufficient_quota" and e.value.response.headers["x-should-retry"] == "false"
    assert "monthly budget on qwen3-coder-plus" in e.value.message and "of $0.01 this month" in e.value.message
    messages = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": key}, trust_env=False, timeout=30,
                          json={"model": "qwen3-coder-plus", "max_tokens": 16, "messages": HI})
    assert messages.status_code == 400 and messages.headers["x-should-retry"] == "false"
    assert "on qwen3-coder-plus this month, qwen-keys --model-monthly-usd" in messages.json()["error"]["message"]
    for _ in range(3):  # another model: no budget counts it
        assert client.chat.completions.create(model="qwen3-max", messages=WORDS).choices
    listed = until(lambda: (s := spent_on_model(env)) and s["spent_this_month"] > 0.01 and s, "the spend written")
    assert listed["limit"] == 0.01
    assert "model-monthly-usd qwen3-coder-plus: $0.0" in qwen_keys(env, "list").stdout


def test_on_postgresql_what_one_gateway_spent_on_the_model_refuses_it_at_the_other(tmp_path, emu, pg_url):
    prices = prices_file(tmp_path)
    gws = [Gateway(tmp_path / name / "gw", env=team_env(tmp_path, emu, name),
                   args=("--set", f"qwen_state_url={pg_url}", "--set", f"qwen_prices_file={prices}"))
           for name in ("one", "two")]
    cli = {"QWEN_STATE_URL": pg_url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli-state")}
    try:
        for gw in gws:
            gw.start()
        key = add_key(cli, "budget", "--model-monthly-usd", "qwen3-coder-plus=0.01")  # applied on both on return
        one, two = (openai_client(gw.url, key) for gw in gws)
        assert one.chat.completions.create(model="qwen3-coder-plus", messages=WORDS).usage.total_tokens > 10
        listed = until(lambda: (s := spent_on_model(cli)) and s["spent_this_month"] > 0.01 and s,
                       "gateway one's spend on the model in the database", limit=10)  # batched: about a second
        assert listed["limit"] == 0.01
        # named as sent, the model's budget is held at the entrance: gateway two asks the database under the key's
        # lock (its memory may not have heard of the spend yet), refused at once
        with pytest.raises(openai.RateLimitError) as e:
            two.chat.completions.create(model="qwen3-coder-plus", messages=HI)
        assert e.value.code == "insufficient_quota" and "monthly budget on qwen3-coder-plus" in e.value.message
        assert two.chat.completions.create(model="qwen3-max", messages=HI).choices  # another model: served
        with pytest.raises(openai.RateLimitError):
            one.chat.completions.create(model="qwen3-coder-plus", messages=HI)
    finally:
        for gw in gws:
            gw.stop()
