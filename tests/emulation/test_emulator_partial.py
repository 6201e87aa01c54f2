"""Model Studio's partial mode as the emulator plays it (scripts/emulator/partial.py): the last message an
assistant's prefix marked `"partial": true`, the answer goes on from it (the emulator's deterministic answer less
the prefix, when it starts with it), the prefix counted as input; refused on a model or in a mode the "Partial
mode" page does not list. And the mid-stream throttling the gateway continues from (R6, `error_finish`)."""

from __future__ import annotations

import pytest

from emulation.test_emulator import API_KEY, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts emulator processes

ALGO = "<400> InternalError.Algo.InvalidParameter: "
proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)


def asked(prefix: str | None, content: str = "say hello", **extra) -> list[dict]:
    msgs = [{"role": "user", "content": content}]
    return msgs + ([{"role": "assistant", "content": prefix, "partial": True}] if prefix is not None else [])


def refused(r) -> str:
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_parameter_error"
    return r.json()["error"]["message"]


def test_the_answer_goes_on_from_its_prefix_whole_and_streamed(emu):
    whole = emu.chat(model="qwen3-coder-plus", messages=asked(None)).json()
    assert whole["choices"][0]["message"]["content"] == "Echo: say hello"
    went_on = emu.chat(model="qwen3-coder-plus", messages=asked("Echo: sa")).json()
    assert went_on["choices"][0]["message"]["content"] == "y hello"
    # "You are billed for both input tokens and output tokens. The prefix is counted as part of the input tokens."
    assert went_on["usage"]["prompt_tokens"] > whole["usage"]["prompt_tokens"]
    assert went_on["usage"]["completion_tokens"] < whole["usage"]["completion_tokens"]
    events = emu.events(model="qwen3-coder-plus", messages=asked("Echo: say "), stream_options={"include_usage": True})
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
    assert text == "hello" and events[-2]["usage"]["prompt_tokens"] > whole["usage"]["prompt_tokens"]


def test_after_a_tool_result_the_prefix_continues_what_the_tool_result_is_answered_with(emu):
    msgs = [{"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "noon"},
            {"role": "assistant", "content": "Tool said", "partial": True}]
    assert emu.chat(model="qwen3-coder-plus", messages=msgs).json()["choices"][0]["message"]["content"] == ": noon"


def test_a_prefix_the_answer_does_not_start_with_is_followed_by_the_answer(emu):
    r = emu.chat(model="qwen-plus", messages=asked("Once upon"))
    assert r.json()["choices"][0]["message"]["content"] == "Echo: say hello"


@pytest.mark.parametrize("model", ["qwen4-max", "qwen3.8-max", "qwen3-30b-a3b-thinking-2507",
                                   "qwen3-235b-a22b-thinking-2507"])
def test_a_model_the_page_does_not_list_is_refused(emu, model):
    r = emu.chat(model=model, messages=asked("Echo: "), stream=True)
    assert refused(r) == ALGO + "The model does not support partial mode"


def test_thinking_mode_is_refused_non_thinking_mode_served(emu):
    """The page lists the hybrid models "(non-thinking mode)": qwen3.6-plus thinks when told nothing."""
    assert refused(emu.chat(model="qwen3.6-plus", messages=asked("Echo: "))) == (
        "Partial mode is not supported when enable_thinking is true")
    assert refused(emu.chat(model="qwen-plus", enable_thinking=True, messages=asked("Echo: "))) == (
        "Partial mode is not supported when enable_thinking is true")
    r = emu.chat(model="qwen3.6-plus", enable_thinking=False, messages=asked("Echo: "))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "say hello"


def test_partial_only_on_the_last_message_an_assistants(emu):
    msgs = [{"role": "user", "content": "hi", "partial": True}]
    assert refused(emu.chat(model="qwen-plus", messages=msgs)).endswith("assistant message")
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Ec", "partial": True},
            {"role": "user", "content": "again"}]
    assert refused(emu.chat(model="qwen-plus", messages=msgs)).endswith("assistant message")


def test_throttled_mid_stream_after_the_first_text(emu):
    """R6: HTTP 200, the first piece of text, then the throttling text with `finish_reason: "error_finish"`."""
    emu.fault("error_finish")
    events = emu.events("say hello there", model="qwen3-coder-plus")
    contents = [e["choices"][0]["delta"].get("content") for e in events[:-1] if e["choices"]]
    assert contents[:2] == ["", "Echo: "] and events[-2]["choices"][0]["finish_reason"] == "error_finish"
    assert contents[-1] == "Requests rate limit exceeded, please try again later."
