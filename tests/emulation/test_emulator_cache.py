"""The emulator's context cache against Model Studio's "Context cache" page: explicit markers (at most the last
four take effect, a 1,024-token minimum, 20 blocks looked back, five minutes reset on each hit), the implicit
cache of unmarked prompts, per account and model, with the usage fields Model Studio reports."""

from __future__ import annotations

import json

import pytest

from emulation.test_emulator import API_KEY, SEED, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts emulator processes

OTHER_KEY = "sk-emulator-other-account"
EPHEMERAL = {"type": "ephemeral"}
LONG = "You are a careful assistant who reads the code before answering. " * 80  # ~1,300 of its tokens

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY, "--api-key", OTHER_KEY, "--seed-token", SEED)


def marked(text: str) -> list[dict]:
    return [{"type": "text", "text": text, "cache_control": EPHEMERAL}]


def chat(emu, messages: list[dict], key: str = API_KEY, model: str = "qwen3-coder-plus", **extra) -> dict:
    r = emu.http.post("/compatible-mode/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": messages, **extra})
    assert r.status_code == 200, r.text
    return r.json()["usage"]


def details(usage: dict) -> dict:
    return usage["prompt_tokens_details"]


def advance(emu, seconds: float) -> dict:
    return emu.admin("POST", "cache", {"advance": seconds})


def test_explicit_cache_creation_then_hit_in_model_studios_fields(emu):
    msgs = [{"role": "system", "content": marked(LONG)}, {"role": "user", "content": "What does it do?"}]
    first = chat(emu, msgs)
    created = details(first)["cache_creation_input_tokens"]
    assert details(first) == {"cache_creation": {"ephemeral_5m_input_tokens": created},
                              "cache_creation_input_tokens": created, "cache_type": "ephemeral", "cached_tokens": 0}
    assert 1024 <= created < first["prompt_tokens"]
    # the system prompt as a plain string is the same prefix; the marker on the new question stores a longer one
    second = chat(emu, [{"role": "system", "content": LONG}, {"role": "user", "content": marked("How to speed it up?")}])
    assert details(second)["cached_tokens"] == created and details(second)["cache_type"] == "ephemeral"
    assert details(second)["cache_creation_input_tokens"] == second["prompt_tokens"] - created  # only the increment


def test_the_tools_come_after_the_system_text_as_qwens_template_renders_them(emu):
    """Tools listed in another order change the prefix from the end of the system text on, not before it."""
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
             for n in ("read", "write")]
    msgs = [{"role": "system", "content": marked(LONG)}, {"role": "user", "content": marked("What does it do? " * 300)}]
    first = details(chat(emu, msgs, tools=tools))
    system = details(chat(emu, [msgs[0], {"role": "user", "content": "hi"}], tools=tools))["cached_tokens"]
    assert 1024 <= system < first["cache_creation_input_tokens"]
    same = details(chat(emu, msgs, tools=tools))
    assert same["cached_tokens"] == first["cache_creation_input_tokens"]  # everything, the tools included
    reordered = details(chat(emu, msgs, tools=tools[::-1]))
    assert reordered["cached_tokens"] == system  # the system text only: the tools and what follows changed
    none = details(chat(emu, [{"role": "user", "content": marked(LONG)}], tools=tools, model="qwen3-coder-flash"))
    again = details(chat(emu, [{"role": "user", "content": marked(LONG)}], tools=tools[::-1], model="qwen3-coder-flash"))
    assert none["cache_creation_input_tokens"] > 0 and again["cached_tokens"] == 0  # no system text: tools first


def test_a_prefix_under_1024_tokens_is_not_cached(emu):
    msgs = [{"role": "system", "content": marked("Short prompt. " * 20)}, {"role": "user", "content": "hi"}]
    for _ in range(2):
        d = details(chat(emu, msgs))
        assert d["cache_creation_input_tokens"] == 0 and d["cached_tokens"] == 0 and d["cache_type"] == "ephemeral"


def test_caches_are_per_account_and_per_model(emu):
    msgs = [{"role": "system", "content": marked(LONG)}, {"role": "user", "content": "q"}]
    created = details(chat(emu, msgs))["cache_creation_input_tokens"]
    assert details(chat(emu, msgs, key=OTHER_KEY))["cached_tokens"] == 0  # another account: its own cache
    assert details(chat(emu, msgs, model="qwen-plus"))["cached_tokens"] == 0  # another model: its own
    assert details(chat(emu, msgs))["cached_tokens"] == created
    assert details(chat(emu, msgs, key=OTHER_KEY))["cached_tokens"] == created


def test_five_minutes_reset_on_each_hit(emu):
    msgs = [{"role": "system", "content": marked(LONG)}, {"role": "user", "content": "q"}]
    created = details(chat(emu, msgs))["cache_creation_input_tokens"]
    advance(emu, 240)
    assert details(chat(emu, msgs))["cached_tokens"] == created  # a hit at 4 minutes: 5 more from now
    advance(emu, 240)
    assert details(chat(emu, msgs))["cached_tokens"] == created  # 8 minutes after it was made
    assert advance(emu, 301) == {"explicit": 0, "implicit": 0, "session": 0}
    d = details(chat(emu, msgs))
    assert d["cached_tokens"] == 0 and d["cache_creation_input_tokens"] == created  # expired: made again


