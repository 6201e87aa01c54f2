"""Issue 23, chat and embeddings items, end to end: openai-python (and raw HTTP where the shape is the point)
-> a real mitmdump -> the strict emulator, which refuses what DashScope refuses.

Item 2: stream-only models answer whole requests (table and learned); item 3: embedding sizes; item 4:
legacy functions, allowed_tools, custom tools, refused parts, images in tool messages, clamped ranges,
logit_bias; item 5: audio and predicted outputs refused."""

from __future__ import annotations

import json

import httpx
import pytest

from e2e.test_e2e_rules import client, sent
from helpers.home import Home

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "x"}]
WEATHER = {"name": "get_weather", "description": "Weather for a place", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}
TOOLS = [{"type": "function", "function": WEATHER},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def post(gw, path: str, body: dict, **headers) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers=headers, trust_env=False, timeout=30)


@pytest.fixture
def fresh_gw(make_gateway, emu, tmp_path):
    """A gateway with its own key account and state, so that nothing learned earlier carries over."""
    home = Home(tmp_path, emu)
    home.key("own", embeddings=True, default_model="qwen3-coder-plus")
    return make_gateway("fresh", env=home.env())


# ---- item 2: stream-only models --------------------------------------------------------------------------


def test_a_stream_only_model_answers_a_whole_chat_request(gw, emu):
    c = client(gw).chat.completions.create(model="qwen3-next-80b-a3b-thinking", messages=USER)
    assert c.choices[0].message.content == "Echo: x" and c.choices[0].finish_reason == "stop"
    assert c.model == "qwen3-next-80b-a3b-thinking" and c.object == "chat.completion"
    assert c.choices[0].message.model_extra["reasoning_content"]  # always thinks
    assert c.usage.prompt_tokens > 0 and c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    body = sent(emu)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert len(emu.chat_requests()) == 1  # from the table: right the first time


def test_a_stream_only_models_tool_calls_arrive_whole(gw, emu):
    emu.switches(tool_calls="always", tool_index_collision=True, tool_calls_count=2)
    c = client(gw).chat.completions.create(model="qwen3-235b-a22b-thinking-2507", messages=USER, tools=TOOLS)
    calls = c.choices[0].message.tool_calls
    assert c.choices[0].finish_reason == "tool_calls" and len(calls) == 2 and len({t.id for t in calls}) == 2
    assert json.loads(calls[0].function.arguments) == {"location": "Paris"}


def test_every_client_api_gets_a_whole_answer_from_a_stream_only_model(gw, emu):
    r = client(gw).responses.create(model="qwen3-next-80b-a3b-thinking", input="y")
    assert r.output_text == "Echo: y" and r.status == "completed"
    legacy = client(gw).completions.create(model="qwen3-next-80b-a3b-thinking", prompt="z")
    assert legacy.choices[0].text == "Echo: z"
    m = post(gw, "/v1/messages", {"model": "qwen3-next-80b-a3b-thinking", "max_tokens": 100,
                                  "messages": [{"role": "user", "content": "w"}]},
             **{"anthropic-version": "2023-06-01"})
    assert m.status_code == 200, m.text
    assert [b["text"] for b in m.json()["content"] if b["type"] == "text"] == ["Echo: w"]
    assert all(r["body"]["stream"] is True for r in emu.chat_requests())


def test_an_unknown_stream_only_model_is_learned_from_its_400(fresh_gw, emu):
    emu.switches(stream_only_models=["qwen3-coder-flash"])
    c = client(fresh_gw).chat.completions.create(model="qwen3-coder-flash", messages=USER)
    assert c.choices[0].message.content == "Echo: x"
    first, second = [r["body"] for r in emu.chat_requests()]
    assert "stream" not in first and second["stream"] is True
    client(fresh_gw).chat.completions.create(model="qwen3-coder-flash", messages=USER)
    assert len(emu.chat_requests()) == 3 and sent(emu)["stream"] is True  # learned: right the first time


def test_a_stream_only_models_error_inside_the_stream_is_the_clients_error(gw, emu):
    import openai
    emu.fault("error_finish")
    with pytest.raises(openai.RateLimitError):
        client(gw).chat.completions.create(model="qwen3-next-80b-a3b-thinking", messages=USER)


# ---- item 3: embedding sizes -----------------------------------------------------------------------------


def test_openai_embedding_models_get_their_own_size(fresh_gw, emu):
    c = client(fresh_gw)
    for model in ("text-embedding-3-small", "text-embedding-ada-002"):
        r = c.embeddings.create(model=model, input=["a vector store", "of 1536"])  # base64, the SDK's default
        assert [len(d.embedding) for d in r.data] == [1536, 1536] and r.model == model
    floats = c.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    assert len(floats.data[0].embedding) == 1536
    assert c.embeddings.create(model="text-embedding-3-small", input="x", dimensions=256).data[0].embedding.__len__() \
        == 256
    bodies = [r["body"] for r in emu.requests() if r["path"].endswith("/embeddings")]
    assert [b.get("dimensions") for b in bodies] == [1536, 1536, 1536, 256]
    assert {b["model"] for b in bodies} == {"text-embedding-v4"}


@pytest.mark.parametrize("extra", [{"model": "text-embedding-3-large"},
                                   {"model": "text-embedding-3-small", "dimensions": 3000}])
def test_a_size_no_qwen_model_offers_is_a_400_naming_the_sizes(fresh_gw, emu, extra):
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        client(fresh_gw).embeddings.create(input="x", **extra)
    assert e.value.body["param"] == "dimensions" and e.value.body["code"] == "unsupported_value"
    assert "2048, 1536, 1024" in e.value.body["message"]
    assert not [r for r in emu.requests() if r["path"].endswith("/embeddings")]


