"""A turn's print made from the bytes the engine sent, reusing the turn before (cache/prints_sent.py): the same
print as reading the whole body (prints_chat.of_chat), whatever the turn repeats or changes, and only the new messages
read when it repeats the turn before."""

from __future__ import annotations

import copy
import sys

import pytest

from qwen_gateway import jsonio
from qwen_gateway.cache import prints, prints_chat, prints_next, prints_sent
from qwen_gateway.cache.prints_chat import of_chat
from qwen_gateway.cache.prints_sent import of_sent
from qwen_gateway.upstream.dashscope.request import chat_to_qwen

SYSTEM = "You are a careful coding agent. " * 100
TOOLS = [{"type": "function", "function": {"name": n, "description": f"{n} " * 50, "parameters": {"type": "object"}}}
         for n in ("Read", "Bash")]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def conversation(turns: int) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"step {i}: " + "fix the file " * 30})
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "Read", "arguments": f'{{"n": {i}}}'}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "text " * 80})
    messages.append({"role": "user", "content": [{"type": "text", "text": "now look"}, IMAGE]})
    return messages


def sent(messages: list[dict], tools=TOOLS, **extra) -> tuple[dict, bytes]:
    """The body Qwen gets (the gateway's markers placed) and its bytes as the engine encodes them."""
    body = chat_to_qwen({"model": "gpt-4o", "messages": copy.deepcopy(messages), "tools": copy.deepcopy(tools),
                         "stream": True, **extra}, model="qwen3-coder-plus", oauth=False)
    return body, jsonio.dumps(body)


def same(a, b) -> bool:
    """The same print: its blocks, and where its markers are and how many parts its messages of several hold (what
    the doctor counts Qwen's 20-block lookback in)."""
    return (a.kinds, a.raw, list(a.sizes), a.first_message, a.texts, a.lifetime, a.marks, a.spans) == \
        (b.kinds, b.raw, list(b.sizes), b.first_message, b.texts, b.lifetime, b.marks, b.spans)


def test_a_growing_conversation_is_the_same_print_read_whole_or_reused():
    before = None
    for n in range(1, 9):
        body, data = sent(conversation(n))
        made = of_sent(body, data, before)
        assert same(made, of_chat(body)), n
        before = made


