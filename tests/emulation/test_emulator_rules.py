"""The emulator's strict DashScope rules (R1–R10 of dashscope-rules.md), driven directly over HTTP."""

from __future__ import annotations

import pytest

from emulation.test_emulator import API_KEY, TOOLS, emulator_fixtures, parse_sse

pytestmark = pytest.mark.e2e  # starts emulator processes

ALGO = "<400> InternalError.Algo.InvalidParameter: "
FORCED = {"type": "function", "function": {"name": "get_time"}}
IMAGE = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]


proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)


def refused(r, status=400) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) <= {"error", "request_id"} and set(body["error"]) == {"code", "message", "param", "type"}
    return body["error"]["message"]


def test_r1_roles_developer_is_refused(emu):
    msgs = [{"role": "developer", "content": "be terse"}, {"role": "user", "content": "hi"}]
    assert refused(emu.chat(messages=msgs)) == ("developer is not one of ['system', 'assistant', 'user', 'tool', "
                                                "'function'] - 'messages.[0].role'")
    msgs[0]["role"] = "system"
    assert emu.chat(messages=msgs).status_code == 200


def test_r2_json_mode_refused_in_thinking_mode(emu):
    fmt = {"response_format": {"type": "json_object"}}
    msg = "Json mode response is not supported when enable_thinking is true"
    assert refused(emu.chat(enable_thinking=True, model="qwen-plus", **fmt)) == msg
    assert refused(emu.chat(model="qwen3.6-plus", **fmt)) == msg  # thinks by default
    assert refused(emu.chat(model="qwen3-235b-a22b-thinking-2507", **fmt)) == msg  # always thinks
    assert emu.chat(model="qwen3.6-plus", enable_thinking=False, **fmt).status_code == 200
    assert emu.chat(model="qwen-plus", **fmt).status_code == 200  # no thinking by default
    assert emu.chat(model="qwen3-coder-plus", enable_thinking=True, **fmt).status_code == 200  # never thinks


@pytest.mark.parametrize("choice", ["required", FORCED])
def test_r3_forced_tool_choice_refused_in_thinking_mode(emu, choice):
    r = emu.chat(tools=TOOLS, tool_choice=choice, enable_thinking=True)
    assert refused(r) == ALGO + ("The tool_choice parameter does not support being set to required or object in "
                                 "thinking mode")
    assert r.json()["error"]["code"] == "invalid_parameter_error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert emu.chat(tools=TOOLS, tool_choice=choice, enable_thinking=False).status_code == 200
    assert emu.chat(tools=TOOLS, tool_choice="auto", enable_thinking=True).status_code == 200


@pytest.mark.parametrize("model,cap", [("coder-model", 65536), ("qwen-max", 8192), ("qwen-flash", 32768),
                                       ("qwen3.8-max", 131072)])
def test_r4_max_tokens_within_the_models_cap(emu, model, cap):
    """The caps are the catalogue's `output`; `max_tokens` (legacy, switched on) is held to the same cap. The
    refusal names the parameter that was sent (DashScope's own, OpenMinis #35)."""
    for key, legacy in (("max_completion_tokens", False), ("max_tokens", True)):
        emu.switches(legacy_max_tokens=legacy)
        assert refused(emu.chat(model=model, **{key: cap + 1})) == ALGO + f"Range of {key} should be [1, {cap}]"
        assert refused(emu.chat(model=model, **{key: 0})) == ALGO + f"Range of {key} should be [1, {cap}]"
        assert emu.chat(model=model, enable_thinking=False, **{key: cap}).status_code == 200


@pytest.mark.parametrize("model", ["qwen-flash", "qwen3.6-plus", "qwen3-235b-a22b-thinking-2507"])
def test_a_thinking_budget_at_or_above_the_cap_is_refused_in_dashscopes_words(emu, model):
    """"max_completion_tokens [64000] must be greater than thinking_budget [65536]" (OpenMinis #35)."""
    only = model == "qwen3-235b-a22b-thinking-2507"  # thinking-only: takes no switch, answers streams only
    knobs = {} if only else {"enable_thinking": True}
    stream = {"stream": True} if only else {}
    r = emu.chat(model=model, max_completion_tokens=1000, thinking_budget=1000, **knobs, **stream)
    assert refused(r) == "max_completion_tokens [1000] must be greater than thinking_budget [1000]"
    emu.switches(legacy_max_tokens=True)
    assert refused(emu.chat(model=model, max_tokens=1000, thinking_budget=8192, **knobs, **stream)) == \
        "max_tokens [1000] must be greater than thinking_budget [8192]"
    assert emu.chat(model=model, max_completion_tokens=1000, thinking_budget=999, **knobs, **stream).status_code == 200
    if knobs:  # thinking off: no budget is read
        assert emu.chat(model=model, max_completion_tokens=1000, thinking_budget=8192,
                        enable_thinking=False).status_code == 200


