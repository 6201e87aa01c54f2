"""Qwen on the team's own server (issue 69, item 2): a key account naming the `selfhosted` provider, served by the
emulator playing vLLM 0.11.0 (`--serve vllm`, its reasoning parser for Qwen3 on), through a real mitmdump and read
by the real openai and anthropic SDKs — chat completions, the Responses API, the Messages API; thinking on (Qwen3's
default) and off (`chat_template_kwargs`); a stream cut mid-answer continued with `continue_final_message` from the
text the client already has. What the server got is exactly what vLLM documents: no DashScope field, no header of
Model Studio's."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.procs import Gateway, start_emulator, until
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_calls

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "sk-local-gpu"
MODEL = "Qwen/Qwen3-8B"
ASK = "say hello"
ANSWER = "Echo: say hello"


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("vllm"), "--serve", "vllm", "--api-key", KEY,
                         "--reasoning-parser", "qwen3")
    yield emu
    emu.stop()


@pytest.fixture
def gpu(vllm):
    vllm.reset()
    yield vllm
    vllm.reset()


def gateway(tmp_path: Path, server, make_gateway) -> tuple[Gateway, Path]:
    home = Home(tmp_path)
    home.selfhosted("gpu", server.url + "/v1", secret=KEY, default_model=MODEL)
    return make_gateway(env=home.env(), args=("--set", "qwen_debug_log=true")), home.state


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60,
                         http_client=httpx.Client(trust_env=False))


def sent(server) -> list[dict]:
    return [r for r in server.requests() if r["path"].endswith("/chat/completions")]


def record(state: Path) -> dict:
    files = until(lambda: sorted((state / "logs").glob("exchange-*.json")), "the debug log")
    return json.loads(files[-1].read_text())


def assert_as_vllm_documents(request: dict) -> None:
    """Only the fields vLLM's ChatCompletionRequest takes, the key as a bearer token, no Model Studio header."""
    body, headers = request["body"], {k.lower(): v for k, v in request["headers"].items()}
    assert body["model"] == MODEL
    assert not set(body) & {"enable_thinking", "thinking_budget", "enable_search", "vl_high_resolution_images",
                            "partial"}, body
    assert not request.get("ignored_fields"), request.get("ignored_fields")  # vLLM would have dropped them
    assert headers["authorization"] == f"Bearer {KEY}"
    assert not [h for h in headers if h.startswith("x-dashscope")], headers


def test_chat_thinking_on_by_default_and_off_when_asked(tmp_path, gpu, make_gateway):
    gw, state = gateway(tmp_path, gpu, make_gateway)
    on = client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ASK}])
    message = on.choices[0].message
    assert message.content == ANSWER and on.model == "gpt-4o"
    assert (message.model_extra or {}).get("reasoning_content")  # Qwen3 thinks unless told not to
    assert on.usage is not None and on.usage.prompt_tokens > 0
    off = client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ASK}],
                                             reasoning_effort="none")
    assert off.choices[0].message.content == ANSWER
    assert not (off.choices[0].message.model_extra or {}).get("reasoning_content")
    first, second = sent(gpu)
    for request in (first, second):
        assert_as_vllm_documents(request)
    assert "chat_template_kwargs" not in first["body"]  # the model's own default
    assert second["body"]["chat_template_kwargs"] == {"enable_thinking": False}
    summary = record(state)["summary"]
    assert summary["account"] == "gpu" and summary["status"] == 200


