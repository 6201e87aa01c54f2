"""The cache doctor observer: per conversation, each turn's cache share and, when it misses more than the turn
before, the cause — on the exchange (for the ledger, metrics, mitmweb), in the flow's record; bounded memory."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from qwen_gateway.accounts import Conversation
from qwen_gateway.cache_turn import CacheTurn
from qwen_gateway.cache import memory
from qwen_gateway.observe.cache_doctor import CacheDoctor
from qwen_gateway.pricing.prices import PriceTable, Tier
from mitmproxy.addons import save
from mitmproxy.test import taddons

from helpers.observe_testlib import answered, config, exchange

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in ("Read", "Bash")]
PRICES = PriceTable(models={"payg:intl": {"coder-model": (Tier(None, 1.0, 5.0, 0.2),)}})


@dataclass(frozen=True)
class Cred:
    account: str
    billing: str = "payg:intl"


def body(turns: int, tools=TOOLS, system="You are an agent.") -> dict:
    messages = [{"role": "system", "content": system}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"step {i}"}, {"role": "assistant", "content": f"done {i}"}]
    return {"model": "coder-model", "tools": copy.deepcopy(tools), "messages": messages[:-1]}


def turn(doctor: CacheDoctor, upstream: dict, prompt: int, cached: int, conversation="c0ffee", account="default",
         at=1000.0, status=200):
    ex = exchange(upstream_body=upstream, status=status, started_at=at, account=account,
                  usage={"prompt_tokens": prompt, "completion_tokens": 5,
                         "prompt_tokens_details": {"cached_tokens": cached}})
    ex.attempt.cred = Cred(account)
    ex.conversation = Conversation(conversation, "session") if conversation else None
    flow = answered(ex)
    doctor.finished(ex, flow)
    return ex, flow


def doctor() -> CacheDoctor:
    d = CacheDoctor()
    d.configure(config(prices=PRICES))
    return d


def test_it_runs_after_the_answer_unless_its_verdict_is_shown_at_once(tmp_path):
    assert not CacheDoctor.at_once  # plain mitmdump: nothing reads its verdict before the answer goes out
    d = doctor()
    with taddons.context(save.Save()) as tctx:
        d.running()
        assert not d.at_once and not d.shown
        tctx.options.save_stream_file = str(tmp_path / "flows.mitm")  # a flow file keeps the verdict
        d.running()
        assert d.at_once and d.shown


def test_a_healthy_conversation_counts_turns_and_reads():
    d = doctor()
    ex1, _ = turn(d, body(1), 3000, 0)
    ex2, flow = turn(d, body(2), 3200, 2900)
    assert isinstance(ex2.result.cache, CacheTurn)
    c = ex2.result.cache
    assert (c.conversation, c.turn, c.prompt, c.read, c.cause, c.lost) == ("c0ffee", 2, 3200, 2900, None, 0)
    assert c.line == "cache: turn 2 read 2,900 of 3,200 prompt tokens (91%)"
    assert ex1.result.cache.line == "cache: turn 1 read 0 of 3,000 prompt tokens (0%)"
    assert flow.metadata["qwen"]["cache"]["turn"] == 2 and flow.metadata["qwen"]["cache"]["cause"] is None


def test_reordered_tools_name_the_turn_the_cause_and_the_money():
    d = doctor()
    turn(d, body(1), 3000, 0)
    turn(d, body(2), 3200, 2900)
    ex, flow = turn(d, body(3, tools=TOOLS[::-1]), 3400, 0)
    c = ex.result.cache
    assert (c.turn, c.cause, c.lost) == (3, "tool_order", 3200)
    assert c.lost_usd == 3200 * (1.0 - 0.2) / 1e6
    assert c.line == ("cache: turn 3 read 0 of 3,400 prompt tokens (0%) · lost 3,200 vs turn 2: "
                      "the tools were reordered (tools[0] Bash)")
    meta = flow.metadata["qwen"]["cache"]
    assert meta["cause"] == "tool_order" and meta["against"] == 2
    assert meta["diff"]["where"] == "tools[0] Bash" and meta["diff"]["block"] == 2
    assert [row["where"] for row in meta["diff"]["blocks"]][:3] == ["model", "messages[0]", "tools[0] Bash"]
    assert all(len(row["was"]) == 8 for row in meta["diff"]["blocks"] if row["was"])  # short hashes, no text
    assert "You are an agent" not in repr(meta)


def test_a_changed_system_prompt_mid_way():
    d = doctor()
    turn(d, body(1), 3000, 0)
    ex, _ = turn(d, body(2, system="You are an agent. Today is Thursday."), 3200, 0)
    assert (ex.result.cache.cause, ex.result.cache.diff["where"]) == ("system", "messages[0]")


def test_conversations_are_apart_and_turns_without_one_or_failed_are_left_out():
    d = doctor()
    turn(d, body(1), 3000, 0, conversation="a")
    ex, _ = turn(d, body(1, tools=TOOLS[::-1]), 3000, 0, conversation="b")
    assert ex.result.cache.turn == 1 and ex.result.cache.cause is None
    ex, flow = turn(d, body(2), 3000, 0, conversation=None)
    assert ex.result.cache is None and "cache" not in flow.metadata["qwen"]
    ex, _ = turn(d, body(2), 3000, 0, conversation="a", status=500)
    assert ex.result.cache is None
    ex, _ = turn(d, body(2), 3200, 2900, conversation="a")
    assert ex.result.cache.turn == 2


def test_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(memory, "CONVERSATIONS", 3)
    monkeypatch.setattr(memory, "TURNS_KEPT", 2)
    d = doctor()
    for name in "abcd":
        for i in range(1, 5):
            turn(d, body(i), 3000 + i, 0, conversation=name)
    assert [key for _, key in d.memory.conversations] == ["b", "c", "d"]
    assert all(len(kept.turns) == 2 for kept in d.memory.conversations.values())
    assert d.memory.conversations[("", "d")].count == 4


def test_without_mitmweb_or_a_flow_file_the_line_and_the_record_are_not_built():
    d = doctor()
    d.shown = False  # running() in plain mitmdump without -w
    turn(d, body(1), 3000, 0)
    ex, flow = turn(d, body(2, tools=TOOLS[::-1]), 3200, 0)
    assert ex.result.cache.cause == "tool_order" and ex.result.cache.line == "" and ex.result.cache.diff is None
    assert "cache" not in flow.metadata["qwen"]


async def test_a_print_still_being_made_when_the_doctor_is_told_leaves_the_turn_unjudged():
    """The recording observers are told of a long turn once its print is made (dispatch.py), or after
    PRINT_WAIT_S, or as the gateway stops: a print still being made then is not made again on the loop (200,000
    messages took seconds there, at shutdown): that turn gets no verdict. Shown at once (mitmweb, a flow file), the
    doctor makes it itself, as the flow's comment needs it before the answer goes out."""
    import asyncio

    loop = asyncio.get_running_loop()
    d = doctor()
    ex = exchange(upstream_body=body(3), started_at=1000.0, usage={"prompt_tokens": 3000, "completion_tokens": 5})
    ex.attempt.cred = Cred("default")
    ex.conversation = Conversation("c0ffee", "session")
    ex.cache_print = loop.create_future()
    d.finished(ex, answered(ex))
    assert ex.result.cache is None and d.memory.newest("", "c0ffee") is None
    d.at_once = d.shown = True
    d.finished(ex, answered(ex))
    assert ex.result.cache is not None and ex.result.cache.turn == 1
    ex.cache_print.cancel()