def test_a_retired_model_is_not_found(emu):
    """qwen4-max-preview was served until 2026-11-25 (the catalogue's `retires`, Model Studio's page)."""
    emu.switches(today="2026-11-26")
    r = emu.chat(model="qwen4-max-preview")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert "qwen4-max-preview" in r.json()["error"]["message"]
    emu.switches(today="2026-11-25")
    assert emu.chat(model="qwen4-max-preview").status_code == 200


RETIRED_2026_10_10 = ("qwen-turbo", "qwen-vl-max", "qwen-vl-plus", "qwq-plus", "qvq-max")  # notice 731


@pytest.mark.parametrize("model", RETIRED_2026_10_10)
def test_the_models_retired_on_2026_10_10_are_not_found_with_qwens_hint(emu, model):
    """Model Studio's 404 for a retired name, with its hint naming other models, some retired too
    (dashscope-rules.md, 2026-11-26: qvq-max -> "Did you mean `qwen-vl-max`…"): a request the gateway lets
    through is visible. Served on their last day, 2026-10-09 (the catalogue's `retires`)."""
    stream = {"stream": True} if model in ("qwq-plus", "qvq-max") else {}  # they answered streams only
    emu.switches(today="2026-10-10")
    r = emu.chat(model=model, **stream)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    said = r.json()["error"]["message"]
    assert said.startswith(f"The model `{model}` does not exist or you do not have access to it. Did you mean `")
    if model == "qvq-max":
        assert "Did you mean `qwen-vl-max`" in said  # a retired model: never a successor
    emu.switches(today="2026-10-09")
    assert emu.chat(model=model, **stream).status_code == 200


def test_a_retired_model_is_neither_listed_nor_found_by_id(emu):
    """A key's OpenAI-compatible `GET /models` lists what Model Studio still serves, and `GET /models/{id}` agrees:
    a retired model is in neither from the day after its last (the list a gateway reads must not revive it)."""
    get = lambda path: emu.http.get("/compatible-mode/v1" + path, headers={"Authorization": f"Bearer {API_KEY}"})  # noqa: E731
    emu.switches(today="2026-10-10")
    listed = [m["id"] for m in get("/models").json()["data"]]
    assert "qwen3.6-plus" in listed and not set(RETIRED_2026_10_10) & set(listed)
    assert get("/models/qwen-turbo").status_code == 404 and get("/models/qwen3.6-plus").status_code == 200
    emu.switches(today="2026-10-09")
    assert "qwen-turbo" in [m["id"] for m in get("/models").json()["data"]]
    assert get("/models/qwen-turbo").status_code == 200


DEPRECATED = ALGO + "max_tokens is deprecated, use max_completion_tokens"


