"""The Anthropic-compatible base's validation (scripts/emulator/anthropic_rules.py): each rule refused with
Anthropic's error shape and status, and a full request that follows them all accepted."""

from __future__ import annotations

import pytest

from emulation.test_emulator import API_KEY, emulator_fixtures
from emulation.test_emulator_anthropic import BASE, IMAGE, THINK, WEATHER, events, ok, post, refused, texts

pytestmark = pytest.mark.e2e  # starts emulator processes

USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
HI = {"role": "user", "content": "hi"}
BUDGET = ("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
          "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size")
EXTRA = "Extra inputs are not permitted"


proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)


def without(key: str) -> dict:
    return {k: v for k, v in BASE.items() if k != key}


def turns(*messages) -> dict:
    return {**BASE, "messages": list(messages)}


CASES = {  # name: (body, expected "type: message"); status 400 unless the type says otherwise
    "model required": (without("model"), "model: Field required"),
    "model a string": ({**BASE, "model": 3}, "model: Input should be a valid string"),
    "claude ids unknown": ({**BASE, "model": "claude-sonnet-4-5"}, "model: claude-sonnet-4-5"),
    "max_tokens required": (without("max_tokens"), "max_tokens: Field required"),
    "max_tokens an int": ({**BASE, "max_tokens": "5"}, "max_tokens: Input should be a valid integer"),
    "max_tokens positive": ({**BASE, "max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    "max_tokens capped (R4)": ({**BASE, "max_tokens": 65537}, "max_tokens: 65537 > 65536, which is the maximum "
                                                              "allowed number of output tokens for qwen3-coder-plus"),
    "max_tokens capped per model": ({**BASE, "model": "qwen-max", "max_tokens": 32000},
                                    "max_tokens: 32000 > 8192, which is the maximum allowed number of output tokens "
                                    "for qwen-max"),
    "messages required": (without("messages"), "messages: Field required"),
    "messages non-empty": (turns(), "messages: at least one message is required"),
    "no system role": (turns(HI, {"role": "system", "content": "x"}),
                       "messages.1.role: Input should be 'user' or 'assistant'"),
    "user first": (turns({"role": "assistant", "content": "x"}, HI), 'messages: first message must use the "user" role'),
    "roles alternate": (turns(HI, HI), 'messages: roles must alternate between "user" and "assistant", but found '
                                       'multiple "user" roles in a row'),
    "content non-empty": (turns({"role": "user", "content": ""}),
                          "messages.0: all messages must have non-empty content except for the optional final "
                          "assistant message"),
    "known block types": (turns({"role": "user", "content": [{"type": "video", "url": "x"}]}),
                          "messages.0.content.0.type: Input tag 'video' found using 'type' does not match any of the "
                          "expected tags: 'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', "
                          "'redacted_thinking'"),
    "block fields": (turns({"role": "user", "content": [{"type": "text", "text": "x", "foo": 1}]}),
                     f"messages.0.content.0.foo: {EXTRA}"),
    "thinking blocks signed": (turns(HI, {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}]}),
                               "messages.1.content.0.signature: Field required"),
    "tool_use from the assistant": (turns({"role": "user", "content": [USE]}),
                                    "messages.0.content.0: `tool_use` blocks are not allowed in `user` messages"),
    "tool_result answers a tool_use": (turns(HI, {"role": "assistant", "content": "x"},
                                             {"role": "user", "content": [RESULT]}),
                                       "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                                       "toolu_1. Each `tool_result` block must have a corresponding `tool_use` block "
                                       "in the previous message."),
    "tool_use answered": (turns(HI, {"role": "assistant", "content": [USE]}, HI),
                          "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: "
                          "toolu_1. Each `tool_use` block must have a corresponding `tool_result` block in the next "
                          "message."),
    "tool_result content blocks": (turns(HI, {"role": "assistant", "content": [USE]}, {"role": "user", "content": [
        {**RESULT, "content": [{"type": "text"}]}]}), "messages.2.content.0.content.0.text: Field required"),
    "system text": ({**BASE, "system": 5}, "system: Input should be a valid string or list"),
    "system blocks text": ({**BASE, "system": [IMAGE]}, "system.0: Input should be a text block"),
    "tools have input_schema": ({**BASE, "tools": [{"name": "t"}]}, "tools.0.custom.input_schema: Field required"),
    "tools named": ({**BASE, "tools": [{**WEATHER, "name": "a b"}]},
                    "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'"),
    "tools unique": ({**BASE, "tools": [WEATHER, WEATHER]}, "tools: Tool names must be unique."),
    "no defer_loading": ({**BASE, "tools": [{**WEATHER, "defer_loading": True}]},
                         f"tools.0.custom.defer_loading: {EXTRA}"),
    "tool_choice shapes": ({**BASE, "tool_choice": {"type": "required"}},
                           "tool_choice: Input should be an object with type 'auto', 'any', 'tool' or 'none'"),
    "tool_choice names a tool": ({**BASE, "tools": [WEATHER], "tool_choice": {"type": "tool"}},
                                 "tool_choice.tool.name: Field required"),
    "no adaptive thinking": ({**BASE, "thinking": {"type": "adaptive"}},
                             "thinking: Input tag 'adaptive' found using 'type' does not match any of the expected "
                             "tags: 'enabled', 'disabled'"),
    "no thinking display": ({**BASE, "max_tokens": 4096, "thinking": {**THINK, "display": "omitted"}},
                            f"thinking.enabled.display: {EXTRA}"),
    "budget at least 1024": ({**BASE, "thinking": {"type": "enabled", "budget_tokens": 1000}},
                             "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    "budget below max_tokens": ({**BASE, "thinking": THINK}, BUDGET),
    "temperature at most 1": ({**BASE, "temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
    "temperature at least 0": ({**BASE, "temperature": -0.1}, "temperature: Input should be greater than or equal to 0"),
    "top_p at most 1": ({**BASE, "top_p": 2}, "top_p: Input should be less than or equal to 1"),
    "top_k an int": ({**BASE, "top_k": 0.5}, "top_k: Input should be a valid integer"),
    "stop_sequences strings": ({**BASE, "stop_sequences": "END"}, "stop_sequences: Input should be a valid list of "
                                                                  "strings"),
    "stream a boolean": ({**BASE, "stream": "yes"}, "stream: Input should be a valid boolean"),
    "metadata user_id only": ({**BASE, "metadata": {"session": "s"}}, f"metadata.session: {EXTRA}"),
    "no context_management": ({**BASE, "context_management": {"edits": []}}, f"context_management: {EXTRA}"),
    "no output_config": ({**BASE, "output_config": {"effort": "medium"}}, f"output_config: {EXTRA}"),
    "no safeguards": ({**BASE, "safeguards": []}, f"safeguards: {EXTRA}"),
    "forced tools without thinking (R3)": ({**BASE, "model": "coder-model", "tools": [WEATHER],
                                            "tool_choice": {"type": "any"}},
                                           "Thinking may not be enabled when tool_choice forces tool use."),
    "thinking-only models (R9)": ({**BASE, "model": "qwen3-235b-a22b-thinking-2507", "thinking": {"type": "disabled"}},
                                  "The value of the enable_thinking parameter is restricted to True."),
    "images to vision models (R10)": (turns({"role": "user", "content": [IMAGE]}),
                                      "messages: model qwen3-coder-plus does not support image input"),
}


@pytest.mark.parametrize("name", CASES)
def test_refused(emu, name):
    body, message = CASES[name]
    kind = "not_found_error" if name == "claude ids unknown" else "invalid_request_error"
    r = emu.http.post("/apps/anthropic/v1/messages", json=body, headers={"x-api-key": API_KEY,
                                                                         "anthropic-version": "2023-06-01"})
    assert refused(r, 404 if kind == "not_found_error" else 400) == f"{kind}: {message}"


def test_a_retired_model_is_not_found(emu):
    """The models retired on 2026-10-10 (the catalogue's `retires`, notice 731) are not found on the plan's
    Anthropic base either; served on their last day."""
    emu.switches(today="2026-10-10")
    for model in ("qwen-turbo", "qwen-vl-max"):
        assert refused(post(emu, {**BASE, "model": model}), 404) == f"not_found_error: model: {model}"
    emu.switches(today="2026-10-09")
    assert ok(post(emu, {**BASE, "model": "qwen-turbo"}))["model"] == "qwen-turbo"


def test_not_json_and_denied_models(emu):
    r = post(emu, None, headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"})
    assert r.status_code == 200  # the BASE body, as a control
    r = emu.http.post("/apps/anthropic/v1/messages", content=b"{oops", headers={
        "x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"})
    assert refused(r) == "invalid_request_error: The request body is not valid JSON."
    emu.switches(denied_models=["qwen3-coder-plus"])  # R7
    assert refused(post(emu), 403) == ("permission_error: Access to model denied. Please make sure you are eligible "
                                       "for using the model.")


def test_a_request_following_every_rule_is_accepted(emu):
    """What a gateway sends after folding `role: system` into `system`, stripping Claude Code's extras and
    mapping the model: the same shapes Claude Code sends otherwise (docs: claude-code.md §3–4)."""
    cache = {"cache_control": {"type": "ephemeral"}}
    use = {**USE, "input": {"location": "Paris"}}
    body = {
        "model": "qwen3.6-plus", "max_tokens": 32000, "stream": True,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2"},
                   {"type": "text", "text": "You are a Claude agent.", **cache}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                         {"type": "text", "text": "look at this"}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "c2ln"},
                                              {"type": "redacted_thinking", "data": "abc"},
                                              {"type": "text", "text": "reading"}, use]},
            {"role": "user", "content": [{**RESULT, "is_error": False, "content": [IMAGE], **cache},
                                         {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                         "data": "doc"}}]}],
        "tools": [{**WEATHER, "input_schema": {**WEATHER["input_schema"], "additionalProperties": False,
                                               "$schema": "https://json-schema.org/draft/2020-12/schema"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": '{"device_id":"d","session_id":"s"}'},
        "thinking": {"type": "enabled", "budget_tokens": 31999}, "temperature": 1, "top_p": 0.95, "top_k": 40,
        "stop_sequences": ["</done>"],
    }
    r = emu.http.post("/apps/anthropic/v1/messages?beta=true", json=body, headers={
        "x-api-key": API_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14"})
    evs = events(r)
    assert texts(evs).startswith("Tool said:")  # the last turn carries tool results (here an image)
    assert [d["content_block"]["type"] for n, d in evs if n == "content_block_start"] == ["thinking", "text"]
    assert ok(post(emu, thinking={"type": "disabled"}, tool_choice={"type": "any"}, tools=[WEATHER]))
