"""A self-hosted server's answers and refusals in the chat form (upstream/selfhosted/answer.py, stream.py)."""

from __future__ import annotations

from qwen_gateway.errors import AUTH, CLIENT, CONTEXT, THROTTLE, UNREACHABLE
from qwen_gateway.upstream.selfhosted import answer
from qwen_gateway.upstream.selfhosted.stream import Chunks


def test_a_whole_answer_keeps_its_reasoning_under_the_chat_forms_name():
    out = answer.to_chat({"id": "chatcmpl-1", "object": "chat.completion", "model": "Qwen/Qwen3-8B", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi", "reasoning": "think"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}, model="gpt-4o")
    assert out["model"] == "gpt-4o"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "hi", "reasoning_content": "think"}
    older = answer.to_chat({"choices": [{"message": {"content": "a", "reasoning_content": "r", "reasoning": None}}]},
                           model="m")
    assert older["choices"][0]["message"]["reasoning_content"] == "r" and "usage" not in older  # unknown stays so


def test_refusals_nested_or_flat_keep_the_servers_words_and_class():
    nested = answer.classify(400, b'{"error": {"message": "This model\'s maximum context length is 4096 tokens.",'
                                  b' "type": "BadRequestError", "param": null, "code": 400}}')
    assert nested.kind is CONTEXT and nested.status == 400 and "maximum context length is 4096" in nested.message
    flat = answer.classify(404, b'{"object": "error", "message": "The model `x` does not exist.", '
                                b'"type": "NotFoundError", "param": null, "code": 404}')
    assert (flat.kind, flat.status, flat.code) == (CLIENT, 404, "model_not_found") and "`x`" in flat.message
    assert answer.classify(401, b'{"error": "Unauthorized"}').kind is AUTH
    assert answer.classify(429, b"slow down").kind is THROTTLE
    crashed = answer.classify(500, b"boom")  # nothing generated: another of the team's servers may answer
    assert crashed.kind is UNREACHABLE and crashed.status == 502 and crashed.type == "server_error"
    # its kind is the refusal's code, as Model Studio's code is (the request line's error=CODE; issue 82)
    refused = answer.classify(400, b'{"error": {"message": "\\"auto\\" tool choice requires --enable-auto-tool-choice",'
                                   b' "type": "BadRequestError", "param": null, "code": 400}}')
    assert (refused.kind, refused.status, refused.code) == (CLIENT, 400, "BadRequestError")
    assert answer.classify(400, b'{"error": {"message": "no", "type": "Bad Request", "code": 400}}').code == "Bad_Request"
    assert answer.classify(400, b"no body of JSON").code is None


def test_a_stream_its_reasoning_usage_finish_and_an_error_event():
    chunks = Chunks("gpt-4o")
    assert chunks.feed({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    assert chunks.opened_only
    out = chunks.feed({"id": "c", "choices": [{"index": 0, "delta": {"reasoning": "hm"}}]})
    assert out[0]["choices"][0]["delta"] == {"reasoning_content": "hm"} and not chunks.opened_only
    assert out[0]["model"] == "gpt-4o"
    chunks.feed({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "t"}]}}]})
    done = chunks.feed({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert done[0]["choices"][0]["finish_reason"] == "tool_calls" and chunks.finish_reasons == {0: "tool_calls"}
    assert chunks.usage is None  # unknown until the usage chunk
    (usage,) = chunks.feed({"id": "c", "choices": [], "usage": {"prompt_tokens": 3}})
    assert chunks.usage == usage["usage"] == {"prompt_tokens": 3} and usage["choices"] == []
    broken = Chunks("m")
    broken.feed({"error": {"message": "engine died", "code": 500}})
    assert broken.error_text == "engine died"
    assert broken.fault({"message": "bad", "code": 400}).kind is CLIENT
