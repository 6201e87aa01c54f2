"""Anthropic's cache diagnostics on Qwen (api/messages/diagnostics.py): `diagnostics: {previous_message_id}` read,
and the answer's `diagnostics.cache_miss_reason` in Anthropic's shape for each change, on the whole message and
on the stream's `message_start`."""

from __future__ import annotations

import copy
import json

import pytest

from qwen_gateway.accounts import Conversation
from qwen_gateway.api.messages.diagnostics import answer, asked
from qwen_gateway.api.messages.stream import MessagesStreamTranslator
from qwen_gateway.cache.diagnosis import Diagnoser
from qwen_gateway.errors import GatewayError
from qwen_gateway.observe.cache_doctor import CacheDoctor
from helpers.observe_testlib import answered, config, exchange

SYSTEM = "You are an agent. " * 300
TOOLS = [{"type": "function", "function": {"name": n, "description": f"{n} " * 40, "parameters": {}}}
         for n in ("Read", "Bash")]


def chat(turns: int, system: str = SYSTEM, model: str = "qwen3-coder-plus", tools=TOOLS) -> dict:
    messages = [{"role": "system", "content": system}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"step {i} " * 50}, {"role": "assistant", "content": f"ok {i}"}]
    return {"model": model, "messages": messages[:-1], "tools": tools}


class Gateway:
    """One gateway's doctor and diagnoser: each request answered, then its doctor's turn (after the answer)."""

    def __init__(self) -> None:
        self.diagnoser = Diagnoser()
        self.doctor = CacheDoctor(self.diagnoser)
        self.doctor.configure(config())

    def ask(self, upstream: dict, message_id: str, diagnostics: dict | None, key: str = "",
            usage: dict | None = None) -> dict | None:
        usage = usage or {"prompt_tokens": 4000, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}}
        ex = exchange(upstream_body=copy.deepcopy(upstream), usage=usage)
        ex.conversation, ex.key.name = Conversation("conv", "session"), key
        ex.cache_ask = asked({"diagnostics": diagnostics} if diagnostics is not None else {})
        said = answer(self.diagnoser, ex, message_id, usage)
        self.doctor.finished(ex, answered(ex))
        return said


def test_the_request_field_is_read_and_checked():
    assert asked({}) is None  # nothing compared, nothing kept
    first = asked({"diagnostics": {"previous_message_id": None}})
    assert first is not None and first.compare and first.compare_to is None
    assert asked({"diagnostics": {"previous_message_id": "msg_1"}}).compare_to == "msg_1"
    with pytest.raises(GatewayError) as e:
        asked({"diagnostics": {"previous_message_id": 7}})
    assert (e.value.status, e.value.param) == (400, "diagnostics.previous_message_id")


@pytest.mark.parametrize("change,reason", [
    ("system", "system_changed"), ("tools", "tools_changed"), ("model", "model_changed"),
    ("messages", "messages_changed")])
def test_each_change_is_named_in_anthropics_words(change, reason):
    """The tokens missed are the doctor's own figure: what the first turn stored that this one did not read."""
    gw = Gateway()
    stored = {"prompt_tokens": 4000, "completion_tokens": 3, "prompt_tokens_details": {
        "cached_tokens": 0, "cache_creation_input_tokens": 4000}}
    assert gw.ask(chat(2), "msg_1", {"previous_message_id": None}, usage=stored) is None  # a first turn: null
    later = {"system": chat(3, system=SYSTEM + "Today is Friday."), "tools": chat(3, tools=TOOLS[::-1]),
             "model": chat(3, model="qwen3.6-plus"), "messages": chat(3)}[change]
    if change == "messages":
        later["messages"][1]["content"] = "an edited first request"
    said = gw.ask(later, "msg_2", {"previous_message_id": "msg_1"}, usage={
        "prompt_tokens": 4100, "completion_tokens": 3, "prompt_tokens_details": {
            "cached_tokens": 0, "cache_creation_input_tokens": 4100}})
    assert said is not None and said["cache_miss_reason"]["type"] == reason
    assert said["cache_miss_reason"]["cache_missed_input_tokens"] == 4000


def test_a_grown_conversation_says_nothing_and_an_unknown_or_other_keys_id_is_not_found():
    gw = Gateway()
    gw.ask(chat(1), "msg_1", {"previous_message_id": None}, key="alice")
    assert gw.ask(chat(2), "msg_2", {"previous_message_id": "msg_1"}, key="alice") is None
    assert gw.ask(chat(3), "msg_3", {"previous_message_id": "msg_nope"}, key="alice") == {
        "cache_miss_reason": {"type": "previous_message_not_found"}}
    assert gw.ask(chat(3), "msg_4", {"previous_message_id": "msg_2"}, key="bob") == {
        "cache_miss_reason": {"type": "previous_message_not_found"}}


def test_a_request_without_diagnostics_is_not_kept():
    gw = Gateway()
    gw.ask(chat(1), "msg_1", None)
    assert gw.ask(chat(2), "msg_2", {"previous_message_id": "msg_1"})["cache_miss_reason"]["type"] == \
        "previous_message_not_found"


