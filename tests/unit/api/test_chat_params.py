"""Chat-completions parameters Qwen lacks (issue 23, items 2–5): what is translated, clamped or refused, as
pure functions (api/chat_params.py, api/chat_answer.py, upstream/dashscope/params.py, turn/assembler.py), and the
embedding sizes (api/embeddings.py, dashscope/request.embedding_body)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from qwen_gateway import sse
from qwen_gateway.api import chat_answer, chat_params
from qwen_gateway.api.chat import CHAT, ChatStreamTranslator
from qwen_gateway.api.embeddings import dimensions
from qwen_gateway.turn.assembler import ChunkAssembler
from qwen_gateway.errors import GatewayError
from qwen_gateway.models.learned import LearnedFacts
from qwen_gateway.models.model_map import stream_only
from qwen_gateway.upstream.dashscope import ranges
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.dashscope import params
from qwen_gateway.upstream.dashscope.request import chat_to_qwen, embedding_body
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer

USER = {"role": "user", "content": "hi"}
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}
TOOLS = [{"type": "function", "function": WEATHER},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
PATCH = {"type": "custom", "custom": {"name": "apply_patch", "description": "Patch files", "format": {
    "type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /.+/"}}}}


def refused(body: dict) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        chat_params.translate({"model": "gpt-4o", "messages": [USER], **body})
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    return e.value


# ---- item 5: features the gateway cannot honour are refused, never dropped --------------------------------


@pytest.mark.parametrize("field,value", [("modalities", ["text", "audio"]), ("audio", {"voice": "alloy",
                                         "format": "wav"}), ("prediction", {"type": "content", "content": "x"})])
def test_audio_and_predicted_outputs_are_refused_naming_the_parameter(field, value):
    e = refused({field: value})
    assert e.param == field and e.code == "unsupported_value"


def test_text_modality_and_empty_logit_bias_are_accepted():
    out = chat_params.translate({"messages": [USER], "modalities": ["text"], "logit_bias": {}})
    assert "logit_bias" not in out and out["modalities"] == ["text"]
    assert "logit_bias" not in chat_params.translate({"messages": [USER], "logit_bias": None})


def test_logit_bias_is_an_unsupported_parameter():
    e = refused({"logit_bias": {"50256": -100}})
    assert e.param == "logit_bias" and e.code == "unsupported_parameter"


@pytest.mark.parametrize("part", [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                                  {"type": "file", "file": {"file_id": "file-1"}}])
def test_audio_and_file_parts_are_refused_naming_where_they_are(part):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "x"}, part]}]
    e = refused({"messages": msgs})
    assert e.param == "messages[1].content[1].type" and e.code == "unsupported_value"


# ---- item 4: legacy functions ------------------------------------------------------------------------------


def test_legacy_functions_become_tools_and_the_conversation_tool_messages():
    notes: list[str] = []
    body = {"messages": [USER, {"role": "assistant", "content": None, "function_call": {
        "name": "get_weather", "arguments": '{"location": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "sunny"}],
        "functions": [WEATHER], "function_call": {"name": "get_weather"}}
    out = chat_params.translate(body, notes)
    assert out["tools"] == [{"type": "function", "function": WEATHER}] and out["parallel_tool_calls"] is False
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "functions" not in out and "function_call" not in out and notes
    call, result = out["messages"][1], out["messages"][2]
    assert "function_call" not in call and call["tool_calls"][0]["function"]["name"] == "get_weather"
    assert result == {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": "sunny"}
    assert body["messages"][2]["role"] == "function"  # the client's body is left alone
    for choice in ("auto", "none"):
        assert chat_params.translate({**body, "function_call": choice})["tool_choice"] == choice
    with pytest.raises(GatewayError) as e:
        chat_params.translate({**body, "tools": TOOLS})
    assert e.value.param == "functions"


ANSWER = {"id": "c", "object": "chat.completion", "model": "gpt-4o", "choices": [{
    "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"P"}'}}]}}]}


def test_a_legacy_client_gets_function_call_back():
    out = chat_answer.to_client(ANSWER, {"functions": [WEATHER]})
    choice = out["choices"][0]
    assert choice["finish_reason"] == "function_call" and "tool_calls" not in choice["message"]
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": '{"location":"P"}'}
    assert chat_answer.to_client(ANSWER, {"tools": TOOLS}) is ANSWER


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


CALL_CHUNKS = [chunk({"role": "assistant", "content": ""}),
               chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": ""}}]}),
               chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
               chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"P"}'}}]}),
               chunk({}, "tool_calls")]


def streamed(body: dict, chunks: list[dict]) -> list[dict]:
    tr = ChatStreamTranslator(False, body)
    out = b"".join(b for c in chunks for b in tr.feed(c)) + b"".join(tr.finish())
    return [e.json() for e in sse.SSEDecoder().feed(out) if e.data != "[DONE]"]


def test_a_legacy_client_gets_function_call_deltas():
    events = streamed({"functions": [WEATHER]}, CALL_CHUNKS)
    deltas = [e["choices"][0]["delta"] for e in events]
    assert all("tool_calls" not in d for d in deltas)
    assert deltas[1]["function_call"] == {"name": "get_weather", "arguments": ""}
    assert "".join(d.get("function_call", {}).get("arguments", "") for d in deltas) == '{"location":"P"}'
    assert events[-1]["choices"][0]["finish_reason"] == "function_call"


# ---- item 4: allowed_tools, custom tools --------------------------------------------------------------------


def test_allowed_tools_offers_only_the_listed_tools_with_its_mode():
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "get_time"}}]}}
    out = chat_params.translate({"messages": [USER], "tools": TOOLS, "tool_choice": choice}, notes := [])
    assert [t["function"]["name"] for t in out["tools"]] == ["get_time"] and out["tool_choice"] == "required"
    assert notes
    bad = {**choice, "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "x"}}]}}
    assert refused({"tools": TOOLS, "tool_choice": bad}).param == "tool_choice.allowed_tools.tools"


def test_a_custom_tool_is_a_function_taking_one_string_and_its_call_comes_back_custom():
    out = chat_params.translate({"messages": [USER], "tools": [TOOLS[0], PATCH],
                                 "tool_choice": {"type": "custom", "custom": {"name": "apply_patch"}}})
    fn = out["tools"][1]["function"]
    assert out["tools"][1]["type"] == "function" and fn["name"] == "apply_patch"
    assert fn["parameters"]["required"] == ["input"] and "start: /.+/" in fn["description"]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    answer = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "tool_calls": [
        {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input": "*** x"}'}},
        ANSWER["choices"][0]["message"]["tool_calls"][0]]}}]}
    calls = chat_answer.to_client(answer, {"tools": [TOOLS[0], PATCH]})["choices"][0]["message"]["tool_calls"]
    assert calls[0] == {"id": "call_2", "type": "custom", "custom": {"name": "apply_patch", "input": "*** x"}}
    assert calls[1]["type"] == "function"


def test_a_custom_call_is_streamed_whole_in_the_last_chunk():
    chunks = [chunk({"tool_calls": [{"index": 0, "id": "call_2", "type": "function",
                                     "function": {"name": "apply_patch", "arguments": '{"inp'}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ut": "a\\nb"}'}}]}),
              chunk({}, "tool_calls")]
    events = streamed({"tools": [PATCH]}, chunks)
    assert len(events) == 1 and events[0]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[0]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_2", "type": "custom", "custom": {"name": "apply_patch", "input": "a\nb"}}]


def test_the_chat_endpoint_translates_and_answers_back():
    ex = SimpleNamespace(notes=[], body={"model": "gpt-4o", "messages": [USER], "functions": [WEATHER]})
    assert CHAT.to_chat(ex.body, ex)["tools"][0]["function"] == WEATHER and ex.notes
    assert CHAT.from_chat(ANSWER, ex)["choices"][0]["message"]["function_call"]["name"] == "get_weather"


# ---- item 4: DashScope's ranges, images in tool messages --------------------------------------------------


@pytest.mark.parametrize("asked,sent", [({"temperature": 2}, {"temperature": 1.99}),
                                        ({"temperature": 2.0, "top_p": 0}, {"temperature": 1.99, "top_p": 0.0001}),
                                        ({"top_p": 0.0}, {"top_p": 0.0001})])
def test_sampling_outside_qwens_ranges_is_clamped_with_a_note(asked, sent):
    out = params.sampling_ranges(asked, notes := [])
    assert out == sent and len(notes) == len(sent)
    assert params.sampling_ranges(body := {"temperature": 1.5, "top_p": 1}, notes := []) is body and not notes


def test_images_in_tool_messages_move_to_a_user_message_after_the_tool_results():
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}, {"id": "b"}]}
    msgs = [USER, call, {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "shot"}, image]},
            {"role": "tool", "tool_call_id": "b", "content": [image]}, {"role": "assistant", "content": "ok"}]
    out = params.tool_images(msgs, notes := [])
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "tool", "user", "assistant"]
    assert out[2]["content"] == "shot" and out[3]["content"] == "(the tool returned the image below)"
    assert out[4]["content"][1:] == [image, image] and notes
    qwen = chat_to_qwen({"messages": msgs}, model="qwen3.6-plus", oauth=False)  # the route's model (the engine's)
    assert qwen["model"] == "qwen3.6-plus" and all(isinstance(m["content"], str) for m in qwen["messages"]
                                                   if m["role"] == "tool")
    assert params.tool_images([USER]) == [USER]


# ---- item 2: stream-only models ---------------------------------------------------------------------------


def test_stream_only_models_from_the_table_and_from_their_400():
    assert stream_only("qwen3-next-80b-a3b-thinking") and stream_only("qwen3-235b-a22b-thinking-2507")
    assert stream_only("qwen3-vl-235b-a22b-thinking")  # not a row: the family rules' `^qwen3-.*-thinking`
    assert not stream_only("qwen3-coder-plus") and stream_only("qwen3-coder-plus", {"qwen3-coder-plus"})
    found = ranges.read("This model only support stream mode, please enable the stream parameter to access the "
                        "model. ")
    assert found is not None and found.stream_only
    assert not ranges.read("Range of max_tokens should be [1, 8192]").stream_only


def test_a_whole_answer_from_a_stream_only_model_is_asked_as_a_stream():
    notes: list[str] = []
    out = chat_to_qwen({"messages": [USER]}, model="qwen3-next-80b-a3b-thinking", oauth=False, notes=notes)
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True} and notes
    learned = LearnedFacts()
    learned.stream_only.add("qwen-new")
    out = chat_to_qwen({"messages": [USER]}, model="qwen-new", oauth=False, learned=learned)
    assert out["stream"] is True
    assert "stream" not in chat_to_qwen({"messages": [USER]}, model="qwen3-coder-plus", oauth=False)


def qwen_sse(events: list[dict]) -> bytes:
    return b"".join(sse.encode(e) for e in events) + sse.DONE


def test_a_stream_assembles_into_one_completion_reasoning_tool_calls_and_usage():
    events = [chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "Think"}),
              chunk({"reasoning_content": "ing."}), chunk({"content": "<think>more</think>"}),
              chunk({"content": "Hello "}), chunk({"content": "there"}), *CALL_CHUNKS[1:4],
              {**chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                        "function": {"name": "get_time", "arguments": "{}"}}]})},
              chunk({}, "stop"),
              {**chunk({}), "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                                                     "cached_tokens": 2}}]
    asm = ChunkAssembler()
    rw = StreamRewriter(ChunkNormalizer("gpt-4o"), asm)
    rw.run(qwen_sse(events))
    out = asm.completion()
    assert out["object"] == "chat.completion" and out["model"] == "gpt-4o" and out["id"] == "c"
    (choice,) = out["choices"]
    msg = choice["message"]
    assert msg["content"] == "Hello there" and msg["reasoning_content"] == "Thinking.more"
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in msg["tool_calls"]] == [
        ("call_1", "get_weather", '{"location":"P"}'), ("call_9", "get_time", "{}")]
    assert choice["finish_reason"] == "tool_calls"
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 2} and out["usage"]["total_tokens"] == 12
    json.dumps(out)


# ---- item 3: embedding sizes ------------------------------------------------------------------------------


def test_an_openai_embedding_model_gets_its_own_size():
    for model in ("text-embedding-3-small", "text-embedding-ada-002"):
        assert dimensions({"model": model, "input": "x"}, notes := [])["dimensions"] == 1536 and notes
    assert dimensions({"model": "text-embedding-3-small", "input": "x", "dimensions": 256})["dimensions"] == 256
    assert "dimensions" not in dimensions({"model": "text-embedding-v4", "input": "x"})


@pytest.mark.parametrize("body", [{"model": "text-embedding-3-large"},
                                  {"model": "text-embedding-3-small", "dimensions": 3000}])
def test_a_size_no_qwen_model_offers_is_refused_naming_the_sizes(body):
    with pytest.raises(GatewayError) as e:
        dimensions({**body, "input": "x"})
    assert e.value.status == 400 and e.value.param == "dimensions" and e.value.code == "unsupported_value"
    assert "2048, 1536, 1024, 768, 512, 256, 128, 64" in e.value.message


def test_the_qwen_model_asked_is_one_that_offers_the_size():
    assert embedding_body({"dimensions": 1536}, "text-embedding-v4") == {"dimensions": 1536,
                                                                           "model": "text-embedding-v4"}
    notes: list[str] = []
    assert embedding_body({"dimensions": 1536}, "text-embedding-v3", notes)["model"] == "text-embedding-v4"
    assert notes
    assert embedding_body({"dimensions": 1536}, "text-embedding-v2") == {"model": "text-embedding-v2"}
    assert embedding_body({}, "text-embedding-v3") == {"model": "text-embedding-v3"}
    with pytest.raises(GatewayError):
        embedding_body({"dimensions": 3072}, "text-embedding-v4")