def test_a_stream_and_the_responses_api(tmp_path, gpu, make_gateway):
    gw, _ = gateway(tmp_path, gpu, make_gateway)
    chunks = list(client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ASK}],
                                                     stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert sent(gpu)[0]["body"]["stream_options"] == {"include_usage": True}
    answer = client(gw).responses.create(model="gpt-4o", input=ASK, reasoning={"effort": "none"})
    assert answer.output_text == ANSWER and answer.status == "completed"
    assert_as_vllm_documents(sent(gpu)[-1])
    assert sent(gpu)[-1]["body"]["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_messages_with_thinking_on_and_off(tmp_path, gpu, make_gateway):
    gw, _ = gateway(tmp_path, gpu, make_gateway)
    on, off = anthropic_calls(gw.url, "client-key", [
        {"op": "create", "params": {"model": "claude-sonnet-4-5", "max_tokens": 4000, "messages": [
            {"role": "user", "content": ASK}], "thinking": {"type": "enabled", "budget_tokens": 2000}}},
        {"op": "stream", "params": {"model": "claude-sonnet-4-5", "max_tokens": 400, "messages": [
            {"role": "user", "content": ASK}], "thinking": {"type": "disabled"}}}])
    assert "answer" in on and "answer" in off, (on, off)
    thought = on["answer"]
    assert [b["type"] for b in thought["content"]] == ["thinking", "text"] and thought["content"][1]["text"] == ANSWER
    streamed = off["answer"]
    assert streamed["text"] == ANSWER and [b["type"] for b in streamed["message"]["content"]] == ["text"]
    first, second = sent(gpu)
    assert first["body"]["chat_template_kwargs"] == {"enable_thinking": True}
    assert second["body"]["chat_template_kwargs"] == {"enable_thinking": False}
    for request in (first, second):
        assert_as_vllm_documents(request)


def test_a_stream_cut_mid_answer_is_continued_from_what_the_client_has(tmp_path, gpu, make_gateway):
    gw, state = gateway(tmp_path, gpu, make_gateway)
    gpu.fault("cut", inside='"content":" hel', how="fin")  # inside the last word's data line
    chunks = list(client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ASK}],
                                                     stream=True, reasoning_effort="none"))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"
    first, second = (r["body"] for r in sent(gpu))
    assert second["messages"][:-1] == first["messages"]
    prefix = second["messages"][-1]
    assert prefix["role"] == "assistant" and ANSWER.startswith(prefix["content"]) and prefix["content"]
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assert_as_vllm_documents(sent(gpu)[1])
    summary = until(lambda: (lambda s: s if s.get("retry_reasons") else None)(record(state)["summary"]), "the record")
    assert summary["retry_reasons"] == ["continued"] and summary["status"] == 200


def test_an_error_inside_the_servers_stream_reaches_the_client_as_an_error(tmp_path, gpu, make_gateway):
    """vLLM writes an exception inside a stream as `data: {"error": …}` then `[DONE]`: never a clean end."""
    gw, state = gateway(tmp_path, gpu, make_gateway)
    gpu.fault("midstream504", message="engine step failed")
    with pytest.raises(openai.APIError) as e:
        list(client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ASK}],
                                                stream=True, reasoning_effort="none"))
    assert "engine step failed" in str(e.value)
    summary = until(lambda: (lambda s: s if s.get("stream_error") else None)(record(state)["summary"]), "the record")
    assert "engine step failed" in summary["stream_error"]


def test_the_servers_400_is_logged_with_its_code_as_model_studios_is(tmp_path, gpu, make_gateway):
    """issue 82: a self-hosted server's 400 was logged without `error=CODE`; Model Studio's carry theirs. vLLM's
    body names its kind in `type` (`BadRequestError`) and the status in `code` (400): here, tool_choice "auto" on a
    server started without --enable-auto-tool-choice."""
    gw, _ = gateway(tmp_path, gpu, make_gateway)
    tool = {"type": "function", "function": {"name": "ls", "parameters": {"type": "object", "properties": {}}}}
    with pytest.raises(openai.BadRequestError) as refused:
        client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": ASK}],
                                           tools=[tool], tool_choice="auto")
    assert "enable-auto-tool-choice" in str(refused.value)
    line = until(lambda: [ln for ln in gw.log().splitlines() if "POST /v1/chat/completions" in ln], "the line")[-1]
    assert " 400 " in line and " error=BadRequestError " in line and "tool choice requires" in line, line