# ---- item 4: legacy functions (the raw shape a legacy client reads) --------------------------------------


LEGACY = {"model": "gpt-4o", "messages": USER, "functions": [WEATHER], "function_call": "auto"}


def test_legacy_functions_answer_function_call(gw, emu):
    emu.switches(tool_calls="always")  # a call of the offered function, whatever the prompt (docs/emulator.md)
    r = post(gw, "/v1/chat/completions", LEGACY)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "function_call" and "tool_calls" not in choice["message"]
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": '{"location": "Paris"}'}
    body = sent(emu)
    assert "functions" not in body and body["tools"][0]["function"]["name"] == "get_weather"
    # the client's next turn, in the legacy shape
    turn2 = {**LEGACY, "messages": [*USER, choice["message"], {"role": "function", "name": "get_weather",
                                                               "content": "sunny"}]}
    r = post(gw, "/v1/chat/completions", turn2)
    assert r.json()["choices"][0]["message"]["content"] == "Tool said: sunny"
    msgs = sent(emu)["messages"]
    assert msgs[-1]["role"] == "tool" and msgs[-1]["tool_call_id"] == msgs[-2]["tool_calls"][0]["id"]


def test_legacy_functions_stream_function_call_deltas(gw, emu):
    emu.switches(tool_calls="always")
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json={**LEGACY, "stream": True}, trust_env=False,
                      timeout=30) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert not any("tool_calls" in d for d in deltas)
    assert "".join(d.get("function_call", {}).get("arguments", "") for d in deltas) == '{"location": "Paris"}'
    assert [d["function_call"]["name"] for d in deltas if d.get("function_call", {}).get("name")] == ["get_weather"]
    assert events[-1]["choices"][0]["finish_reason"] == "function_call"


def test_legacy_functions_with_openai_python(gw, emu):
    emu.switches(tool_calls="always")
    c = client(gw).chat.completions.create(model="gpt-4o", messages=USER, functions=[WEATHER])
    assert c.choices[0].message.function_call.name == "get_weather" and not c.choices[0].message.tool_calls


# ---- item 4: allowed_tools, custom tools ------------------------------------------------------------------


def test_allowed_tools_sends_only_the_listed_tools(gw, emu):
    c = client(gw).chat.completions.create(model="qwen3-coder-plus", messages=USER, tools=TOOLS, tool_choice={
        "type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
            {"type": "function", "function": {"name": "get_time"}}]}})
    assert c.choices[0].message.tool_calls[0].function.name == "get_time"
    body = sent(emu)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_time"] and body["tool_choice"] == "required"


CUSTOM = {"type": "custom", "custom": {"name": "apply_patch", "description": "Apply a patch"}}


def test_custom_tools_come_back_as_custom_calls_whole_and_streamed(gw, emu):
    emu.switches(tool_calls="always", tool_arguments={"input": "*** Begin Patch\n*** End Patch"})
    c = client(gw).chat.completions.create(model="gpt-4o", messages=USER, tools=[CUSTOM])
    call = c.choices[0].message.tool_calls[0]
    assert call.type == "custom" and call.custom.name == "apply_patch"
    assert call.custom.input == "*** Begin Patch\n*** End Patch"
    assert sent(emu)["tools"][0]["function"]["parameters"]["required"] == ["input"]
    chunks = list(client(gw).chat.completions.create(model="gpt-4o", messages=USER, tools=[CUSTOM], stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert [(tc.type, tc.model_extra["custom"]) for tc in calls] == [
        ("custom", {"name": "apply_patch", "input": "*** Begin Patch\n*** End Patch"})]


# ---- item 4: parts, tool images, ranges, logit_bias; item 5 ----------------------------------------------


@pytest.mark.parametrize("extra,param,code", [
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA==",
                                                                                      "format": "wav"}}]}]},
     "messages[0].content[0].type", "unsupported_value"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
     "messages[0].content[0].type", "unsupported_value"),
    ({"logit_bias": {"50256": -100}}, "logit_bias", "unsupported_parameter"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "modalities",
     "unsupported_value"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "unsupported_value"),
    ({"prediction": {"type": "content", "content": "old code"}}, "prediction", "unsupported_value")])
def test_what_qwen_cannot_honour_is_a_400_naming_it(gw, emu, extra, param, code):
    import openai
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).chat.completions.create(**{"model": "gpt-4o", "messages": USER, **extra})
    assert e.value.body["param"] == param and e.value.body["code"] == code
    assert not emu.chat_requests()


def test_text_modality_and_empty_logit_bias_are_fine(gw, emu):
    c = client(gw).chat.completions.create(model="gpt-4o", messages=USER, modalities=["text"], logit_bias={})
    assert c.choices[0].message.content == "Echo: x" and "logit_bias" not in sent(emu)


def test_sampling_outside_qwens_ranges_is_clamped(gw, emu):
    c = client(gw).chat.completions.create(model="gpt-4o", messages=USER, temperature=2, top_p=0)
    assert c.choices[0].message.content == "Echo: x"
    body = sent(emu)
    assert body["temperature"] == 1.99 and 0 < body["top_p"] < 0.01


def test_images_a_tool_returned_reach_the_vision_model(gw, emu):
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}]}
    msgs = [*USER, call, {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "shot"}, IMAGE]}]
    c = client(gw).chat.completions.create(model="gpt-4o", messages=msgs)
    assert c.choices[0].message.content
    body = sent(emu)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "user"]
    assert body["messages"][2]["content"] == "shot" and IMAGE in body["messages"][3]["content"]
