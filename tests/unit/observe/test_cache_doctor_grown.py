"""The doctor's common case in fewer calls: a turn that begins with all of its conversation's newest kept turn is
judged against it without `closest`'s loop or `first_change` (compare.grew). Every verdict stays what the full
search gives: each session below goes through a doctor as it is and through one whose `grew` never holds (the
search and the comparison made whole every turn), and their rows are the same, turn by turn."""

from __future__ import annotations

import copy

import pytest

from qwen_gateway import jsonio
from qwen_gateway.accounts import Conversation
from qwen_gateway.cache import compare
from qwen_gateway.observe import cache_doctor
from qwen_gateway.observe.cache_doctor import CacheDoctor
from qwen_gateway.upstream.dashscope.request import chat_to_qwen
from helpers.observe_testlib import answered, config, exchange

SYSTEM = {"role": "system", "content": "You are a careful coding agent. " * 50}
TOOLS = [{"type": "function", "function": {"name": n, "description": f"does {n} " * 20,
                                           "parameters": {"type": "object", "properties": {}}}}
         for n in ("Read", "Edit", "Bash")]


def rounds(n: int, tag: str = "") -> list[dict]:
    out = [copy.deepcopy(SYSTEM)]
    for i in range(n):
        out += [{"role": "user", "content": f"{tag}please fix the bug in file {i} " * 10},
                {"role": "assistant", "content": f"Fixed the bug in file {i}."}]
    return out


def marked(messages: list[dict]) -> list[dict]:
    """The last message's text as one part carrying a marker, as the gateway sends it."""
    out = copy.deepcopy(messages)
    out[-1] = {**out[-1], "content": [{"type": "text", "text": out[-1]["content"],
                                       "cache_control": {"type": "ephemeral"}}]}
    return out


def judged(doctor: CacheDoctor, key: str, messages: list[dict], prompt: int, cached: int, at: float,
           tools: list | None = TOOLS, account: str = "a") -> tuple:
    body = chat_to_qwen({"model": "gpt-4o", "messages": copy.deepcopy(messages),
                         **({"tools": copy.deepcopy(tools)} if tools is not None else {})},
                        model="qwen3-coder-plus", oauth=True)
    ex = exchange(upstream_body=body, started_at=at, account=account,
                  usage={"prompt_tokens": prompt, "completion_tokens": 5,
                         "prompt_tokens_details": {"cached_tokens": cached}})
    ex.attempt.sent = jsonio.dumps(body)
    ex.conversation = Conversation(key, "session")
    doctor.finished(ex, answered(ex))
    c = ex.result.cache
    return c.conversation, c.turn, c.prompt, c.read, c.written, c.cause, c.lost


TOOLS_CHANGED = copy.deepcopy(TOOLS)
TOOLS_CHANGED[1]["function"]["description"] = "edits a file"
EDITED = rounds(4)
EDITED[1]["content"] = "please fix the bug in file 0, and the other one"
SESSIONS = {
    "grows": [("s", rounds(k), None) for k in range(1, 6)],
    "an earlier message edited": [("s", rounds(1), None), ("s", rounds(2), None), ("s", EDITED[:7], None),
                                  ("s", EDITED, None), ("s", rounds(5), None)],
    "the tools changed": [("s", rounds(1), None), ("s", rounds(2), None), ("s", rounds(3), TOOLS_CHANGED),
                          ("s", rounds(4), TOOLS_CHANGED), ("s", rounds(5), None)],
    "markers dropped": [("s", marked(rounds(1)), None), ("s", marked(rounds(2)), None), ("s", rounds(3), None),
                        ("s", marked(rounds(4)), None), ("s", rounds(4), None)],
    "a new conversation": [("s", rounds(1), None), ("s", rounds(2), None), ("t", rounds(1, "other "), None),
                           ("t", rounds(2, "other "), None), ("s", rounds(3), None)],
    "two conversations interleaved": [(k, rounds(n, k), None) for n in range(1, 5) for k in ("a ", "b ")],
    "back to an older turn": [("s", rounds(1), None), ("s", rounds(2), None), ("s", rounds(3), None),
                              ("s", rounds(2), None), ("s", rounds(3), None), ("s", rounds(1), None)],
    "a side request in the session": [("s", rounds(1), None), ("s", rounds(2), None),
                                      ("s", [SYSTEM, {"role": "user", "content": "a title please " * 40}], None),
                                      ("s", rounds(3), None)],
    "no tools": [("s", rounds(k), "none") for k in range(1, 4)],
}


def kept(doctor: CacheDoctor) -> tuple:
    """What the doctor's memory keeps: its bytes, and each conversation's turns, which of them share one print
    (numbered in order of first use) and the hashes each turn has of it."""
    memory, ids = doctor.memory, {}
    return memory.bytes, {where: (k.bytes, [(t.turn, t.blocks, ids.setdefault(id(t.print), len(ids)), t.raw)
                                           for t in k.turns]) for where, k in memory.conversations.items()}


def replay(steps: list, memory: list | None = None) -> list[tuple]:
    doctor = CacheDoctor()
    doctor.configure(config())
    doctor.shown = False
    rows = []
    for i, (key, messages, tools) in enumerate(steps):
        prompt = 2000 + 300 * len(messages)
        cached = 0 if i % 3 == 2 else prompt * 3 // 4  # every third turn reads nothing: judged, its cause named
        rows.append(judged(doctor, key, messages, prompt, cached, at=1000.0 + 60 * i + 300 * (i == 7),
                           tools=None if tools == "none" else tools or TOOLS, account="b" if i == 5 else "a"))
        if memory is not None:
            memory.append(kept(doctor))
    return rows


@pytest.mark.parametrize("name", list(SESSIONS))
def test_each_verdict_is_the_full_searchs(name, monkeypatch):
    steps = SESSIONS[name]
    taken = []
    real = compare.grew

    def counted(was, now):
        taken.append(answer := real(was, now))
        return answer

    monkeypatch.setattr(cache_doctor, "grew", counted)
    fast_memory: list = []
    fast = replay(steps, fast_memory)
    monkeypatch.setattr(cache_doctor, "grew", lambda was, now: False)
    monkeypatch.setattr(compare, "grew", lambda was, now: False)
    full_memory: list = []
    assert fast == replay(steps, full_memory)
    # and the memory the same after each turn: Memory.add told the turn grew (no bytes compared) shares as it would
    assert fast_memory == full_memory
    if name in ("grows", "two conversations interleaved", "no tools"):
        assert taken and all(taken[1:] if name != "two conversations interleaved" else taken[2:])
    if name in ("an earlier message edited", "the tools changed", "back to an older turn"):
        assert False in taken  # the full search made
