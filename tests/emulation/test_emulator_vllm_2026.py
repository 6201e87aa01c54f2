"""The emulator's vLLM mode as the 2026 releases answer (`--vllm-version 0.20.0`, `0.30.0`), over real HTTP: the
`reasoning` field, a thinking answer cut before `</think>`, the 2026 context wordings, /v1/models, the thinking budget
(`--reasoning-config`), `cache_salt`, /health (503 when the engine is dead), /metrics, queueing (`--max-num-seqs`,
`--token-delay`, /_emulator/speed) and the engine's own finish reasons (finish_* faults). The Qwen3.6 template and
the tool parsers: test_emulator_vllm_qwen36.py; v0.11.0, the default: test_emulator_vllm.py."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from helpers.procs import start_emulator, until

pytestmark = pytest.mark.e2e  # starts emulator processes

KEY = "sk-vllm-2026"
AUTH = {"Authorization": f"Bearer {KEY}"}
BUDGETED = '{"reasoning_start_str": "<think>", "reasoning_end_str": "</think>"}'
V20 = ("--serve", "vllm", "--vllm-version", "0.20.0", "--api-key", KEY, "--served-model-name", "qwen3-8b",
       "--max-model-len", "2048", "--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser",
       "hermes", "--enable-prompt-tokens-details", "--reasoning-config", BUDGETED, "--max-num-seqs", "1")
V30 = ("--serve", "vllm", "--vllm-version", "0.30.0", "--served-model-name", "qwen3-8b", "--max-model-len", "2048",
       "--reasoning-parser", "qwen3")
THINK_OFF = {"chat_template_kwargs": {"enable_thinking": False}}


@pytest.fixture(scope="module")
def v20(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("vllm20"), *V20)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def v30(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("vllm30"), *V30)
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def fresh(request):
    for name in ("v20", "v30"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def chat(emu, text: str = "hello world", **body) -> httpx.Response:
    body = {"model": "qwen3-8b", "messages": [{"role": "user", "content": text}], **body}
    return emu.http.post("/v1/chat/completions", json=body, headers=AUTH)


def message(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]


def events(r: httpx.Response) -> list:
    assert r.status_code == 200, r.text
    return [b[6:] if b[6:] == "[DONE]" else json.loads(b[6:]) for b in r.text.split("\n\n") if b]


def joined(evs: list, key: str) -> str:
    return "".join(e["choices"][0]["delta"].get(key) or "" for e in evs if isinstance(e, dict) and e.get("choices"))


def metric(emu, name: str) -> float:
    text = emu.http.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith(name + "{"))
    assert 'model_name="qwen3-8b"' in line, line
    return float(line.rsplit(" ", 1)[1])


def test_reasoning_is_sent_as_reasoning_never_reasoning_content(v20):
    got = message(chat(v20))
    assert (got["reasoning"], got["content"]) == ("\nThinking about it.\n", "\n\nEcho: hello world")
    assert "reasoning_content" not in got
    v20.switches(vllm_reasoning_field="reasoning_content")  # the v0.11 switch cannot bring the removed field back
    assert "reasoning_content" not in message(chat(v20))
    evs = events(chat(v20, stream=True))
    assert joined(evs, "reasoning") == "\nThinking about it.\n" and joined(evs, "reasoning_content") == ""
    assert joined(evs, "content") == "\n\nEcho: hello world"
    assert chat(v20).json()["usage"]["completion_tokens_details"] == {"reasoning_tokens": 5}


def test_a_thinking_answer_cut_before_think_end_is_all_reasoning(v20):
    r = chat(v20, max_tokens=3)
    got = message(r)
    assert (got["reasoning"], got["content"], r.json()["choices"][0]["finish_reason"]) == ("\nThinking", None,
                                                                                            "length")
    evs = events(chat(v20, max_tokens=3, stream=True))
    assert joined(evs, "reasoning") == "\nThinking" and joined(evs, "content") == ""
    assert evs[-2]["choices"][0]["finish_reason"] == "length"


def test_context_refusals_in_2026_words_and_no_clamp(v20, v30):
    n = chat(v20, **THINK_OFF).json()["usage"]["prompt_tokens"]
    r = chat(v20, max_tokens=2049 - n, **THINK_OFF)
    assert (r.status_code, r.json()) == (400, {"error": {"message": (
        f"This model's maximum context length is 2048 tokens. However, you requested {2049 - n} output tokens and "
        f"your prompt contains at least {n} input tokens, for a total of at least 2049 tokens. Please reduce the "
        f"length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value={n})"),
        "type": "BadRequestError", "param": "input_tokens", "code": 400}})
    assert chat(v20, max_tokens=2048 - n, **THINK_OFF).status_code == 200  # it fits: not clamped, served
    long = chat(v20, text="word " * 2000)
    assert long.json()["error"]["message"] == (
        "This model's maximum context length is 2048 tokens. However, your request has 2513 input tokens. Please "
        "reduce the length of the input messages. (parameter=input_tokens, value=2513)")
    over = chat(v30, text="word " * 2000)
    assert (over.status_code, over.json()) == (400, {"error": {
        "message": "Input length (2513) exceeds model's maximum context length (2048).", "type": "BadRequestError",
        "param": None, "code": 400}})
    assert chat(v30, max_tokens=2049 - n, **THINK_OFF).json()["error"]["message"].startswith(
        f"This model's maximum context length is 2048 tokens. However, you requested {2049 - n} output tokens")


def test_models_health_version_and_the_dead_engine(v20):
    listed = v20.http.get("/v1/models", headers=AUTH).json()["data"]
    assert [(m["id"], m["owned_by"], m["root"], m["max_model_len"]) for m in listed] == [
        ("qwen3-8b", "vllm", "Qwen/Qwen3-8B", 2048)]
    assert v20.http.get("/version").json() == {"version": "0.20.0"}
    assert v20.http.get("/health").status_code == 200
    v20.admin("POST", "engine", {"dead": True})
    assert v20.http.get("/health").status_code == 503
    r = chat(v20)
    assert (r.status_code, r.json()["error"]["type"], r.json()["error"]["code"]) == (500, "InternalServerError", 500)
    v20.admin("POST", "engine", {"dead": False})
    assert v20.http.get("/health").status_code == 200 and chat(v20).status_code == 200


def test_thinking_token_budget_only_with_reasoning_config(v20, v30):
    v20.switches(reasoning_tokens=40)
    v30.switches(reasoning_tokens=40)
    capped = chat(v20, thinking_token_budget=4)
    assert capped.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4
    assert message(capped)["content"] == "\n\nEcho: hello world"
    assert "thinking_token_budget" not in (v20.chat_requests()[-1].get("ignored_fields") or [])
    assert len(message(chat(v20))["reasoning"]) > len(message(capped)["reasoning"])
    free = chat(v30, thinking_token_budget=4)  # started without --reasoning-config: the budget does nothing
    assert len(message(free)["reasoning"]) == len(message(chat(v30))["reasoning"])


def test_cache_salt_keys_the_prefix_cache_and_details_need_the_flag(v20, v30):
    text = "a long enough prompt " * 20
    assert chat(v20, text, cache_salt="alice").json()["usage"]["prompt_tokens_details"] is None
    hit = chat(v20, text, cache_salt="alice").json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert hit > 0 and hit % 16 == 0
    assert chat(v20, text, cache_salt="bob").json()["usage"]["prompt_tokens_details"] is None  # another tenant
    assert chat(v20, text).json()["usage"]["prompt_tokens_details"] is None  # no salt: another key again
    chat(v30, text)
    assert chat(v30, text).json()["usage"]["prompt_tokens_details"] is None  # hit, but not reported
    assert metric(v30, "vllm:prefix_cache_hits_total") > 0


def test_metrics_in_prometheus_text(v20):
    r = v20.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in r.text
        assert metric(v20, name) == 0
    text = "a long enough prompt " * 20
    chat(v20, text)
    chat(v20, text)
    assert metric(v20, "vllm:prefix_cache_queries_total") > metric(v20, "vllm:prefix_cache_hits_total") > 0
    assert 0 < metric(v20, "vllm:kv_cache_usage_perc") <= 1


def test_requests_over_max_num_seqs_queue_never_429(v20):
    v20.admin("POST", "speed", {"token_delay": 0.3})
    got: list[int] = []

    def one() -> None:
        with httpx.Client(base_url=v20.url, timeout=60, trust_env=False) as c:
            got.append(c.post("/v1/chat/completions", headers=AUTH, json={
                "model": "qwen3-8b", "messages": [{"role": "user", "content": "hi"}], "stream": True}).status_code)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    until(lambda: metric(v20, "vllm:num_requests_waiting") == 2, "two requests waiting")
    assert metric(v20, "vllm:num_requests_running") == 1
    for t in threads:
        t.join(120)
    assert got == [200, 200, 200]
    assert metric(v20, "vllm:num_requests_waiting") == 0 == metric(v20, "vllm:num_requests_running")
    v20.admin("POST", "speed", {"token_delay": 0})


@pytest.mark.parametrize("reason", ["abort", "repetition"])
def test_finish_faults_end_an_answer_with_the_engines_reason(v20, reason):
    v20.fault(f"finish_{reason}")
    r = chat(v20, text="one two three four five six", **THINK_OFF)
    assert r.json()["choices"][0]["finish_reason"] == reason
    assert message(r)["content"] and message(r)["content"] != "Echo: one two three four five six"
    v20.fault(f"finish_{reason}")
    evs = events(chat(v20, text="one two three four five six", stream=True, **THINK_OFF))
    assert evs[-2]["choices"][0]["finish_reason"] == reason and evs[-1] == "[DONE]"
    assert 0 < len(joined(evs, "content")) < len("Echo: one two three four five six")


def test_finish_error_is_vllms_generation_error(v20):
    v20.fault("finish_error")
    r = chat(v20, **THINK_OFF)
    assert (r.status_code, r.json()) == (500, {"error": {"message": "Internal server error",
                                                         "type": "InternalServerError", "param": None, "code": 500}})
    v20.fault("finish_error")
    evs = events(chat(v20, text="one two three four five six", stream=True, **THINK_OFF))
    assert evs[-2] == {"error": {"message": "Internal server error", "type": "InternalServerError", "param": None,
                                 "code": 500}} and evs[-1] == "[DONE]"
    assert joined(evs, "content")  # part of the answer came first


def test_ignored_fields_and_chat_template_kwargs_in_2026(v20):
    plain = message(chat(v20, **THINK_OFF))
    assert (plain["reasoning"], plain["content"]) == (None, "Echo: hello world")
    chat(v20, thinking_token_budget=3, cache_salt="s", enable_thinking=False, thinking_budget=3, frobnicate=1)
    assert v20.chat_requests()[-1]["ignored_fields"] == ["enable_thinking", "frobnicate", "thinking_budget"]
    assert message(chat(v20, enable_thinking=False))["reasoning"]  # DashScope's knob: ignored, the model thinks


def test_finish_error_is_plain_in_v0_11(tmp_path):
    """v0.11.0 (the default) had no GenerationError yet: the engine's "error" finish reached the client as it was."""
    emu = start_emulator(tmp_path, "--serve", "vllm")
    try:
        emu.fault("finish_error")
        r = emu.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "one two three"}],
                                                        **THINK_OFF})
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "error"
        emu.fault("finish_abort")
        evs = events(emu.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "a b c"}],
                                                                 "stream": True, **THINK_OFF}))
        assert evs[-2]["choices"][0]["finish_reason"] == "abort"
    finally:
        emu.stop()
