"""Model Studio's Responses answers read back into the chat form (api/responses/native_answer.py): a whole
Response, its stream's events (calls whose arguments come whole at the item's end, or as deltas), usage with
the session cache's details, and a failed response."""

from __future__ import annotations

from qwen_gateway.api.responses.native_answer import EventSource, chat_answer, chat_usage
from qwen_gateway.errors import CLIENT, SERVER, THROTTLE

USAGE = {"input_tokens": 2000, "output_tokens": 10, "input_tokens_details": {"cached_tokens": 1500},
         "x_details": [{"prompt_tokens_details": {"cached_tokens": 1500, "cache_creation_input_tokens": 500,
                                                  "cache_type": "ephemeral"}, "x_billing_type": "response_api"}]}


def test_usage_reads_the_session_caches_details():
    assert chat_usage(USAGE) == {"prompt_tokens": 2000, "completion_tokens": 10, "total_tokens": 2010,
                                 "prompt_tokens_details": {"cached_tokens": 1500, "cache_creation_input_tokens": 500,
                                                           "cache_type": "ephemeral"},
                                 "completion_tokens_details": {"reasoning_tokens": 0}}
    plain = chat_usage({"input_tokens": 5, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 0}})
    assert plain is not None and plain["prompt_tokens_details"] == {"cached_tokens": 0}
    assert chat_usage(None) is None


def test_a_whole_response_is_a_chat_completion():
    response = {"id": "resp_q", "status": "completed", "usage": USAGE, "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "ok"}]},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"}]}
    chat = chat_answer(response, model="gpt-5")
    choice = chat["choices"][0]
    assert chat["model"] == "gpt-5" and choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": "ok", "reasoning_content": "think", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "shell", "arguments": "{}"}}]}
    assert chat["usage"]["prompt_tokens_details"]["cached_tokens"] == 1500
    cut = chat_answer({"status": "incomplete", "output": []}, model="m")
    assert cut["choices"][0]["finish_reason"] == "length"


def deltas(chunks):
    return [c["choices"][0]["delta"] if c["choices"] else {"usage": c["usage"]} for c in chunks]


def test_a_stream_becomes_chunks_and_keeps_qwens_id():
    src = EventSource("gpt-5")
    out = []
    for event in [
            {"type": "response.created", "response": {"id": "resp_q", "status": "queued"}},
            {"type": "response.reasoning_summary_text.delta", "delta": "th"},
            {"type": "response.output_text.delta", "delta": "he"},
            {"type": "response.output_text.delta", "delta": "llo"},
            {"type": "response.output_item.added", "item": {"id": "fc1", "type": "function_call", "call_id": "c1",
                                                            "name": "shell", "arguments": ""}},
            {"type": "response.function_call_arguments.delta", "item_id": "fc1", "delta": "{\"a\""},
            {"type": "response.output_item.done", "item": {"id": "fc1", "type": "function_call", "call_id": "c1",
                                                           "name": "shell", "arguments": "{\"a\":1}"}},
            {"type": "response.completed", "response": {"id": "resp_q", "status": "completed", "usage": USAGE}}]:
        out += src.feed(event)
    assert deltas(out)[:6] == [
        {"reasoning_content": "th"}, {"content": "he"}, {"content": "llo"},
        {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "shell", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}]
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls" and out[-1]["usage"] == src.usage
    assert src.finish_reasons == {0: "tool_calls"} and src.upstream_id == "resp_q"
    assert src.usage is not None and src.usage["prompt_tokens"] == 2000


def test_a_call_whose_arguments_come_only_at_its_end():
    src = EventSource("m")
    src.feed({"type": "response.output_item.added", "item": {"id": "fc", "type": "function_call", "call_id": "c",
                                                             "name": "f"}})
    done = src.feed({"type": "response.output_item.done", "item": {"id": "fc", "type": "function_call",
                                                                   "arguments": "{\"x\":2}"}})
    assert deltas(done) == [{"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":2}"}}]}]


def test_a_failed_response_is_the_streams_error_by_its_code():
    src = EventSource("m")
    assert src.feed({"type": "response.failed", "response": {"status": "failed", "error": {
        "code": "Throttling.RateQuota", "message": "slow down"}}}) == []
    assert src.error_text == "slow down" and src.fault(src.error_text).kind is THROTTLE
    assert src.fault({"code": "InvalidParameter", "message": "bad"}).kind is CLIENT
    assert EventSource("m").fault("broken").kind is SERVER
