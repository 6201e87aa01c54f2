"""A prompt's prints (cache/prints.py, prints_forms.py): what counts as the same prompt for Qwen's cache (a string
and text parts, markers or none), each form a body reaches Qwen in, the lifetime its markers ask, the work a
tool list costs when it comes back unchanged."""

from __future__ import annotations

import copy
import json
import subprocess
import sys


from qwen_gateway.cache import prints
from qwen_gateway.cache.prints import HOUR, MINUTES
from qwen_gateway.cache.prints_forms import MESSAGES, RESPONSES, of_body, of_chat, places

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in ("Read", "Bash")]


def chat(*messages: dict, **extra) -> dict:
    return {"model": "qwen3-coder-plus", "tools": copy.deepcopy(TOOLS),
            "messages": [{"role": "system", "content": "Be brief."}, *messages], **extra}


def test_a_string_and_its_text_parts_are_the_same_prompt():
    as_string = of_chat(chat({"role": "user", "content": "hello there"}))
    one_part = of_chat(chat({"role": "user", "content": [{"type": "text", "text": "hello there"}]}))
    two_parts = of_chat(chat({"role": "user", "content": [{"type": "text", "text": "hello "},
                                                          {"type": "text", "text": "there"}]}))
    assert as_string.raw == one_part.raw == two_parts.raw
    assert of_chat(chat({"role": "user", "content": "hello, there"})).raw != as_string.raw


def test_no_marker_is_part_of_the_prompt():
    plain = of_chat(chat({"role": "user", "content": "hello"}))
    marked = chat({"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]})
    marked["tools"][1]["cache_control"] = {"type": "ephemeral"}
    breakpoint_ = chat({"role": "user", "content": [{"type": "text", "text": "hello",
                                                     "prompt_cache_breakpoint": {"mode": "explicit"}}]})
    assert of_chat(marked).raw == plain.raw == of_chat(breakpoint_).raw


def test_the_lifetime_its_markers_ask():
    assert of_chat(chat({"role": "user", "content": "hi"})).lifetime == MINUTES
    hour = {"type": "text", "text": "hi", "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "1h"}}
    assert of_chat(chat({"role": "user", "content": [hour]})).lifetime == HOUR
    anthropic = {"model": "qwen4-max", "cache_control": {"type": "ephemeral", "ttl": "1h"},
                 "messages": [{"role": "user", "content": "hi"}]}
    assert of_body(anthropic, MESSAGES).lifetime == HOUR


def test_anthropics_form_reads_its_system_tools_and_blocks():
    body = {"model": "qwen3-coder-plus", "system": [{"type": "text", "text": "Be brief."},
                                                    {"type": "text", "text": "Today is Monday."}],
            "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok",
                                                       "cache_control": {"type": "ephemeral"}}]}]}
    p = of_body(body, MESSAGES)
    assert p.kinds == "MSSTUUU" and p.first_message == 4
    assert places(body, MESSAGES) == ["model", "system[0]", "system[1]", "tools[0] Read", "messages[0] user",
                                      "messages[1] assistant", "messages[2] user"]
    again = copy.deepcopy(body)
    again["messages"][0]["content"] = "hi"  # a string is its one text block
    del again["messages"][2]["content"][0]["cache_control"]
    assert of_body(again, MESSAGES).raw == p.raw


def test_responses_form_reads_instructions_and_items():
    body = {"model": "qwen3.6-plus", "instructions": "Be brief.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c1", "name": "Read", "arguments": "{}"}]}
    p = of_body(body, RESPONSES)
    assert p.kinds == "MSUU"
    assert of_body({**body, "input": [{"role": "user", "content": "hi"}, body["input"][1]]}, RESPONSES).raw == p.raw


def test_an_unchanged_tool_list_is_hashed_whole_not_tool_by_tool(monkeypatch):
    encoded = []
    real = prints.dumps
    monkeypatch.setattr(prints, "dumps", lambda obj: encoded.append(obj) or real(obj))
    tools = [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object"}}} for i in range(12)]
    first = of_chat(chat({"role": "user", "content": "hi"}, tools=tools))
    per_tool = sum(1 for obj in encoded if obj in tools)
    encoded.clear()
    again = of_chat(chat({"role": "user", "content": "hi"}, tools=copy.deepcopy(tools)))
    assert (per_tool, sum(1 for obj in encoded if obj in tools)) == (12, 0)
    assert again.raw == first.raw


def test_a_long_conversations_print_holds_memory_in_proportion_to_its_json():
    """Issue 79 item 6: orjson hands each message's JSON back in a buffer of 4 kB whatever its length, and a
    print of 200,000 one-word messages held 800 MB of them at once (~100 bytes of JSON each). Then a Python int
    for each block's hash, all alive until the print was done: 7.5× the JSON read whole, 4.7× grown from the turn
    before, and a heap the gateway did not give back (tests/e2e/test_e2e_memory.py, 3.6-4.1× the body kept)."""
    # in a process of its own: tracemalloc counts every thread's allocations, and a worker thread an earlier test
    # left printing (diagnosis.py) once lifted the peak past the bound on a loaded machine
    measure = (
        "import orjson, tracemalloc\n"
        "from qwen_gateway.cache.prints_forms import of_chat\n"
        "from qwen_gateway.cache.prints_sent import of_sent\n"
        "body = {'model': 'qwen3-coder-plus', 'messages': [{'role': 'user', 'content': f'w{i}'} for i in range(20_000)]}\n"
        "warm = {'model': 'qwen3-coder-plus', 'messages': body['messages'][:200]}\n"
        "before, sent = of_sent(warm, orjson.dumps(warm), None), orjson.dumps(body)\n"
        "tracemalloc.start()\n"
        "of_chat(body)\n"
        "whole = tracemalloc.get_traced_memory()[1]\n"
        "tracemalloc.reset_peak()\n"
        "of_sent(body, sent, before)\n"
        "print(whole, tracemalloc.get_traced_memory()[1], len(sent))\n")
    out = subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True, check=True).stdout
    whole, grown, size = map(int, out.split())
    assert whole < 7 * size, (whole, size)  # 6.3×: the messages' JSON, the head joined, the hashes and sizes
    assert grown < 4 * size, (grown, size)  # 3.6×: the new messages' JSON and their hashes and sizes


def test_content_parts_read_as_qwen_reads_them():
    from qwen_gateway.cache.parts import asks_hour, canonical_content, strip
    image = {"type": "image_url", "image_url": {"url": "data:,"}, "cache_control": {"type": "ephemeral"}}
    assert canonical_content([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == ("ab", None)
    assert canonical_content([{"type": "text", "text": "a"}, image]) == ("a", [strip(image)])
    assert asks_hour({"cache_control": {"type": "ephemeral", "ttl": "1h"}}) and not asks_hour(image)


def test_a_print_is_the_same_in_every_process():
    """Gateways of one team compare a turn one of them printed with a turn another printed (cache/shared.py):
    Python's own `hash` of bytes is seeded per process (PYTHONHASHSEED), so the print's digests must not be it."""
    import os
    import subprocess
    import sys

    body = {"model": "qwen3-coder-plus", "temperature": 0.2, "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "hi"},
                                                      {"type": "image_url", "image_url": {"url": "data:x"}}]}]}
    script = ("import json, sys; from qwen_gateway.cache.prints_chat import of_chat; p = of_chat(json.load(sys.stdin), True); "
              "print(json.dumps([p.raw.hex(), p.settings, sorted((p.texts or {}).items())]))")
    seen = set()
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", script], input=json.dumps(body), capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
        seen.add(out)
    assert len(seen) == 1, seen
