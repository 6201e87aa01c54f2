"""The emulator's vLLM mode (`qwen_emulator.py --serve vllm`, scripts/emulator/vllm*.py): a self-hosted vLLM v0.11.0
OpenAI-compatible server serving Qwen/Qwen3-8B, driven over real HTTP. This file: routes, auth, error bodies, request
rules, context length, reasoning, continue_final_message, ignored fields, tool choice, max_tokens — and the DashScope
mode left as it was. Streams, usage, the prefix cache and faults: test_emulator_vllm_stream.py."""

from __future__ import annotations

import httpx
import pytest

from helpers.procs import start_emulator

pytestmark = pytest.mark.e2e  # starts emulator processes

KEY = "sk-vllm-test"
FULL = ("--serve", "vllm", "--api-key", KEY, "--served-model-name", "qwen3-8b", "Qwen/Qwen3-8B", "--max-model-len",
        "2048", "--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        "--enable-prompt-tokens-details")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]
AUTO = "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("vllm"), *FULL)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """`vllm serve Qwen/Qwen3-8B` with no options: no key, no parsers, no auto tool choice."""
    emu = start_emulator(tmp_path_factory.mktemp("vllm-bare"), "--serve", "vllm")
    emu.model = "Qwen/Qwen3-8B"  # type: ignore[attr-defined]  # the served name: the weights' path
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def fresh(request):
    for name in ("vllm", "bare"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def chat(emu, key: str | None = KEY, text: str = "hello world", **body) -> httpx.Response:
    body = {"model": getattr(emu, "model", "qwen3-8b"), "messages": [{"role": "user", "content": text}], **body}
    return emu.http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"} if key else {})


def message(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]


def invalid(body: dict, msg: str) -> dict:
    """FastAPI's RequestValidationError for a model validator's ValueError, as vLLM's handler words it."""
    errors = [{"type": "value_error", "loc": ("body",), "msg": f"Value error, {msg}", "input": body,
               "ctx": {"error": ValueError(msg)}}]
    return {"error": {"message": str(errors), "type": "Bad Request", "param": None, "code": 400}}


def bad_request(message: str) -> dict:
    return {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}


def test_routes_models_health_version(vllm, bare):
    assert vllm.http.get("/health").status_code == 200 and vllm.http.get("/health").content == b""
    assert vllm.http.get("/ping").status_code == 200
    assert vllm.http.get("/version").json() == {"version": "0.11.0"}
    listed = vllm.http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["qwen3-8b", "Qwen/Qwen3-8B"]
    first = listed["data"][0]
    assert (first["owned_by"], first["root"], first["max_model_len"], first["parent"]) == (
        "vllm", "Qwen/Qwen3-8B", 2048, None)
    assert first["permission"][0]["object"] == "model_permission"
    plain = bare.http.get("/v1/models").json()["data"]
    assert [(m["id"], m["root"], m["max_model_len"]) for m in plain] == [("Qwen/Qwen3-8B", "Qwen/Qwen3-8B", 40960)]
    assert bare.http.get("/health").headers["server"] == "uvicorn"


def test_an_api_key_guards_every_v1_path(vllm, bare):
    unauthorized = {"error": "Unauthorized"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}):
        r = vllm.http.post("/v1/chat/completions", json={"messages": []}, headers=headers)
        assert (r.status_code, r.json()) == (401, unauthorized)
        assert vllm.http.get("/v1/models", headers=headers).json() == unauthorized
        assert vllm.http.get("/v1/nothing", headers=headers).status_code == 401  # the middleware comes first
    assert chat(vllm, key=None, text="hi").status_code == 401
    lower = vllm.http.post("/v1/chat/completions", json={"model": "qwen3-8b", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"Authorization": f"bearer {KEY}"})
    assert lower.status_code == 200  # the scheme in any case
    assert vllm.http.get("/health").status_code == 200  # outside /v1: no key needed
    assert chat(bare, key=None).status_code == 200  # started without --api-key: none needed


