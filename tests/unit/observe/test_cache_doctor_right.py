"""The cache doctor on what the gateway really sends (issue 61, item 2): each turn's upstream body made by the
DashScope translation (its own cache markers included), a turn's usage as Qwen's explicit cache reports it.
A healthy session names nothing; each real miss is named by its cause, also where the client sends no session,
where the body passes through in Anthropic's form, and where a route or a side request changes the model."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from qwen_gateway.accounts import Conversation
from qwen_gateway.api.conversation import of as conversation_of
from qwen_gateway.providers import Leg
from qwen_gateway.observe.cache_doctor import CacheDoctor
from qwen_gateway.upstream.dashscope.request import chat_to_qwen
from helpers.observe_testlib import answered, config, exchange

SYSTEM = "You are a careful coding agent. " * 200  # ~1,500 tokens: the gateway marks it
TOOLS = [{"type": "function", "function": {"name": n, "description": f"{n} " * 100,
                                           "parameters": {"type": "object"}}} for n in ("Read", "Bash", "Edit")]


@dataclass(frozen=True)
class Cred:
    account: str
    billing: str = "payg:intl"


def history(turns: int, system: str = SYSTEM) -> list[dict]:
    messages = [{"role": "system", "content": system}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"step {i}: " + "read the file and fix it " * 40})
        if i < turns - 1:
            messages.append({"role": "assistant", "content": f"done {i}: " + "fixed it " * 30})
    return messages


def upstream(messages: list[dict], model: str = "qwen3-coder-plus", tools=TOOLS) -> dict:
    """The body Qwen gets for a client's chat request, as the gateway builds it (markers and all)."""
    return chat_to_qwen({"model": "gpt-4o", "messages": copy.deepcopy(messages), "tools": copy.deepcopy(tools),
                         "stream": True}, model=model, oauth=False)


class Session:
    """A conversation's turns through one doctor, with Qwen's explicit-cache usage for each."""

    def __init__(self, doctor: CacheDoctor | None = None, conversation: str | None = "sess") -> None:
        self.doctor = doctor or CacheDoctor()
        self.doctor.configure(config())
        self.conversation = conversation
        self.at = 1000.0

    def turn(self, body: dict, prompt: int, read: int, written: int = 0, *, after: float = 10.0,
             account: str = "default", client: dict | None = None, route: str = "", key: str = "",
             leg: Leg | None = None):
        self.at += after
        details = {"cached_tokens": read, "cache_creation_input_tokens": written, "cache_type": "ephemeral"}
        ex = exchange(upstream_body=body, started_at=self.at, account=account, upstream_model=body["model"],
                      body=client, usage={"prompt_tokens": prompt, "completion_tokens": 5,
                                          "prompt_tokens_details": details})
        ex.attempt.cred = Cred(account)
        ex.attempt.route = route
        ex.attempt.leg = leg or ex.attempt.leg
        ex.key.name = key
        if self.conversation is not None:
            ex.conversation = Conversation(self.conversation, "session")
        else:  # no session id: what the endpoint reads from the client's own body
            ex.conversation = conversation_of(client or {}, {"messages": body["messages"]})
        flow = answered(ex)
        self.doctor.finished(ex, flow)
        return ex.result.cache


def test_a_healthy_session_names_nothing_though_the_gateways_markers_move_every_turn():
    s = Session()
    read = 0
    for n in range(1, 14):
        prompt = 2000 + 400 * n
        cache = s.turn(upstream(history(n)), prompt, read, prompt - read)
        assert cache.cause is None, (n, cache.line)
        read = prompt  # the next turn reads this turn's prompt, marked by the gateway
    # Qwen dropped the prefix (evicted) though nothing changed: Qwen's own miss, not an edit of the client's
    cache = s.turn(upstream(history(14)), 7800, 0, 7800)
    assert (cache.cause, cache.lost) == ("unexplained", 7200), cache.line


def test_turn_two_after_a_cold_first_turn_is_diagnosed():
    s = Session()
    assert s.turn(upstream(history(1)), 7914, 0, 7914).cause is None
    cache = s.turn(upstream(history(2)), 8400, 0, 8400)  # wrote 7,914 a turn ago, read nothing now
    assert (cache.cause, cache.lost) == ("unexplained", 7914)


def test_a_miss_past_the_lifetime_is_expiry_and_within_it_qwens_own():
    s = Session()
    s.turn(upstream(history(1)), 4000, 0, 4000)
    assert s.turn(upstream(history(2)), 4400, 0, 4400, after=301).cause == "expiry"
    assert s.turn(upstream(history(3)), 4800, 0, 4800, after=20).cause == "unexplained"