def test_only_the_last_four_markers_take_effect(emu):
    """Model Studio: "If the number of cache markers is greater than four, only the last four cache markers take
    effect" — no refusal: the earliest marker is silently lost, here the system prompt's."""
    system = {"role": "system", "content": marked(LONG)}
    turns = [{"role": "user", "content": marked(f"question {i} " * 20)} for i in range(4)]
    assert details(chat(emu, [system, *turns]))["cache_creation_input_tokens"] > 0
    # the system prompt with another question: its prefix was never stored (its marker was the fifth)
    assert details(chat(emu, [system, {"role": "user", "content": "other"}]))["cached_tokens"] == 0
    emu.admin("POST", "reset")
    chat(emu, [system, *turns[1:]])  # four markers: the system prompt's takes effect
    assert details(chat(emu, [system, {"role": "user", "content": "again"}]))["cached_tokens"] > 1024


def test_a_marker_looks_back_twenty_content_blocks(emu):
    system = {"role": "system", "content": LONG}  # unmarked: only the question's marker looks back
    filler = [{"role": "user", "content": f"note {i}"} for i in range(20)]
    for gap, found in ((19, True), (20, False)):  # the system prompt 20, then 21 blocks before the marker
        emu.admin("POST", "reset")
        chat(emu, [{"role": "system", "content": marked(LONG)}, {"role": "user", "content": "first"}])
        d = details(chat(emu, [system, *filler[:gap], {"role": "user", "content": marked("ask")}]))
        assert (d["cached_tokens"] > 1024) is found and (d["cached_tokens"] == 0) is not found


def test_implicit_cache_for_unmarked_prompts(emu):
    msgs = [{"role": "system", "content": LONG}, {"role": "user", "content": "first"}]
    assert details(chat(emu, msgs)) == {"cached_tokens": 0}
    d = details(chat(emu, [*msgs[:1], {"role": "user", "content": "second"}]))
    assert set(d) == {"cached_tokens"} and d["cached_tokens"] > 1024  # no cache_type: the implicit cache
    # the modes never mix: a marked request does not read what unmarked ones stored
    assert details(chat(emu, [{"role": "system", "content": marked(LONG)}, msgs[1]]))["cached_tokens"] == 0
    tiny = [{"role": "user", "content": "tiny " * 40}]
    assert [details(chat(emu, tiny))["cached_tokens"] for _ in range(2)] == [0, 0]  # under 256 tokens: not kept
    advance(emu, 301)
    assert details(chat(emu, msgs))["cached_tokens"] == 0


def test_streamed_usage_carries_the_same_fields(emu):
    msgs = [{"role": "system", "content": marked(LONG)}, {"role": "user", "content": "q"}]
    r = emu.http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": "qwen3-coder-plus", "messages": msgs, "stream": True,
                            "stream_options": {"include_usage": True}})
    last = json.loads(r.text.split("data: ")[-2])
    assert last["choices"] == [] and details(last["usage"])["cache_type"] == "ephemeral"
    assert details(last["usage"])["cache_creation_input_tokens"] > 1024


def test_a_marker_of_another_type_is_refused(emu):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "persistent"}}]}]
    r = emu.http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": "qwen3-coder-plus", "messages": msgs})
    assert r.status_code == 400 and "ephemeral" in r.json()["error"]["message"]


def test_anthropic_base_refuses_a_fifth_marker_and_counts_the_cache(emu):
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    blocks = [{"type": "text", "text": f"part {i} " * 10, "cache_control": EPHEMERAL} for i in range(3)]
    body = {"model": "qwen3-coder-plus", "max_tokens": 64, "system": [{"type": "text", "text": LONG,
                                                                       "cache_control": EPHEMERAL}],
            "messages": [{"role": "user", "content": blocks}]}
    first = emu.http.post("/apps/anthropic/v1/messages", headers=headers, json=body)
    assert first.status_code == 200, first.text
    u = first.json()["usage"]
    assert u["cache_creation_input_tokens"] > 1024 and u["cache_read_input_tokens"] == 0
    again = emu.http.post("/apps/anthropic/v1/messages", headers=headers, json=body).json()["usage"]
    assert again["cache_read_input_tokens"] == u["cache_creation_input_tokens"]
    assert again["input_tokens"] == u["input_tokens"] and again["cache_creation_input_tokens"] == 0
    body["messages"][0]["content"].append({"type": "text", "text": "fifth", "cache_control": EPHEMERAL})
    r = emu.http.post("/apps/anthropic/v1/messages", headers=headers, json=body)
    assert r.status_code == 400 and r.json()["error"] == {
        "type": "invalid_request_error", "message": "A maximum of 4 blocks with cache_control may be provided. Found 5."}

