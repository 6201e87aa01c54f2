"""The emulator's SGLang mode (`qwen_emulator.py --serve sglang`, scripts/emulator/sglang.py), over real HTTP: flat
errors, `reasoning_content`, SGLang's two context wordings, usage (include_usage off by default, cached tokens only
with --enable-cache-report and above 0), /v1/models, /health, /metrics (only with --enable-metrics), the thinking
budget (a hard cap only with --enable-strict-thinking), finish "abort", and the fields it ignores."""

from __future__ import annotations

import pytest

from emulation.test_emulator_vllm_2026 import events, joined, message
from helpers.procs import start_emulator

pytestmark = pytest.mark.e2e  # starts emulator processes

FULL = ("--serve", "sglang", "--model-path", "Qwen/Qwen3-8B", "--served-model-name", "qwen3-8b", "--context-length",
        "2048", "--reasoning-parser", "qwen3", "--enable-cache-report", "--enable-metrics", "--enable-strict-thinking")
THINK_OFF = {"chat_template_kwargs": {"enable_thinking": False}}


@pytest.fixture(scope="module")
def sg(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("sglang"), *FULL)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("sglang-bare"), "--serve", "sglang", "--served-model-name", "qwen3-8b",
                         "--reasoning-parser", "qwen3")
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def fresh(request):
    for name in ("sg", "bare"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def chat(emu, text: str = "hello world", **body):
    return emu.http.post("/v1/chat/completions", json={"model": "qwen3-8b", "messages": [
        {"role": "user", "content": text}], **body})


def test_reasoning_content_and_the_answers_shape(sg):
    r = chat(sg)
    got = message(r)
    assert (got["reasoning_content"], got["content"]) == ("\nThinking about it.\n", "\n\nEcho: hello world")
    assert "reasoning" not in got and r.json()["usage"]["reasoning_tokens"] == 5
    cut = chat(sg, max_tokens=3)
    assert (message(cut)["reasoning_content"], message(cut)["content"]) == ("\nThinking", None)
    assert cut.json()["choices"][0]["finish_reason"] == "length"
    evs = events(chat(sg, stream=True))
    assert joined(evs, "reasoning_content") == "\nThinking about it.\n" and joined(evs, "reasoning") == ""
    assert not any("usage" in e for e in evs if isinstance(e, dict))
    evs = events(chat(sg, stream=True, stream_options={}))  # include_usage defaults to false in SGLang
    assert not any(e.get("usage") for e in evs if isinstance(e, dict))
    evs = events(chat(sg, stream=True, stream_options={"include_usage": True}))
    assert evs[-2]["choices"] == [] and evs[-2]["usage"]["completion_tokens"] > 0


def test_flat_errors_and_the_context_wordings(sg):
    r = sg.http.post("/v1/chat/completions", json={"model": "default", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and r.json()["model"] == "default"  # SGLang serves any model name, echoing it
    n = chat(sg, **THINK_OFF).json()["usage"]["prompt_tokens"]
    r = chat(sg, max_tokens=2048 - n, **THINK_OFF)  # a total equal to the length is refused too
    assert (r.status_code, r.json()) == (400, {"object": "error", "message": (
        f"Requested token count exceeds the model's maximum context length of 2048 tokens. You requested a total "
        f"of 2048 tokens: {n} tokens from the input messages and {2048 - n} tokens for the completion. Please reduce "
        "the number of tokens in the input messages or the completion to fit within the limit."),
        "type": "BadRequest", "param": None, "code": 400})
    long = chat(sg, text="word " * 2000)
    assert long.json()["message"] == "The input (2513 tokens) is longer than the model's context length (2048 tokens)."


def test_cached_tokens_only_with_cache_report_and_above_zero(sg, bare):
    text = "a long enough prompt " * 20
    assert chat(sg, text).json()["usage"]["prompt_tokens_details"] is None  # 0 cached: null
    assert chat(sg, text).json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    chat(bare, text)
    assert chat(bare, text).json()["usage"]["prompt_tokens_details"] is None


def test_models_health_and_metrics(sg, bare):
    data = sg.http.get("/v1/models").json()["data"]
    assert [(m["id"], m["owned_by"], m["root"], m["max_model_len"]) for m in data] == [
        ("qwen3-8b", "sglang", "Qwen/Qwen3-8B", 2048)]
    assert sg.http.get("/health").status_code == 200
    text = sg.http.get("/metrics").text
    for name in ("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage"):
        assert f'{name}{{model_name="qwen3-8b"}} 0.0' in text
    assert bare.http.get("/metrics").status_code == 404  # without --enable-metrics
    sg.admin("POST", "engine", {"dead": True})
    assert sg.http.get("/health").status_code == 503
    sg.admin("POST", "engine", {"dead": False})


def test_thinking_budget_is_a_template_kwarg_enforced_only_when_strict(sg, bare):
    for emu in (sg, bare):
        emu.switches(reasoning_tokens=40)
    capped = chat(sg, chat_template_kwargs={"thinking_budget": 4})
    assert capped.json()["usage"]["reasoning_tokens"] == 4
    free = chat(bare, chat_template_kwargs={"thinking_budget": 4})
    assert len(message(free)["reasoning_content"]) == len(message(chat(bare))["reasoning_content"])
    assert chat(sg, thinking_token_budget=4).json()["usage"]["reasoning_tokens"] > 4  # vLLM's field: ignored
    assert sg.chat_requests()[-1]["ignored_fields"] == ["thinking_token_budget"]


def test_finish_abort(sg):
    sg.fault("finish_abort")
    r = chat(sg, text="one two three four five six", **THINK_OFF)
    assert r.json()["choices"][0]["finish_reason"] == "abort"
    sg.fault("finish_abort")
    evs = events(chat(sg, text="one two three four five six", stream=True, **THINK_OFF))
    assert evs[-2]["choices"][0]["finish_reason"] == "abort"