def test_no_dashscope_behaviour(vllm):
    auth = {"Authorization": f"Bearer {KEY}"}
    for path in ("/compatible-mode/v1/chat/completions", "/apps/anthropic/v1/messages", "/api/v1/oauth2/device/code",
                 "/v1/responses", "/compatible-mode/v1/batches", "/v1/embeddings"):
        r = vllm.http.post(path, json={"model": "qwen3-8b", "messages": [], "input": "x"}, headers=auth)
        assert (r.status_code, r.json()) == (404, {"detail": "Not Found"}), path
    r = chat(vllm)
    assert not [h for h in r.headers if h.lower().startswith("x-dashscope")] and "request_id" not in r.json()
    wrong = vllm.http.get("/v1/chat/completions", headers=auth)
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})


def test_an_unknown_model_is_404_and_the_first_name_answers(vllm):
    r = chat(vllm, model="qwen-max")
    assert (r.status_code, r.json()) == (404, {"error": {"message": "The model `qwen-max` does not exist.",
                                                         "type": "NotFoundError", "param": None, "code": 404}})
    assert chat(vllm, model="Qwen/Qwen3-8B").json()["model"] == "qwen3-8b"  # model_name: the first served name
    assert chat(vllm, model=None).status_code == 200  # no model: the served one