def test_where_qwen_read_nothing_of_the_same_prefix_it_says_what_qwen_did():
    gw = Gateway()
    gw.ask(chat(1), "msg_1", {"previous_message_id": None},
           usage={"prompt_tokens": 4000, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0,
                  "cache_creation_input_tokens": 4000, "cache_type": "ephemeral"}})
    said = gw.ask(chat(2), "msg_2", {"previous_message_id": "msg_1"},
                  usage={"prompt_tokens": 4400, "completion_tokens": 3, "prompt_tokens_details": {
                      "cached_tokens": 0, "cache_creation_input_tokens": 4400, "cache_type": "ephemeral"}})
    # never null (Anthropic's SDK reads that as "still pending"): its own value for a diagnosis naming no change
    assert said is not None and said["cache_miss_reason"] == {"type": "unavailable"}
    assert said["qwen_cache_miss"]["type"] == "evicted" and said["qwen_cache_miss"]["cache_missed_input_tokens"] > 0


def test_a_streams_message_delta_says_the_qwen_side_miss_its_start_could_not_know():
    from qwen_gateway.api.messages.diagnostics import final
    gw = Gateway()
    gw.ask(chat(1), "msg_1", {"previous_message_id": None},
           usage={"prompt_tokens": 4000, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0,
                  "cache_creation_input_tokens": 4000, "cache_type": "ephemeral"}})
    ex = exchange(upstream_body=copy.deepcopy(chat(2)), usage=None)
    ex.conversation = Conversation("conv", "session")
    ex.cache_ask = asked({"diagnostics": {"previous_message_id": "msg_1"}})
    translator = MessagesStreamTranslator(model="claude-x", sign=lambda t: "sig",
                                          diagnostics=lambda i: answer(gw.diagnoser, ex, i),
                                          final=lambda i, u: final(gw.diagnoser, ex, i, u))
    events = translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
    events += translator.feed({"choices": [], "usage": {"prompt_tokens": 4400, "completion_tokens": 3,
                                                        "prompt_tokens_details": {"cached_tokens": 0,
                                                                                  "cache_creation_input_tokens": 4400,
                                                                                  "cache_type": "ephemeral"}}})
    events += translator.finish()
    parsed = [json.loads(e.split(b"data: ", 1)[1]) for e in events]
    start = next(p for p in parsed if p["type"] == "message_start")
    delta = next(p for p in parsed if p["type"] == "message_delta")
    assert start["message"]["diagnostics"] is None  # the structure is the same: nothing to say yet
    assert delta["diagnostics"]["cache_miss_reason"] == {"type": "unavailable"}
    assert delta["diagnostics"]["qwen_cache_miss"]["type"] == "evicted"


def test_the_streams_message_start_carries_the_diagnostics_of_its_own_id():
    ids = []
    translator = MessagesStreamTranslator(model="claude-x", sign=lambda t: "sig", diagnostics=lambda i: ids.append(
        i) or {"cache_miss_reason": {"type": "tools_changed", "cache_missed_input_tokens": 9}})
    out = translator.feed({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
    start = json.loads(out[0].split(b"data: ", 1)[1])
    assert start["message"]["diagnostics"]["cache_miss_reason"]["type"] == "tools_changed"
    assert ids == [start["message"]["id"]]
    plain = MessagesStreamTranslator(model="claude-x", sign=lambda t: "sig")
    assert "diagnostics" not in json.loads(plain.feed({"choices": []})[0].split(b"data: ", 1)[1])["message"]


def test_a_hundred_turns_of_a_session_that_changes_nothing_report_no_miss():
    """Claude Code's way: each turn resends the conversation with its marker on the newest message (the
    gateway's markers move with it), translated and sent as the gateway sends it; neither the client's
    diagnostics nor the doctor's verdict names a miss on any turn."""
    from qwen_gateway import jsonio
    from qwen_gateway.api.messages.request import to_chat
    from qwen_gateway.upstream.dashscope.request import chat_to_qwen

    gw = Gateway()
    mark = {"type": "ephemeral"}
    system = [{"type": "text", "text": SYSTEM, "cache_control": mark}]
    tools = [{"name": "Read", "description": "Read a file. " * 30, "input_schema": {"type": "object"}}]
    history: list[dict] = []
    previous, said, causes = None, [], []
    for turn in range(100):
        history.append({"role": "user", "content": [{"type": "text", "text": f"turn {turn}: fix it " * 20}]})
        sent = copy.deepcopy(history)
        sent[-1]["content"][-1]["cache_control"] = mark  # the client's marker: on its newest message only
        body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "system": system, "tools": tools, "messages": sent,
                "diagnostics": {"previous_message_id": previous}}
        upstream = chat_to_qwen(to_chat(body, [], lambda t, s: t), model="qwen3-coder-plus", oauth=False)
        prompt = 3000 + 120 * turn
        usage = {"prompt_tokens": prompt, "completion_tokens": 5,
                 "prompt_tokens_details": {"cached_tokens": prompt - 120 if turn else 0, "cache_type": "ephemeral"}}
        ex = exchange(upstream_body=upstream, usage=usage, started_at=1_800_000_000.0 + 30 * turn)
        ex.attempt.sent = jsonio.dumps(upstream)
        ex.conversation, ex.key.name = Conversation("conv", "session"), "alice"
        ex.cache_ask = asked(body)
        message_id = f"msg_{turn}"
        said.append(answer(gw.diagnoser, ex, message_id, usage))
        gw.doctor.finished(ex, answered(ex))
        causes.append(ex.result.cache.cause if ex.result.cache is not None else "not seen")
        history.append({"role": "assistant", "content": [{"type": "text", "text": f"fixed {turn}"}]})
        previous = message_id
    assert said == [None] * 100
    assert causes == [None] * 100