def test_a_changed_system_prompt_without_a_session_id_is_still_the_same_conversation():
    s = Session(conversation=None)
    s.turn(upstream(history(1)), 4000, 0, 4000, client={"model": "gpt-4o"})
    changed = history(2, system=SYSTEM + " Today is Thursday.")
    cache = s.turn(upstream(changed), 4400, 0, 4400, client={"model": "gpt-4o"})
    assert cache is not None and cache.turn == 2 and cache.cause == "system", cache


def test_a_pass_through_body_is_fingerprinted_in_anthropics_form():
    def messages_body(system: str, turns: int) -> dict:
        msgs = [m for m in history(turns) if m["role"] != "system"]
        return {"model": "qwen3-coder-plus", "max_tokens": 1000, "system": [{"type": "text", "text": system}],
                "messages": msgs, "tools": [{"name": "Read", "description": "Read " * 100,
                                              "input_schema": {"type": "object"}}]}

    s = Session()
    own = Leg("v1/messages", passthrough=True)  # qwen_messages_passthrough: the body as the plan's Anthropic base takes it
    s.turn(messages_body(SYSTEM, 1), 4000, 0, 4000, leg=own)
    cache = s.turn(messages_body(SYSTEM + " Today is Thursday.", 2), 4400, 0, 4400, leg=own)
    assert cache.cause == "system", cache


def test_a_side_request_on_another_model_is_no_model_change_of_the_session():
    s = Session()
    s.turn(upstream(history(1)), 4000, 0, 4000)
    s.turn(upstream(history(2)), 4400, 3900, 500)
    title = upstream([{"role": "system", "content": "Write a title."},
                      {"role": "user", "content": "<session>fix the file</session>"}], model="qwen3.6-flash", tools=[])
    assert s.turn(title, 300, 0, 0, route="fast").cause is None
    assert s.turn(upstream(history(3)), 4800, 4400, 400).cause is None  # the session goes on as it was


def test_a_route_that_moved_the_model_is_named_apart_from_the_clients_own_change():
    s = Session()
    s.turn(upstream(history(1)), 4000, 0, 4000)
    assert s.turn(upstream(history(2), model="qwen3.6-plus"), 4400, 0, 4400, route="images").cause == "image"
    s = Session()
    s.turn(upstream(history(1)), 4000, 0, 4000)
    assert s.turn(upstream(history(2), model="qwen3.6-flash"), 4400, 0, 4400, route="fast").cause == "route"
    s = Session()
    s.turn(upstream(history(1)), 4000, 0, 4000)
    assert s.turn(upstream(history(2), model="qwen3.6-flash"), 4400, 0, 4400).cause == "model"


def long_turns(conversation: str, turns: int = 4, messages: int = 1500):
    """A 1,500-message conversation's last turns (Claude Code after a long session), as the doctor sees them."""
    base = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{conversation} message {i} " * 8}
            for i in range(messages)]
    for t in range(turns):
        yield {"model": "qwen3-coder-plus", "messages": base[:messages - 2 * (turns - 1 - t)]}


def retained(fn) -> int:
    """The bytes still allocated after `fn` (what the doctor keeps), by tracemalloc."""
    import gc
    import tracemalloc
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_long_conversation_costs_its_prompt_once_not_once_a_turn():
    doctor = CacheDoctor()
    doctor.configure(config())
    bodies = {name: list(long_turns(name)) for name in ("a", "b", "c", "d")}

    def feed():
        for name, turns in bodies.items():
            s = Session(doctor, conversation=name)
            for body in turns:
                s.turn(body, 20000, 19000, 1000)

    warm = Session(CacheDoctor(), conversation="warm")  # what a process keeps once (a model's block, the system
    for body in long_turns("warm", turns=2, messages=20):  # text and tools seen last), not per conversation
        warm.turn(body, 20000, 19000, 1000)
    per_conversation = retained(feed) / len(bodies)
    assert per_conversation < 32 * 1024, per_conversation  # was ~128 KiB: four turns of 8+8 bytes a block


def test_the_doctors_memory_is_bounded_in_bytes(monkeypatch):
    from qwen_gateway.cache import memory
    monkeypatch.setattr(memory, "BYTES", 256 * 1024)
    doctor = CacheDoctor()
    doctor.configure(config())
    bodies = {f"c{i}": list(long_turns(f"c{i}", turns=2)) for i in range(40)}

    def feed():
        for name, turns in bodies.items():
            s = Session(doctor, conversation=name)
            for body in turns:
                s.turn(body, 20000, 19000, 1000)

    assert retained(feed) < 2 * 256 * 1024  # the budget, and the bookkeeping around it
    assert 0 < doctor.memory.bytes <= 256 * 1024