def test_request_rules_in_vllms_words(vllm):
    msgs = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "Echo: hel"}]
    body = {"model": "qwen3-8b", "messages": msgs, "continue_final_message": True, "add_generation_prompt": True}
    r = vllm.http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert (r.status_code, r.json()) == (400, invalid(body, "Cannot set both `continue_final_message` and "
                                                            "`add_generation_prompt` to True."))
    body = {"model": "qwen3-8b", "messages": msgs[:1], "stream_options": {"include_usage": True}}
    r = vllm.http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.json() == invalid(body, "Stream options can only be defined when `stream=True`.")
    body = {"model": "qwen3-8b", "messages": msgs[:1], "tool_choice": "required"}
    r = vllm.http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.json() == invalid(body, "When using `tool_choice`, `tools` must be set.")
    missing = vllm.http.post("/v1/chat/completions", json={"model": "qwen3-8b"},
                             headers={"Authorization": f"Bearer {KEY}"}).json()["error"]
    assert missing["message"] == str([{"type": "missing", "loc": ("body", "messages"), "msg": "Field required",
                                       "input": {"model": "qwen3-8b"}}]) and missing["type"] == "Bad Request"
    form = vllm.http.post("/v1/chat/completions", content=b'{"messages": []}',
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"})
    assert form.json()["error"]["message"] == str(["Unsupported Media Type: Only 'application/json' is allowed"])
    broken = vllm.http.post("/v1/chat/completions", content=b'{"messages":',
                            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert broken.json()["error"]["message"] == str([{"type": "json_invalid", "loc": ("body", 12), "msg": (
        "JSON decode error"), "input": {}, "ctx": {"error": "Expecting value"}}])


def test_context_length_refusals_and_usage(vllm):
    small = chat(vllm).json()["usage"]
    assert small["total_tokens"] == small["prompt_tokens"] + small["completion_tokens"]
    assert chat(vllm).json()["usage"] == small  # deterministic
    n = small["prompt_tokens"]
    r = chat(vllm, max_tokens=2049 - n)
    assert (r.status_code, r.json()) == (400, bad_request(
        f"'max_tokens' or 'max_completion_tokens' is too large: {2049 - n}. This model's maximum context length is "
        f"2048 tokens and your request has {n} input tokens ({2049 - n} > 2048 - {n}). None"))
    assert chat(vllm, max_tokens=2048 - n).status_code == 200
    assert chat(vllm, max_tokens=10**6, max_completion_tokens=16).status_code == 200  # max_completion_tokens first
    # the prompt as Qwen3's template renders it, four characters a token: 50 characters of ChatML around the text
    assert n == -(-(50 + len("hello world")) // 4)
    long = chat(vllm, text="word " * 2000)
    assert (long.status_code, long.json()) == (400, bad_request(
        "This model's maximum context length is 2048 tokens. However, your request has 2513 input tokens. Please "
        "reduce the length of the input messages. None"))


def test_reasoning_qwen3_thinks_by_default_and_chat_template_kwargs_turn_it_off(vllm, bare):
    thought = message(chat(vllm))
    assert (thought["reasoning_content"], thought["content"]) == ("\nThinking about it.\n", "\n\nEcho: hello world")
    plain = message(chat(vllm, chat_template_kwargs={"enable_thinking": False}))
    assert (plain["reasoning_content"], plain["content"]) == (None, "Echo: hello world")
    # DashScope's own knobs are fields vLLM ignores: the model still thinks
    assert message(chat(vllm, enable_thinking=False, thinking_budget=10))["reasoning_content"]
    assert message(chat(vllm, include_reasoning=False))["reasoning_content"] is None
    # without --reasoning-parser the markers stay in the content
    raw = message(chat(bare))
    assert raw["content"] == "<think>\nThinking about it.\n</think>\n\nEcho: hello world"
    assert raw["reasoning_content"] is None
    vllm.switches(vllm_reasoning_field="reasoning")  # the name later releases use
    later = message(chat(vllm))
    assert later["reasoning"] == "\nThinking about it.\n" and "reasoning_content" not in later
    vllm.switches(vllm_reasoning_field="both")
    assert message(chat(vllm))["reasoning_content"] == message(chat(vllm))["reasoning"]
    with pytest.raises(httpx.HTTPStatusError):
        vllm.switches(vllm_reasoning_field="thoughts")


def test_continue_final_message_goes_on_from_the_text_so_far(vllm):
    msgs = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "Echo: hel"}]
    r = chat(vllm, messages=msgs, continue_final_message=True, add_generation_prompt=False,
             chat_template_kwargs={"enable_thinking": True})
    got = message(r)
    assert (got["role"], got["content"], got["reasoning_content"]) == ("assistant", "lo world", None)
    assert r.json()["usage"]["prompt_tokens"] > chat(vllm).json()["usage"]["prompt_tokens"]
    after_tool = [{"role": "user", "content": "call get_weather"}, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}, {"role": "assistant", "content": "Tool sa"}]
    assert message(chat(vllm, messages=after_tool, continue_final_message=True, add_generation_prompt=False,
                        tools=TOOLS))["content"] == "id: sunny"
    # add_generation_prompt left at its default (true): transformers refuses, its text twice (e and e.__cause__)
    twice = ("continue_final_message and add_generation_prompt are not compatible. Use continue_final_message when "
             "you want the model to continue the final message, and add_generation_prompt when you want to add a "
             "header that will prompt it to start a new assistant message instead.")
    r = chat(vllm, messages=msgs, continue_final_message=True)
    assert (r.status_code, r.json()) == (400, bad_request(f"{twice} {twice}"))
    # a final message that is not the assistant's is continued too (transformers cuts the prompt after it): no 400,
    # and the answer's role is that message's (serving_chat.get_chat_request_role)
    user_last = message(chat(vllm, continue_final_message=True, add_generation_prompt=False))
    assert user_last["role"] == "user" and user_last["content"] == "Echo: hello world"


def test_unknown_and_dashscope_fields_are_ignored_and_logged(vllm):
    base = message(chat(vllm))
    extra = {"enable_thinking": False, "thinking_budget": 10, "vl_high_resolution_images": True, "enable_search": True,
             "frobnicate": 1}
    assert message(chat(vllm, **extra)) == base
    entry = [e for e in vllm.chat_requests() if e["body"].get("frobnicate")][-1]
    assert entry["ignored_fields"] == sorted(extra) and entry["body"]["thinking_budget"] == 10
    known = vllm.chat_requests()[0]
    assert "ignored_fields" not in known  # nothing ignored: no entry


