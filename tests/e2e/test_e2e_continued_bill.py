"""A continued stream billed as Qwen bills it (issue 71): a conversation with cache markers, its second turn's
stream reset mid-answer and continued in partial mode on the same account, through a real mitmdump read by
openai-python. Qwen billed both requests of that turn from the moment it took their prompts: the one that broke
read the first turn's prefix and wrote the rest of what it marked, the continuation read all of it. The ledger's
row for the turn must be that bill — not the broken request's prompt as plain input —, its prompts within 1 %
(what the broken request read is the cache doctor's estimate); the broken request's output is the gateway's count
of the text it received, which Qwen's own count (what it generated) can only exceed."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.ledger import ledger_rows
from helpers.procs import until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MODEL = "qwen3-coder-plus"  # partial mode, the explicit cache, non-thinking
MARK = {"type": "ephemeral"}
SYSTEM = "You review code. Read every file of the repository before you answer a question about it. " * 70
DOCUMENT = "The module under review holds the pool of accounts and the retry loop of the gateway. " * 80
# qwen3-coder-plus's international prices up to 32K tokens, USD per million: input 1.0, output 5.0 (the catalogue's
# and the emulator's list); the explicit cache's reads at 10 % of input, its 5-minute writes at 125 % (Model
# Studio's "Context cache" page)
INPUT, OUTPUT, READ, WRITE = 1.0, 5.0, 0.10, 1.25


def prompt_bill(usage: dict) -> float:
    """What Qwen bills one request's prompt for (a formula of its own usage)."""
    d = usage.get("prompt_tokens_details") or {}
    read, written = d.get("cached_tokens") or 0, d.get("cache_creation_input_tokens") or 0
    return ((usage["prompt_tokens"] - read - written) * INPUT + read * READ + written * WRITE) / 1e6


def bill(usage: dict) -> float:
    return prompt_bill(usage) + usage["completion_tokens"] * OUTPUT / 1e6


LONG = " ".join(f"token{i} is, perhaps, the (next) word-{i * 7}." for i in range(50))  # ~500 tokens, counted apart


@pytest.mark.parametrize("cut", ["early", "late", "elsewhere"])
def test_a_continued_stream_is_billed_as_qwen_billed_its_requests(tmp_path, emu, make_gateway, cut):
    """`late`: the cut comes after ~500 tokens of text the gateway's tokenizer counts otherwise than Qwen (before:
    the turn's prompts 3.5 % under Qwen's bill; now what the continuation read of the cache is the broken
    request's prompt as Qwen counted it, its last message being marked). `elsewhere`: Qwen throttles inside the
    stream and the answer goes on on the pool's other account, whose cache holds nothing of the broken request's:
    that one read what the cache doctor knows its account held and wrote the rest (before: all plain input)."""
    home = Home(tmp_path, emu)
    for name in ("emu", "other") if cut == "elsewhere" else ("emu",):
        home.key(name, key_env=f"KEY_{name.upper()}")
    gw = make_gateway(env=home.env(), args=("--set", "qwen_debug_log=true"))
    state = home.state
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=60,
                           http_client=httpx.Client(trust_env=False))
    system = {"role": "system", "content": [{"type": "text", "text": SYSTEM, "cache_control": MARK}]}
    first = [system, {"role": "user", "content": "Which module holds the pool?"}]

    def turn(messages: list[dict]) -> str:
        chunks = list(client.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                                     stream_options={"include_usage": True}))
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    emu.switches(reply="The pool is in upstream/pool, and the retry loop in upstream/retry.py.")  # a short answer
    answer = turn(first)
    if cut == "early":
        emu.fault("reset_midstream")  # after two pieces of text
    elif cut == "elsewhere":
        emu.fault("error_finish")  # Qwen's throttle inside the stream, after the first text
    else:
        emu.switches(reply=LONG)
        emu.fault("cut", inside="token30 ", how="rst")
    second = [*first, {"role": "assistant", "content": answer},
              {"role": "user", "content": [{"type": "text", "text": DOCUMENT + " Where is the retry loop?",
                                            "cache_control": MARK}]}]
    turn(second)
    accounts = sorted(emu.stats()["billed"].values(), key=len, reverse=True)
    # turn 1, broken, its rest (the gateway's lines say where each went: a clean clone once saw one account only)
    assert [len(a) for a in accounts] == ([2, 1] if cut == "elsewhere" else [3]), (accounts, gw.log()[-4000:])
    billed = accounts[0] + (accounts[1] if cut == "elsewhere" else [])
    broken, continuation = billed[1], billed[2]
    d = broken["prompt_tokens_details"]
    assert d["cached_tokens"] > 1024 and d["cache_creation_input_tokens"] > 1024  # it read turn 1, wrote the rest
    later = continuation["prompt_tokens_details"]
    if cut == "elsewhere":  # a cold cache: the continuation read nothing and wrote what it marked
        assert later["cached_tokens"] == 0 and later["cache_creation_input_tokens"] > 1024, later
    else:
        assert later["cached_tokens"] >= d["cached_tokens"] + d["cache_creation_input_tokens"]
    rows = until(lambda: (lambda r: r if len(r) >= 2 else None)(ledger_rows(state)), "two ledger rows")
    assert rows[0]["cost"] == pytest.approx(bill(billed[0]), rel=1e-9)
    assert rows[1]["retries"] == 1 and rows[1]["cost_unit"] == "USD"
    assert continuation["completion_tokens"] < rows[1]["completion_tokens"] <= sum(b["completion_tokens"] for b in billed[1:])
    notes = json.loads(sorted((state / "logs").glob("exchange-*.json"))[-1].read_text())["summary"]["notes"]
    assert any(n.startswith("usage: ") and "read from Qwen's cache and" in n for n in notes), notes
    prompts = rows[1]["cost"] - rows[1]["completion_tokens"] * OUTPUT / 1e6  # the row's prompts: priced as Qwen did
    assert prompts == pytest.approx(prompt_bill(broken) + prompt_bill(continuation), rel=0.01), (rows[1], billed)
    # what it wrote, from the cache doctor's estimate of what it read (0 before: all plain input)
    assert rows[1]["cache_write_tokens"] == pytest.approx(
        d["cache_creation_input_tokens"] + later["cache_creation_input_tokens"], rel=0.01)
