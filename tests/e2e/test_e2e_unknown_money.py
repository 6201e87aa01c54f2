"""Unknown is a value, never zero (issue 79 item 5, issue 81 item 3), through a real mitmdump and the emulator
serving Model Studio's own model list with prices: a price of 0 in the account's list is no price (unpriced, as any
unknown price is), and what a conversation's cache miss lost is priced as its request was — the account's list, its
tier — or said unknown, never $0, by `qwen-usage conversations`. The emulator's account is on 127.0.0.1, whose
billing the built-in table cannot know: only the list prices its answers here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import openai
import pytest

from helpers import commands
from helpers.home import Home
from helpers.ledger import ledger_rows
from helpers.procs import Gateway, until
from helpers.team import QWEN_USAGE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MODEL = "qwen3.6-plus"
LONG = "Read every file of the repository before you answer a question about it. " * 70  # ~1,300 tokens
# The account's list: USD per million tokens (input, output, implicit read, explicit read, 5-minute write)
INPUT, OUTPUT, CACHED, CACHE_READ, WRITE = 7.0, 21.0, 1.4, 0.7, 8.75


def price(kind: str, value: float | str) -> dict:
    return {"type": kind, "price": str(value), "price_unit": "USD/1M tokens", "time_band": "standard"}


LISTED = {"prices": [{"range_name": "Default", "prices": [
    price("input_token", INPUT), price("output_token", OUTPUT), price("input_token_cache", CACHED),
    price("input_token_cache_read", CACHE_READ), price("input_token_cache_creation_5m", WRITE)]}]}


def gateway(tmp_path: Path, emu, make_gateway, *args: str) -> tuple[Gateway, Path]:
    home = Home(tmp_path, emu)
    home.key("ms")
    gw = make_gateway(env=home.env(), args=args)
    until(lambda: "Qwen's model list read" in gw.log(), "the account's list read")
    return gw, home.state


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60,
                         http_client=httpx.Client(trust_env=False))


def usage(state: Path, *args: str) -> str:
    r = commands.run([QWEN_USAGE, *args, "--state-dir", str(state)], timeout=60, env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def three_turns(gw: Gateway) -> None:
    """One conversation (its prompt_cache_key): a long system text read from the cache on turn 2, changed on turn 3
    (the miss)."""
    c, key = client(gw), {"prompt_cache_key": "the-conversation"}
    history = [{"role": "user", "content": "The first question."}]
    for system in (LONG, LONG, "Answer in French. " + LONG):
        c.chat.completions.create(model=MODEL, max_tokens=16, extra_body=key,
                                  messages=[{"role": "system", "content": system}, *history])
        history += [{"role": "assistant", "content": "Echo."}, {"role": "user", "content": "And then?"}]


def test_a_miss_lost_what_the_accounts_list_says_and_qwen_usage_shows_it(tmp_path, emu, make_gateway):
    emu.switches(model_list={"override": {MODEL: LISTED}})
    gw, state = gateway(tmp_path, emu, make_gateway)
    three_turns(gw)
    rows = until(lambda: (r := ledger_rows(state)) and len(r) >= 3 and r or None, "three ledger rows")
    missed = [r for r in rows if r["cache_miss"]]
    assert [r["cost_unit"] for r in rows] == ["USD"] * 3 and len(missed) == 1, rows
    (miss,) = missed
    assert miss["miss_tokens"] > 0 and miss["priced_by"].startswith("ms's model list from Qwen")
    read_price = CACHE_READ if miss["cache_kind"] == "explicit" else CACHED  # the cache the request used
    expected = miss["miss_tokens"] * (INPUT - read_price) / 1e6
    (conversation,) = json.loads(usage(state, "conversations", "--json"))
    assert conversation["lost_tokens"] == miss["miss_tokens"]
    assert conversation["lost_usd"] == pytest.approx(expected, abs=1e-6)
    line = usage(state, "conversations").splitlines()[2]
    assert f"{miss['miss_tokens']:,}" in line and f"${expected:.6f}" in line, line


def test_with_no_price_known_the_loss_is_unknown_and_a_listed_0_is_no_price(tmp_path, emu, make_gateway):
    """The list gives the model an input price of 0, which the catalogue does not give (qwen3.6-plus is not free):
    no price, so the answers are unpriced and what their miss lost is unknown — never $0."""
    free = {"prices": [{"range_name": "Default", "prices": [price("input_token", "0"), price("output_token", "0")]}]}
    emu.switches(model_list={"override": {MODEL: free}})
    gw, state = gateway(tmp_path, emu, make_gateway)
    three_turns(gw)
    rows = until(lambda: (r := ledger_rows(state)) and len(r) >= 3 and r or None, "three ledger rows")
    assert [(r["cost"], r["cost_unit"], r["priced_by"]) for r in rows] == [(None, "unpriced", None)] * 3
    (conversation,) = json.loads(usage(state, "conversations", "--json"))
    assert conversation["lost_tokens"] > 0 and conversation["lost_usd"] is None
    assert "unknown" in usage(state, "conversations").splitlines()[2]
    assert "cost=unpriced" in gw.log() and "cost=$0 " not in gw.log()


def test_an_answer_without_qwens_usage_is_unknown_in_the_ledger_and_qwen_usage(tmp_path, emu, make_gateway):
    """Issue 79, item 5: whole answers whose usage did not come (the emulator's `no_usage`), on the chat, Messages
    and Responses paths, and a stream whose usage never came (`stall_before_usage`), are recorded as usage_unknown —
    never absent, never 0 — and qwen-usage shows their tokens and cost as unknown."""
    emu.switches(model_list={"override": {MODEL: LISTED}})
    gw, state = gateway(tmp_path, emu, make_gateway)
    ask = [{"role": "user", "content": "say hello"}]
    emu.fault("no_usage")
    answer = client(gw).chat.completions.create(model=MODEL, messages=ask)
    assert answer.choices[0].message.content == "Echo: say hello" and answer.usage is None
    for path, body in (("/v1/messages", {"model": MODEL, "max_tokens": 64, "messages": ask}),
                       ("/v1/responses", {"model": MODEL, "input": "say hello"})):
        emu.fault("no_usage")
        r = httpx.post(gw.url + path, json=body, timeout=60, trust_env=False, headers={"x-api-key": "k"})
        assert r.status_code == 200 and "Echo: say hello" in r.text, r.text
    emu.fault("stall_before_usage", seconds=30)
    streamed = client(gw).chat.completions.create(model=MODEL, messages=ask, stream=True,
                                                   stream_options={"include_usage": True})
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "Echo: say hello"
    rows = until(lambda: (r := ledger_rows(state)) and len(r) >= 4 and r or None, "four ledger rows")
    assert [(r["status"], r["prompt_tokens"], r["cost"], r["cost_unit"]) for r in rows] == \
        [(200, None, None, "usage_unknown")] * 4
    assert gw.log().count("usage=unknown cost=unknown") == 4
    (model,) = json.loads(usage(state, "models", "--json"))
    assert (model["requests"], model["usage_unknown"], model["prompt_tokens"], model["cache_saved_usd"]) == \
        (4, 4, None, None)
    text = usage(state, "models")
    assert f"usage unknown: 4 requests on {MODEL}" in text and "unknown" in text.splitlines()[2], text