@pytest.mark.parametrize("change", ["system", "tools", "earlier", "model", "mid_system", "marker_1h"])
def test_a_turn_that_changes_what_it_repeats_is_read_whole(change):
    body, data = sent(conversation(3))
    before = of_sent(body, data, None)
    messages, tools, extra = conversation(4), TOOLS, {}
    if change == "system":
        messages[0]["content"] += " Today is Friday."
    elif change == "tools":
        tools = TOOLS[::-1]
    elif change == "earlier":
        messages[2]["tool_calls"][0]["function"]["arguments"] = '{"n": 99}'
    elif change == "model":
        extra = {}
    elif change == "mid_system":
        messages.insert(4, {"role": "system", "content": "Plan mode."})
    elif change == "marker_1h":
        messages[1]["content"] = [{"type": "text", "text": messages[1]["content"],
                                   "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    body, data = sent(messages, tools, **extra)
    if change == "model":
        body["model"], data = "qwen3.6-plus", jsonio.dumps({**body, "model": "qwen3.6-plus"})
    assert same(of_sent(body, data, before), of_chat(body))


def test_a_repeated_conversation_reads_only_its_new_messages(monkeypatch):
    body, data = sent(conversation(40))
    before = of_sent(body, data, None)
    grown = conversation(40) + [{"role": "assistant", "content": "done"}, {"role": "user", "content": "next"}]
    body, data = sent(grown)
    read = []
    real = prints.Blocks.add_messages  # the messages read: encoded, then made blocks
    monkeypatch.setattr(prints.Blocks, "add_messages", lambda b, ms, *a: read.append(len(ms)) or real(b, ms, *a))
    made = of_sent(body, data, before)
    monkeypatch.setattr(prints.Blocks, "add_messages", real)
    assert same(made, of_chat(body))
    assert read == [3]  # the turn before's last message (an image in it: read again) and the two new ones


def test_a_turn_whose_system_text_lost_its_marker_takes_the_tools_of_the_turn_before(monkeypatch):
    """Claude Code's second request (scripts/data/claude_code_shapes.json): a marker the first one had on the system
    text is gone, so the messages it repeats are read again, but its tools, the same JSON, are not encoded again."""
    system = [{"type": "text", "text": SYSTEM}]
    first = {"model": "qwen3-coder-plus", "tools": TOOLS, "messages": [
        {"role": "system", "content": [{**system[0], "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "hello"}]}
    before = of_sent(first, jsonio.dumps(first), None)
    second = {**first, "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hello"},
                                    {"role": "assistant", "content": "hi"}, {"role": "user", "content": "more"}]}
    encoded = []
    real = prints.dumps
    for module in (prints, prints_chat):  # the tools' blocks made (prints.Blocks), the system text's (prints_chat)
        monkeypatch.setattr(module, "dumps", lambda obj: encoded.append(obj) or real(obj))
    made = of_sent(second, jsonio.dumps(second), before)
    assert TOOLS not in encoded and encoded  # the system text read again, the tools not
    assert same(made, of_chat(second)) and made.reuse.tools_sum == before.reuse.tools_sum
    third = {**second, "messages": second["messages"] + [{"role": "assistant", "content": "ok"},
                                                          {"role": "user", "content": "next"}]}
    assert same(of_sent(third, jsonio.dumps(third), made), of_chat(third))


def test_a_new_conversation_with_tools_seen_before_finds_them_in_the_bytes_sent(monkeypatch):
    """An agent's every session sends the same tools (Claude Code's 35 kB of them): a conversation's first turn
    takes their blocks from a tool list any conversation sent before, found in its bytes as sent (length and
    checksum), instead of encoding them again; a list never seen, or the bytes not matching, is encoded."""
    first, data = sent(conversation(1))
    of_sent(first, data, None)  # the tools seen once
    other = [{"role": "system", "content": "another agent"}, {"role": "user", "content": "hi"}]
    encoded = []
    real = prints.dumps
    for module in (prints, prints_chat):
        monkeypatch.setattr(module, "dumps", lambda obj: encoded.append(obj) or real(obj))
    body, data = sent(other)
    made = of_sent(body, data, None)
    assert body["tools"] not in encoded and same(made, of_chat(body))
    assert (made.reuse.tools_len, made.reuse.tools_sum) == (len(jsonio.dumps(body["tools"])),
                                                           of_chat(body).reuse.tools_sum)
    changed = copy.deepcopy(TOOLS)
    changed[1]["function"]["description"] = "changed"
    body, data = sent(other, tools=changed)
    encoded.clear()
    assert same(of_sent(body, data, None), of_chat(body)) and body["tools"] in encoded  # never seen: encoded
    body, data = sent(other)
    assert same(of_sent(body, data.replace(b"Read ", b"Reed "), None), of_chat(body))  # bytes that differ: read


def test_a_turn_read_whole_takes_its_system_messages_json_from_the_bytes_sent(monkeypatch):
    """A turn read whole (a conversation's first, or one whose system text changed) hashes the JSON of its messages
    but the last for the next turn's check: the leading system messages' JSON is found in the bytes sent, not
    encoded a second time (their parts are encoded once, for their blocks), and the check is the same."""
    read: list = []
    real = prints.encoded
    for n in (0, 1, 3):
        body, data = sent(conversation(n))
        lead = prints_chat.leading(body["messages"])
        read.clear()
        monkeypatch.setattr(prints_chat, "encoded", lambda ms: read.append(ms) or real(ms))
        made = of_sent(body, data, None)
        monkeypatch.undo()
        whole = of_chat(body)
        assert same(made, whole) and body["messages"][:lead] not in read, n
        assert (made.reuse.head_len, made.reuse.head_sum) == (whole.reuse.head_len, whole.reuse.head_sum), n
    body, data = sent([{"role": "user", "content": "hi"}])  # no system message, one message: an empty head
    assert same(of_sent(body, data, None), of_chat(body)) and of_sent(body, data, None).reuse.head_len == 0


def chain(bodies: list[tuple[dict, bytes]]) -> list:
    """Each turn's print from the bytes sent, the turn before reused: each the same as reading it whole, its
    reuse too (what the next turn checks)."""
    made, before = [], None
    for body, data in bodies:
        now = of_sent(body, data, before, settings=True)
        whole = of_chat(body, settings=True)
        assert same(now, whole) and now.settings == whole.settings, len(made)
        fields = ("messages", "lead", "head_len", "head_sum", "head_hour", "tools_len", "tools_sum", "tools_hour",
                  "system_blocks", "tool_blocks", "last_len", "next_sum")
        assert [getattr(now.reuse, f) for f in fields] == [getattr(whole.reuse, f) for f in fields], len(made)
        made.append(now)
        before = now
    return made


def foreseen(monkeypatch) -> list[bool]:
    """Whether each grown turn found the turn before's last message as it foresaw."""
    seen: list[bool] = []
    real = prints_next.grown
    monkeypatch.setattr(prints_sent, "grown", lambda *a: seen.append(a[-1]) or real(*a))
    return seen


def test_the_turn_before_s_last_message_is_taken_where_it_stands_as_foreseen(monkeypatch):
    """The gateway's marker sits on the last message as one text part; the next turn sends that message without
    it, as a string: its JSON as the turn before foresaw it, so its block is taken, not encoded again."""
    seen = foreseen(monkeypatch)
    messages, bodies = conversation(2)[:-1], []
    for n in range(5):
        messages.append({"role": "user", "content": f"now {n}"})
        bodies.append(sent(messages))
        messages.append({"role": "assistant", "content": f"done {n}"})
    chain(bodies)
    assert seen == [True] * 4


@pytest.mark.parametrize("change", ["edited", "kept_in_parts", "image", "two_parts", "two_parts_edited", "hour",
                                    "no_new_message", "system_last", "no_system"])
def test_a_last_message_not_as_foreseen_is_read_again(change, monkeypatch):
    """Where the turn before's last message comes back otherwise than foreseen (edited, still in parts, with an
    image, its marker kept), or nothing follows it, it is read again: the print is the same as read whole."""
    seen = foreseen(monkeypatch)
    first = conversation(2)[:-1] + [{"role": "user", "content": "look at this"}]
    then = first + [{"role": "assistant", "content": "looked"}, {"role": "user", "content": "and now?"}]
    if change == "edited":
        then[len(first) - 1] = {"role": "user", "content": "look at that"}
    elif change in ("kept_in_parts", "hour"):
        marker = {"type": "ephemeral", "ttl": "1h"} if change == "hour" else None
        part = {"type": "text", "text": "look at this", **({"cache_control": marker} if marker else {})}
        first[-1] = then[len(first) - 1] = {"role": "user", "content": [part]}
    elif change == "image":
        first[-1] = then[len(first) - 1] = {"role": "user", "content": [{"type": "text", "text": "look"}, IMAGE]}
    elif change in ("two_parts", "two_parts_edited"):  # its parts counted (Print.spans) no more once a string
        first[-1] = {"role": "user", "content": [{"type": "text", "text": "look "}, {"type": "text", "text": "at"}]}
        then[len(first) - 1] = {"role": "user", "content": "look at" if change == "two_parts" else "look"}
    elif change == "no_new_message":
        then = copy.deepcopy(first)
    elif change == "system_last":
        first[-1] = then[len(first) - 1] = {"role": "system", "content": "plan mode"}
    elif change == "no_system":
        first, then = first[1:], then[1:]
    chain([sent(first), sent(then), sent(then + [{"role": "assistant", "content": "ok"},
                                                 {"role": "user", "content": "go"}])])
    if change in ("edited", "image", "no_new_message", "two_parts_edited"):
        assert seen[0] is False
    if change in ("two_parts", "system_last", "no_system"):
        assert seen[0] is True  # joined to one string, a system message, no system text: as foreseen
    assert seen[-1] is True


def test_a_conversation_whose_tools_change_or_that_starts_anew_reads_whole():
    """A turn whose tools change, or a new conversation after a long one, is read whole (the same print)."""
    one = conversation(3)
    changed = copy.deepcopy(TOOLS)
    changed[0]["function"]["description"] = "read a file"
    made = chain([sent(one), sent(conversation(4), tools=changed), sent(conversation(5), tools=changed),
                  sent([{"role": "system", "content": "another"}, {"role": "user", "content": "hi"}], tools=changed)])
    assert made[-1].blocks < made[-2].blocks


@pytest.mark.parametrize("text", ["a file read, " * 400, 'quotes " and \\ and\nnewlines, ' * 200, "très 代码 🙂 " * 300])
def test_a_long_last_message_s_size_as_sent_is_made_without_encoding_it(text, monkeypatch):
    """A file read comes back as the last message (the tool's answer, the gateway's marker on its one text part):
    its size as sent is made from its part without the text (prints_next.LONG), and is the size read whole."""
    seen = foreseen(monkeypatch)
    messages, bodies = conversation(1)[:-1], []
    for n in range(3):
        messages.append({"role": "tool", "tool_call_id": f"c{n}", "content": f"{n} {text}"})
        bodies.append(sent(messages))
        messages.append({"role": "assistant", "content": f"read {n}"})
    hour = [{"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    bodies.append(sent(messages + [{"role": "user", "content": hour}]))
    assert len(text) > prints_next.LONG
    chain(bodies)
    assert seen == [True] * 3


def test_the_settings_and_the_model_s_block_are_read_as_before():
    """settings_of names each of SETTINGS (a map over them cost twice as much): the same hash as the map's; a
    model's block is kept by its name, the same as encoding it."""
    body = {k: {"value": i} for i, k in enumerate(prints.SETTINGS)}
    assert prints.settings_of(body) == prints.checksum(jsonio.dumps([body.get(k) for k in prints.SETTINGS]))
    assert prints.SETTINGS == ("tool_choice", "enable_thinking", "thinking_budget", "reasoning_effort",
                               "response_format", "thinking", "reasoning", "text")  # as settings_of and grown name them
    assert prints.settings_of({}) == prints.checksum(jsonio.dumps([None] * len(prints.SETTINGS)))
    for model in ("qwen3-coder-plus", "qwen3-coder-plus", None, 7):
        data = jsonio.dumps(model)
        digest = prints.checksum(data)
        assert prints.model_block(model) == (data, digest, digest.to_bytes(8, sys.byteorder))


@pytest.mark.parametrize("system", ["plain", "parts", "hour", "two"])
def test_a_new_conversation_with_a_system_text_seen_before_takes_its_blocks(system, monkeypatch):
    """An agent's every session sends the same system text (Codex's 20 kB of instructions): a conversation's first
    turn takes its blocks from a system text any conversation sent before, found where its messages begin in the
    bytes sent (its JSON's length and checksum), instead of encoding it again; the same print as read whole."""
    lead = {"plain": [{"role": "system", "content": SYSTEM}],
            "parts": [{"role": "system", "content": [{"type": "text", "text": SYSTEM}, {
                "type": "text", "text": "env", "cache_control": {"type": "ephemeral"}}]}],
            "hour": [{"role": "system", "content": [{"type": "text", "text": SYSTEM,
                                                     "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
            "two": [{"role": "system", "content": SYSTEM}, {"role": "developer", "content": "be brief"}]}[system]
    body, data = sent(lead + [{"role": "user", "content": "first"}])
    assert same(of_sent(body, data, None), of_chat(body))  # seen once
    encoded = []
    real = prints.dumps
    monkeypatch.setattr(prints_chat, "dumps", lambda obj: encoded.append(obj) or real(obj))
    for then in ([{"role": "user", "content": "another session"}],
                 [{"role": "user", "content": "a third"}, {"role": "assistant", "content": "ok"},
                  {"role": "user", "content": "go"}]):
        body, data = sent(lead + then)
        made = of_sent(body, data, None)
        assert not encoded  # the system text's blocks taken, not encoded again
        whole = of_chat(body)  # (encodes it)
        encoded.clear()
        assert same(made, whole) and (made.reuse.head_len, made.reuse.head_sum) == (whole.reuse.head_len,
                                                                                     whole.reuse.head_sum)
    changed = [{"role": "system", "content": f"{SYSTEM} Changed for {system}."}, {"role": "user", "content": "hi"}]
    body, data = sent(changed)
    made = of_sent(body, data, None)
    assert encoded and same(made, of_chat(body))  # another: encoded


def test_two_agents_in_turn_each_take_their_own_system_text_and_tools(monkeypatch):
    """The system text and tool list seen last are tried first (prints_chat.NEWEST_*): a gateway serving two agents
    in turn tries the other's first, then finds its own among all seen, not encoded again; one seen last and
    dropped from the memo since is still taken (an entry is what its JSON makes); every print as read whole."""
    agents = [([{"role": "system", "content": f"{SYSTEM} Agent {name}."}], tools) for name, tools in
              (("one", TOOLS), ("two", TOOLS[:1]))]
    for lead, tools in agents:  # each seen once
        body, data = sent(lead + [{"role": "user", "content": "first"}], tools=tools)
        assert same(of_sent(body, data, None), of_chat(body))
    encoded: list = []
    real = prints.dumps
    monkeypatch.setattr(prints_chat, "dumps", lambda obj: encoded.append(obj) or real(obj))
    monkeypatch.setattr(prints, "dumps", lambda obj: encoded.append(obj) or real(obj))
    for i in range(6):
        lead, tools = agents[i % 2]
        body, data = sent(lead + [{"role": "user", "content": f"session {i}"}], tools=tools)
        made = of_sent(body, data, None)
        assert not encoded, i  # neither the system text's blocks nor the tools' made again
        assert prints_chat.NEWEST_SYSTEM is not None and prints_chat.NEWEST_SYSTEM[1] is \
            prints_chat.SEEN_SYSTEMS[next(reversed(prints_chat.SEEN_SYSTEMS))]
        monkeypatch.undo()
        assert same(made, of_chat(body)), i
        monkeypatch.setattr(prints_chat, "dumps", lambda obj: encoded.append(obj) or real(obj))
        monkeypatch.setattr(prints, "dumps", lambda obj: encoded.append(obj) or real(obj))
        encoded.clear()
    monkeypatch.setattr(prints_chat, "SEEN_SYSTEMS", type(prints_chat.SEEN_SYSTEMS)())
    monkeypatch.setattr(prints_chat, "SEEN_TOOLS", type(prints.SEEN_TOOLS)())
    made = of_sent(body, data, None)  # the last one, dropped from both memos: still taken
    assert not encoded
    monkeypatch.undo()
    assert same(made, of_chat(body))