def test_a_miss_is_priced_as_its_request_was_the_accounts_list_first():
    """Issue 81, item 3: what a miss lost is priced by the price source and tier that priced the request — the
    account's own list from Qwen before the table — and is unknown (None, never $0) where nothing gives the read's
    price."""
    from qwen_gateway.models.listed import ListedModel, ModelList

    def doctor_with(tiers):
        cfg = config(prices=PRICES)
        listed = ModelList("default", 0.0, {"coder-model": ListedModel("coder-model", tiers)})
        cfg.models.accounts.put("default", ("coder-model",), listed)
        d = CacheDoctor()
        d.configure(cfg)
        turn(d, body(1), 3000, 0)
        turn(d, body(2), 3200, 2900)
        return turn(d, body(3, tools=TOOLS[::-1]), 3400, 0)[0].result.cache

    listed = doctor_with((Tier(None, 7.0, 21.0, 1.4, name="Default"),))
    assert listed.lost == 3200 and listed.lost_usd == 3200 * (7.0 - 1.4) / 1e6  # the list's, not the table's 1.0 - 0.2
    assert doctor_with((Tier(None, 7.0, 21.0, name="Default"),)).lost_usd is None  # its read's price not given


def test_a_turn_is_judged_exactly_when_the_observers_say_it_did_not_fail():
    """`finished` reads `observer.failed` inline (a call fewer a turn): the two must not drift apart."""
    from qwen_gateway.observer import failed

    cases = [dict(status=s, error=e, stream_error=se) for s in (200, 299, 400, 499, 500, None)
             for e in (None, (503, "upstream_error", "busy"), (None, "x", "y")) for se in (None, "cut")]
    d = doctor()
    for i, case in enumerate(cases):
        ex = exchange(upstream_body=body(1), status=case["status"], error=case["error"],
                      stream_error=case["stream_error"], usage={"prompt_tokens": 3000, "completion_tokens": 5})
        ex.attempt.cred = Cred("default")
        ex.conversation = Conversation(f"c{i}", "session")
        d.finished(ex, answered(ex))
        assert (ex.result.cache is not None) == (not failed(ex)), case
