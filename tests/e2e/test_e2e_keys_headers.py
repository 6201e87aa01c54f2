"""A named key's limits as the real APIs announce them, read by the real SDKs from a real mitmdump: OpenAI's
`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (reset as a duration, `1m0s`) on the OpenAI dialects,
Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` (reset
as an RFC 3339 time; the key's one token budget counts input and output together) on the Messages API — on whole and streamed answers and on refusals, never on a key without rpm/tpm; a spent
budget on the Messages API answered as Anthropic answers a reached spend limit (400, which the SDK does not
retry); Retry-After never beyond the minute."""

from __future__ import annotations

import datetime
import json
import re
import time

import httpx
import openai
import pytest

from helpers.team import ANTHROPIC_PYTHON, MESSAGE, NO_ANTHROPIC, add_key, anthropic_run, team_env

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]
OPENAI_NAMES = [f"x-ratelimit-{what}-{kind}" for what in ("limit", "remaining", "reset") for kind in ("requests", "tokens")]
ANTHROPIC_NAMES = [f"anthropic-ratelimit-{kind}-{what}" for kind in ("requests", "tokens", "input-tokens",
                                                                  "output-tokens")
                   for what in ("limit", "remaining", "reset")]
SPEND_LIMIT = re.compile(r"You have reached your specified API usage limits\. You will regain access on "
                         r"(\d{4}-\d\d-\d\d) at 00:00 UTC\.")


def duration(value: str) -> float:
    """OpenAI's reset: `1s`, `6m0s`, `250ms` (Go's durations)."""
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?|(\d+)ms", value)
    assert m and value, value
    if m.group(3):
        return int(m.group(3)) / 1000
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0)


def client(url: str, key: str, requests: list | None = None, retries: int = 0) -> openai.OpenAI:
    hooks = {"response": [requests.append]} if requests is not None else {}
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=retries, timeout=30,
                         http_client=httpx.Client(trust_env=False, event_hooks=hooks))


def limits_of(headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if "ratelimit" in k}


def test_openai_dialects_carry_x_ratelimit_headers_on_answers_and_refusals(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    limited = add_key(env, "limited", "--rpm", "3", "--tpm", "100000")
    free = add_key(env, "free")
    gw = make_gateway(env=env)
    c = client(gw.url, limited)
    whole = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
    h = whole.headers
    assert h["x-ratelimit-limit-requests"] == "3" and h["x-ratelimit-remaining-requests"] == "2"
    assert 0 < duration(h["x-ratelimit-reset-requests"]) <= 60
    assert h["x-ratelimit-limit-tokens"] == "100000" and 99_000 < int(h["x-ratelimit-remaining-tokens"]) < 100_000
    assert 0 < duration(h["x-ratelimit-reset-tokens"]) <= 60
    with c.chat.completions.with_streaming_response.create(model="gpt-4o", messages=HI, stream=True) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "1"  # with the response head
        assert "Echo: hi" in "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    responses = c.responses.with_raw_response.create(model="gpt-4o", input="hi")
    assert responses.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="gpt-4o", messages=HI)
    h = e.value.response.headers
    assert e.value.code == "rate_limit_exceeded" and h["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(h["retry-after"]) <= 60 and 0 < duration(h["x-ratelimit-reset-requests"]) <= 60
    assert h["x-ratelimit-limit-tokens"] == "100000"
    # a key without rpm or tpm: no such headers
    assert limits_of(client(gw.url, free).chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
                     .headers) == {}


def test_a_spent_budget_on_openai_dialects_is_insufficient_quota_never_retried_nor_a_day_long_retry_after(
        tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "daily", "--daily-tokens", "1", "--rpm", "100")
    gw = make_gateway(env=env)
    client(gw.url, key).chat.completions.create(model="gpt-4o", messages=HI)  # spends more than 1 token
    seen: list[httpx.Response] = []
    with pytest.raises(openai.RateLimitError) as e:
        client(gw.url, key, seen, retries=3).chat.completions.create(model="gpt-4o", messages=HI)
    h = e.value.response.headers
    assert e.value.code == "insufficient_quota" and "daily budget" in e.value.message
    assert len(seen) == 1 and h["x-should-retry"] == "false"  # the SDK did not retry
    assert int(h.get("retry-after", "0")) <= 60  # never beyond the window
    assert h["x-ratelimit-limit-requests"] == "100"  # the key has a rate limit: its state, on the refusal too


def _reset_in(value: str) -> float:
    """Anthropic's reset: an RFC 3339 time; the seconds from now until then."""
    at = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert at.tzinfo is not None, value
    return at.timestamp() - time.time()


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_the_messages_api_carries_anthropic_ratelimit_headers_and_answers_a_spent_budget_as_anthropic_does(
        tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {"qwen3-coder-plus": {"input": 1000.0, "output": 1000.0}}}))  # $0.001 a token
    limited = add_key(env, "claude", "--rpm", "5", "--tpm", "100000")
    daily = add_key(env, "claude-daily", "--daily-tokens", "1")
    monthly = add_key(env, "claude-monthly", "--monthly-usd", "0.001")
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}"))
    run = anthropic_run(gw.url, limited, [{"op": "create", "params": MESSAGE},
                                          {"op": "stream", "params": MESSAGE}])
    assert [o.get("answer", {}).get("message", o.get("answer", {})).get("content", [{}])[0].get("text")
            for o in run["result"]] == ["Echo: hi", "Echo: hi"]
    whole, streamed = (x["ratelimit"] for x in run["http"])
    assert sorted(whole) == sorted(ANTHROPIC_NAMES) == sorted(streamed)  # Anthropic's names only
    assert whole["anthropic-ratelimit-requests-limit"] == "5" and whole["anthropic-ratelimit-requests-remaining"] == "4"
    assert streamed["anthropic-ratelimit-requests-remaining"] == "3"
    assert 0 < _reset_in(whole["anthropic-ratelimit-requests-reset"]) <= 61
    assert whole["anthropic-ratelimit-tokens-limit"] == "100000"
    assert 99_000 < int(whole["anthropic-ratelimit-tokens-remaining"]) < 100_000
    for family in ("input-tokens", "output-tokens"):  # the same one budget, as Anthropic names its parts
        assert [whole[f"anthropic-ratelimit-{family}-{w}"] for w in ("limit", "remaining", "reset")] == [
            whole[f"anthropic-ratelimit-tokens-{w}"] for w in ("limit", "remaining", "reset")]

    today = datetime.datetime.now(datetime.UTC).date()
    for key, regain in ((daily, today + datetime.timedelta(days=1)),
                        (monthly, (today.replace(day=1) + datetime.timedelta(days=32)).replace(day=1))):
        spent = anthropic_run(gw.url, key, [{"op": "create", "params": {**MESSAGE, "messages": [
            {"role": "user", "content": "word " * 20}]}}, {"op": "create", "params": MESSAGE}], max_retries=3)
        assert "answer" in spent["result"][0]
        raised = spent["result"][1]["raised"]
        assert raised["class"] == "BadRequestError" and raised["status"] == 400
        assert raised["body"]["error"]["type"] == "invalid_request_error"
        m = SPEND_LIMIT.match(raised["message"])
        assert m and m.group(1) == regain.isoformat(), raised["message"]
        assert [x["status"] for x in spent["http"]] == [200, 400]  # not retried
        assert spent["http"][1]["ratelimit"] == {}  # no rate limit on these keys: no headers, no Retry-After