def test_max_tokens_is_refused_on_the_openai_compatible_chat_api_unless_legacy_is_switched_on(emu):
    """Model Studio's "Notice of Changes to Certain Model Fields" (effective 2026-04-20): `max_completion_tokens`
    replaces `max_tokens`, deprecated before 2026-05-30. Anthropic's own `max_tokens` is not concerned."""
    for path in ("/v1/chat/completions", "/compatible-mode/v1/chat/completions"):
        r = emu.chat(path=path, max_tokens=100)
        assert refused(r) == DEPRECATED and r.json()["error"]["code"] == "invalid_parameter_error"
        assert refused(emu.chat(path=path, max_tokens=100, max_completion_tokens=100)) == DEPRECATED
        assert emu.chat(path=path, max_completion_tokens=100).status_code == 200
    emu.switches(legacy_max_tokens=True)
    assert emu.chat(max_tokens=100).status_code == 200
    emu.switches(legacy_max_tokens=False)
    anthropic = {"model": "qwen3-coder-plus", "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]}
    r = emu.http.post("/apps/anthropic/v1/messages", json=anthropic,
                      headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text


def embed(emu, inputs):
    return emu.http.post("/compatible-mode/v1/embeddings", json={"model": "text-embedding-v4", "input": inputs},
                         headers={"Authorization": f"Bearer {API_KEY}"})


def test_r5_embeddings_batch_of_ten_strings_at_most(emu):
    assert refused(embed(emu, [f"t{i}" for i in range(11)])) == (
        ALGO + "Value error, batch size is invalid, it should not be larger than 10.: input.contents")
    ok = embed(emu, [f"t{i}" for i in range(10)])
    assert ok.status_code == 200 and [d["index"] for d in ok.json()["data"]] == list(range(10))
    for tokens in ([[1, 2, 3]], [1, 2, 3]):  # LangChain's default token-id arrays
        assert "input.contents" in refused(embed(emu, tokens))


def test_r6_error_finish_stream_is_a_switchable_fault(emu):
    plain = emu.events("a b c")
    assert all(e == "[DONE]" or not e["choices"] or e["choices"][0]["finish_reason"] != "error_finish"
               for e in plain)
    emu.fault("error_finish")
    events = emu.events("a b c")
    finish = [e for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "error_finish"
    assert finish[0]["choices"][0]["delta"]["content"] == "Requests rate limit exceeded, please try again later."
    assert events[-1] == "[DONE]"
    emu.fault("error_finish", message="custom")
    assert [e for e in emu.events()[:-1] if e["choices"] and e["choices"][0]["finish_reason"]][0][
        "choices"][0]["delta"]["content"] == "custom"


def test_r7_access_denied_for_a_model_not_enabled_and_arrears(emu):
    emu.switches(denied_models=["qwen3.6-plus"])
    r = emu.chat(model="qwen3.6-plus")
    assert "Access to model denied" in refused(r, 403) and r.json()["error"]["code"] == "AccessDenied.Unpurchased"
    assert emu.chat(model="qwen-plus").status_code == 200
    emu.fault("arrears403")
    r = emu.chat(model="qwen-plus")
    assert refused(r, 403).startswith("Access denied") and r.json()["error"]["code"] == "Arrearage"


def test_r8_deltas_that_repeat_earlier_text_are_streamed_as_is(emu):
    emu.switches(deltas=["哈哈", "哈哈", "，好的"], reasoning=False)
    events = emu.events()
    assert [e["choices"][0]["delta"]["content"] for e in events[1:-2]] == ["哈哈", "哈哈", "，好的"]
    assert emu.chat().json()["choices"][0]["message"]["content"] == "哈哈哈哈，好的"


def test_r9_thinking_knobs_per_model(emu):
    r = emu.chat(model="qwen3-235b-a22b-thinking-2507", enable_thinking=False)
    assert refused(r) == ALGO + "The value of the enable_thinking parameter is restricted to True."
    assert emu.chat(model="qwen3-235b-a22b-thinking-2507", stream=True).status_code == 200
    r = emu.chat(model="qwen3.8-max", reasoning_effort="high", thinking_budget=1024)
    assert "reasoning_effort" in refused(r)
    assert emu.chat(model="qwen3.8-max", reasoning_effort="high").status_code == 200
    assert emu.chat(model="qwen3.6-plus", enable_thinking=False).status_code == 200


def test_r9_the_knobs_each_model_refuses_in_dashscopes_words(emu):
    assert refused(emu.chat(model="qwen3.8-max", reasoning_effort="high", thinking_budget=1024)) == (
        "'reasoning_effort' and 'thinking_budget' cannot be set simultaneously")
    assert refused(emu.chat(model="qwen3.8-max", reasoning_effort="max")) == (
        "'reasoning_effort' must be one of: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh'")
    assert emu.chat(model="qwen3.8-max", thinking_budget=4096).status_code == 200  # a budget alone: taken
    budget = ALGO + "The thinking_budget parameter must be a positive integer and not greater than "
    assert refused(emu.chat(model="qwen3-8b", enable_thinking=True, thinking_budget=77824)) == budget + "38912"
    assert refused(emu.chat(model="qwen3.6-plus", thinking_budget=81921)) == budget + "81920"  # on by default
    assert emu.chat(model="qwen3.6-plus", thinking_budget=81920).status_code == 200
    assert emu.chat(model="qwen3.6-plus", enable_thinking=False, thinking_budget=10 ** 6).status_code == 200
    assert refused(emu.chat(model="qwen3.5-27b", enable_thinking=True)) == budget + "0"  # a budget required
    assert emu.chat(model="qwen3.5-27b", enable_thinking=True, thinking_budget=8192).status_code == 200


def reasoning_of(r) -> tuple[str | None, int]:
    """(reasoning_content, reasoning_tokens billed) of a whole answer."""
    body = r.json()
    assert r.status_code == 200, body
    details = body["usage"].get("completion_tokens_details") or {}
    return body["choices"][0]["message"].get("reasoning_content"), details.get("reasoning_tokens", 0)


def test_each_model_thinks_by_its_own_default_and_bills_the_reasoning(emu):
    for model in ("qwen3.6-plus", "qwen3.5-plus", "coder-model", "qwen3.8-max", "qwen3.7-plus"):  # on by default
        text, billed = reasoning_of(emu.chat(model=model))
        assert text and billed > 0, model
    for model in ("qwen-plus", "qwen3-max-2026-01-23"):  # hybrid, off by default
        assert reasoning_of(emu.chat(model=model)) == (None, 0)
        assert reasoning_of(emu.chat(model=model, enable_thinking=True))[1] > 0
    assert reasoning_of(emu.chat(model="qwen3.6-plus", enable_thinking=False)) == (None, 0)
    assert reasoning_of(emu.chat(model="qwen3.8-max", reasoning_effort="none")) == (None, 0)
    for knobs in ({"enable_thinking": True}, {"enable_thinking": False, "thinking_budget": 5},
                  {"reasoning_effort": "high"}):  # no thinking: the knobs are ignored, never refused
        assert reasoning_of(emu.chat(model="qwen3-coder-plus", **knobs)) == (None, 0)


def test_r10_images_only_to_vision_models(emu):
    r = emu.chat(IMAGE, model="qwen3-coder-plus")
    assert refused(r) == ALGO + ("The provided messages input is invalid. The error info is [Unexpected item type "
                                 "in content.]")
    for model in ("qwen3.6-plus", "qwen3.7-plus", "qwen3-vl-plus", "coder-model"):
        assert emu.chat(IMAGE, model=model, vl_high_resolution_images=True).status_code == 200, model


def usage(emu, messages, stream=True) -> dict:
    r = emu.chat(messages=messages, stream=stream, stream_options={"include_usage": True})
    return [e for e in parse_sse(r.text)[:-1] if not e["choices"]][0]["usage"]


def test_cached_tokens_implicit_unmarked_explicit_marked(emu):
    """Model Studio's two caches (tests/emulation/test_emulator_cache.py has the rest): unmarked prompts read the implicit
    cache, marked ones the explicit cache, in their streamed usage."""
    system = "You are a careful assistant. " * 160  # over 1,024 of the emulator's tokens
    plain = [{"role": "system", "content": system}, {"role": "user", "content": "one"}]
    assert usage(emu, plain)["prompt_tokens_details"] == {"cached_tokens": 0}
    again = usage(emu, plain)["prompt_tokens_details"]
    assert set(again) == {"cached_tokens"} and again["cached_tokens"] > 1024  # the implicit cache
    marked = [{"role": "system", "content": [{"type": "text", "text": system,
                                              "cache_control": {"type": "ephemeral"}}]},
              {"role": "user", "content": [{"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}}]}]
    first = usage(emu, marked)
    assert first["prompt_tokens_details"]["cached_tokens"] == 0  # written, not yet read
    assert first["prompt_tokens_details"]["cache_creation_input_tokens"] >= first["prompt_tokens"] - 1
    turn2 = marked + [{"role": "assistant", "content": "Echo: one"}, {"role": "user", "content": "two"}]
    second = usage(emu, turn2)
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached <= second["prompt_tokens"] and cached >= first["prompt_tokens"] - 1
    other = [{"role": "system", "content": "A different prompt."}, {"role": "user", "content": "one"}]
    assert usage(emu, other)["prompt_tokens_details"]["cached_tokens"] == 0
    emu.admin("POST", "reset")
    assert usage(emu, turn2)["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_lone_surrogate_escape_is_refused_and_its_replacement_taken(emu):
    """Valid JSON syntax, no character: a strict UTF-8 server refuses it (assumed); U+FFFD is text."""
    headers = {"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    raw = '{"model": "coder-model", "messages": [{"role": "user", "content": "cut \\ud83d"}]}'
    assert "lone surrogate" in refused(emu.http.post("/v1/chat/completions", content=raw, headers=headers))
    raw = '{"model": "text-embedding-v4", "input": ["cut \\ud83d"]}'
    assert "lone surrogate" in refused(emu.http.post("/compatible-mode/v1/embeddings", content=raw, headers=headers))
    assert emu.chat("cut \ufffd").status_code == 200
    pair = '{"model": "coder-model", "messages": [{"role": "user", "content": "whole \\ud83d\\ude00"}]}'
    assert emu.http.post("/v1/chat/completions", content=pair, headers=headers).status_code == 200


def test_a_prompt_over_the_context_limit_gets_qwens_400_naming_it(emu):
    emu.switches(context_limit=100)
    assert refused(emu.chat("x" * 500)) == "Range of input length should be [1, 100]"
    assert emu.chat("x" * 300).status_code == 200
    emu.switches(context_limit=0)
    assert emu.chat("x" * 5000).status_code == 200


def test_each_models_context_window_is_the_catalogues(emu):
    """A prompt over the model's longest input as the catalogue gives it (qwen3-max: 258,048) gets Qwen's 400; a
    model with a longer window (qwen4-max: 991,808) takes it; a model the catalogue gives none is not limited."""
    long = [{"role": "user", "content": "1234567 " * 140_000}]  # 280,000 of the emulator's tokens
    assert refused(emu.chat(messages=long, model="qwen3-max")) == "Range of input length should be [1, 258048]"
    assert emu.chat(messages=long, model="qwen4-max").status_code == 200
    assert emu.chat(messages=long, model="qwen3-coder-plus").status_code == 200
