"""One tool call streamed to a Responses client (api/responses/stream_call.py): its delta events as Qwen writes the
arguments, then its `.done` events and the finished item."""

from __future__ import annotations

import json

from qwen_gateway.api.responses.stream_call import StreamedCall


def streamed(item: dict, *fragments: str, status: str = "completed") -> tuple[StreamedCall, list[dict]]:
    call = StreamedCall(item, lambda e: json.dumps(e).encode())
    call.index = 2
    out = [b for f in fragments for b in call.add(f)] + call.close(status)
    return call, [json.loads(b) for b in out]


FC = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "", "status": "in_progress"}
CT = {**FC, "type": "custom_tool_call", "id": "ctc_1", "input": ""}
TS = {"type": "tool_search_call", "id": "ts_1", "call_id": "call_3", "execution": "client", "arguments": {},
      "status": "in_progress"}


def test_a_function_calls_arguments_stream_as_they_come():
    call, events = streamed(FC, '{"a"', ": 1}")
    assert [(e["type"], e.get("delta")) for e in events] == [
        ("response.function_call_arguments.delta", '{"a"'), ("response.function_call_arguments.delta", ": 1}"),
        ("response.function_call_arguments.done", None)]
    assert events[-1] == {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 2,
                          "name": "f", "arguments": '{"a": 1}'}
    assert call.item["arguments"] == '{"a": 1}' and call.item["status"] == "completed"


def test_a_custom_calls_text_streams_decoded():
    call, events = streamed(CT, '{"input": "line', '\\nnext"}')
    assert [e.get("delta") for e in events[:-1]] == ["line", "\nnext"]
    assert events[-1] == {"type": "response.custom_tool_call_input.done", "item_id": "ctc_1", "output_index": 2,
                          "input": "line\nnext"}
    assert call.item["input"] == "line\nnext"


def test_a_custom_calls_text_under_another_key_streams_too():
    _, events = streamed(CT, '{"patch": ', '"x"}')  # the first string property, whatever its key
    assert [(e["type"], e.get("delta")) for e in events] == [("response.custom_tool_call_input.delta", "x"),
                                                             ("response.custom_tool_call_input.done", None)]


def test_a_custom_call_that_cannot_be_decoded_as_it_comes_sends_its_text_at_the_end():
    call, events = streamed(CT, "raw ", "text")  # not JSON at all: the text as Qwen wrote it, once
    assert [(e["type"], e.get("delta")) for e in events] == [("response.custom_tool_call_input.delta", "raw text"),
                                                             ("response.custom_tool_call_input.done", None)]
    assert events[-1]["input"] == call.item["input"] == "raw text"


def test_a_tool_search_call_streams_nothing_and_ends_with_its_arguments():
    call, events = streamed(TS, '{"query":', '"git"}', status="incomplete")
    assert events == []
    assert call.item["arguments"] == {"query": "git"} and call.item["status"] == "incomplete"