def test_tool_choice_as_vllm_handles_it(vllm, bare):
    auto = chat(bare, tools=TOOLS, text="call get_weather")  # tools given: tool_choice defaults to "auto"
    assert (auto.status_code, auto.json()) == (400, bad_request(AUTO))
    assert chat(bare, tools=TOOLS, tool_choice="auto").json() == bad_request(AUTO)
    assert message(chat(bare, tools=TOOLS, tool_choice="none", text="call get_weather"))["tool_calls"] == []
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = chat(bare, tools=TOOLS, tool_choice=choice, chat_template_kwargs={"enable_thinking": False})
        got = message(r)
        assert got["content"] == "" and r.json()["choices"][0]["finish_reason"] == "stop"  # as v0.11.0 says it
        call = got["tool_calls"][0]
        assert call["id"].startswith("chatcmpl-tool-") and len(call["id"]) == len("chatcmpl-tool-") + 32
        assert (call["type"], call["function"]["name"], call["function"]["arguments"]) == (
            "function", "get_weather", '{"location": "Paris"}')
    r = chat(vllm, tools=TOOLS, text="call get_weather")  # auto, the prompt names the tool: hermes' call
    got = message(r)
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls" and got["content"] == "\n\n"
    assert got["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"location": "Paris"}'}
    assert got["reasoning_content"] == "\nThinking about it.\n"
    words = chat(vllm, tools=TOOLS, text="hello there", chat_template_kwargs={"enable_thinking": False})
    assert message(words)["content"] == "Echo: hello there" and message(words)["tool_calls"] == []
    results = [{"role": "user", "content": "call get_weather"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    assert message(chat(vllm, messages=results, tools=TOOLS, chat_template_kwargs={"enable_thinking": False}))[
        "content"] == "Tool said: sunny"
    unmatched = {"type": "function", "function": {"name": "nope"}}
    assert "does not match any of the specified `tools`" in chat(
        vllm, tools=TOOLS, tool_choice=unmatched).json()["error"]["message"]


def test_max_tokens_cut_the_answer_with_finish_reason_length(vllm):
    r = chat(vllm, max_tokens=3, chat_template_kwargs={"enable_thinking": False}, text="one two three four")
    assert r.json()["choices"][0]["finish_reason"] == "length" and message(r)["content"] == "Echo: one two"
    assert r.json()["usage"]["completion_tokens"] == 3
    whole = chat(vllm, max_completion_tokens=50, chat_template_kwargs={"enable_thinking": False})
    assert whole.json()["choices"][0]["finish_reason"] == "stop"
    assert whole.json()["usage"]["completion_tokens"] == 4  # Echo:, hello, world and the EOS token
    # cut inside the thinking: no </think>, so v0.11.0's qwen3 parser gives it all back as content
    cut = message(chat(vllm, max_tokens=3))
    assert (cut["reasoning_content"], cut["content"]) == (None, "<think>\nThinking")
    stopped = chat(vllm, stop=["world"], chat_template_kwargs={"enable_thinking": False})
    assert message(stopped)["content"] == "Echo: hello " and stopped.json()["choices"][0]["stop_reason"] == "world"


def test_the_dashscope_mode_is_unchanged(tmp_path):
    emu = start_emulator(tmp_path, "--api-key", KEY)
    try:
        r = emu.http.post("/compatible-mode/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "coder-model", "messages": [{"role": "user", "content": "hello world"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Echo: hello world"
        assert "request_id" not in r.json() and r.json()["object"] == "chat.completion"
        models = emu.http.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
        assert models and {m["owned_by"] for m in models} == {"qwen"}
        denied = emu.http.get("/v1/models", headers={"Authorization": "Bearer nope"}).json()
        assert denied["error"]["code"] == "invalid_api_key"
        assert emu.http.get("/version").status_code == 404
    finally:
        emu.stop()
