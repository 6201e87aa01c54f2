"""The Messages dialect answered as Anthropic answers (issue #31, item 3), through the endpoint the gateway
registers (api/messages/endpoints.py): stop sequences reported, the prompt's estimate in `message_start`, a
thinking block someone else signed dropped with a note, and Anthropic's schema errors as Anthropic's 400."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api.messages.endpoints import messages_endpoint
from qwen_gateway.api.messages.thinking import Signer
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.seal import Sealer
from qwen_gateway.sse import SSEDecoder


@pytest.fixture
def endpoint(tmp_path):
    return messages_endpoint(lambda: Sealer(tmp_path / "ours"))


def exchange(body: dict) -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/messages", "http://x/v1/messages"), body=body,
                  requested_model=body.get("model", ""))
    return ex


def body(**kw) -> dict:
    return {"model": "claude-sonnet-5-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}], **kw}


def answer(text: str, finish: str = "stop", **message) -> dict:
    return {"choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text,
                                                                          **message}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


def chunk(delta: dict | None = None, finish: str | None = None) -> dict:
    return {"id": "c", "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}


def streamed(endpoint, ex: Exchange, chunks: list[dict]) -> list[dict]:
    t = endpoint.stream_translator(ex)
    raw = b"".join(b"".join(t.feed(c)) for c in chunks) + b"".join(t.finish())
    return [json.loads(e.data) for e in SSEDecoder().feed(raw)]


def text_of(events: list[dict]) -> str:
    return "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")


# ---- stop sequences -------------------------------------------------------------------------------------

def test_a_stop_sequence_that_cuts_a_whole_answer_is_reported(endpoint):
    ex = exchange(body(stop_sequences=["STOP", "END"]))
    chat = endpoint.to_chat(ex.body, ex)
    assert "stop" not in chat  # Qwen would end there without saying so: the gateway cuts itself
    message = endpoint.from_chat(answer("Hello END world STOP"), ex)
    assert message["content"] == [{"type": "text", "text": "Hello "}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")


def test_a_whole_answer_without_its_stop_sequences_ends_its_turn(endpoint):
    ex = exchange(body(stop_sequences=["END"]))
    message = endpoint.from_chat(answer("Hello world"), ex)
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)
    assert message["content"] == [{"type": "text", "text": "Hello world"}]


def test_a_stop_sequence_before_a_tool_call_ends_the_answer_there(endpoint):
    ex = exchange(body(stop_sequences=["\n\nHuman:"]))
    call = {"id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}
    message = endpoint.from_chat(answer("Sure.\n\nHuman: go", "tool_calls", tool_calls=[call]), ex)
    assert message["content"] == [{"type": "text", "text": "Sure."}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "\n\nHuman:")


def test_a_stop_sequence_split_across_stream_deltas_is_reported(endpoint):
    ex = exchange(body(stop_sequences=["END"], stream=True))
    events = streamed(endpoint, ex, [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello E"}),
                                     chunk({"content": "N"}), chunk({"content": "D world"}),
                                     chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                            "function": {"name": "B", "arguments": "{}"}}]}),
                                     chunk({}, "stop")])
    assert text_of(events) == "Hello "
    assert not any(e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use" for e in events)
    delta = next(e for e in events if e["type"] == "message_delta")["delta"]
    assert delta == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert events[-1]["type"] == "message_stop"


def test_a_held_tail_that_was_no_stop_sequence_still_reaches_the_client(endpoint):
    ex = exchange(body(stop_sequences=["END"], stream=True))
    events = streamed(endpoint, ex, [chunk({"content": "Hello E"}), chunk({"content": "x and E"}), chunk({}, "stop")])
    assert text_of(events) == "Hello Ex and E"
    assert next(e for e in events if e["type"] == "message_delta")["delta"] == {"stop_reason": "end_turn",
                                                                                 "stop_sequence": None}


# ---- the estimate in message_start ----------------------------------------------------------------------

def test_message_start_carries_the_gateways_input_estimate(endpoint):
    ex = exchange(body(stream=True))
    ex.count.tokens = 1234
    events = streamed(endpoint, ex, [chunk({"content": "hi"}), chunk({}, "stop")])
    assert events[0]["message"]["usage"]["input_tokens"] == 1234
    # Qwen sent no usage: the final count is not a 0 that would replace the estimate in the SDKs' accumulators
    assert next(e for e in events if e["type"] == "message_delta")["usage"]["input_tokens"] == 1234


# ---- thinking blocks signed elsewhere -------------------------------------------------------------------

def thinking_turn(signature: str, thought: str = "I pondered") -> dict:
    return body(messages=[{"role": "user", "content": "q"},
                          {"role": "assistant", "content": [{"type": "thinking", "thinking": thought,
                                                             "signature": signature},
                                                            {"type": "text", "text": "a"}]},
                          {"role": "user", "content": "go on"}])


def test_a_thinking_block_signed_by_another_gateway_is_dropped_with_a_note(endpoint, tmp_path):
    foreign = Signer(lambda: Sealer(tmp_path / "another-gateway")).sign("I pondered")
    for signature in (foreign, "EqQBCkYIBxgCKkD" + "A" * 80):  # another gateway's; Anthropic's own
        ex = exchange(thinking_turn(signature))
        chat = endpoint.to_chat(ex.body, ex)
        assistant = chat["messages"][1]
        assert assistant == {"role": "assistant", "content": "a"}  # the thinking never reaches Qwen
        assert any("thinking" in n and "dropped" in n for n in ex.notes), ex.notes


def test_a_thinking_block_the_gateway_signed_and_the_client_changed_is_still_refused(endpoint, tmp_path):
    ours = Signer(lambda: Sealer(tmp_path / "ours")).sign("I pondered")
    ex = exchange(thinking_turn(ours))
    assert endpoint.to_chat(ex.body, ex)["messages"][1]["reasoning_content"] == "I pondered"
    ex = exchange(thinking_turn(ours, "I pondered something else"))
    with pytest.raises(GatewayError) as e:
        endpoint.to_chat(ex.body, ex)
    assert e.value.status == 400 and "signature" in e.value.message


# ---- Anthropic's schema ---------------------------------------------------------------------------------

TOOL = {"name": "Bash", "input_schema": {"type": "object"}}


@pytest.mark.parametrize("fields,param", [
    ({"tools": [TOOL], "tool_choice": {"type": "tool", "name": "Missing"}}, "tool_choice.name"),
    ({"tool_choice": {"type": "any"}}, "tool_choice"),
    ({"tool_choice": {"type": "tool", "name": "Bash"}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages.0.content.0.text"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "text"}]}]},
     "messages.1.content.0.text"),
    ({"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                 "content": [{"type": "text", "text": None}]}]}]},
     "messages.2.content.0.content.0.text"),
    ({"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": [1]}]}]},
     "messages.1.content.0.input"),
    ({"temperature": 5}, "temperature"), ({"temperature": -0.1}, "temperature"),
    ({"top_p": 2}, "top_p"), ({"top_p": -1}, "top_p"),
    ({"top_k": -5}, "top_k"), ({"top_k": 1.5}, "top_k"),
    ({"tools": [{"name": "has space", "input_schema": {"type": "object"}}]}, "tools.0.name"),
    ({"tools": [{"name": "x" * 129, "input_schema": {"type": "object"}}]}, "tools.0.name"),
    ({"tools": [TOOL, TOOL]}, "tools"),
    ({"tools": [{"name": "Bash", "input_schema": {"type": "string"}}]}, "tools.0.input_schema.type"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 2000}, "thinking.budget_tokens"),
    ({"stop_sequences": [None]}, "stop_sequences"),
    ({"thinking": {"type": "adaptive"}, "tools": [TOOL], "tool_choice": {"type": "any"}}, "tool_choice"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048, "temperature": 0.5}, "temperature"),
    ({"thinking": {"type": "adaptive"}, "top_k": 5}, "top_k"),
    ({"thinking": {"type": "adaptive"}, "top_p": 0.5}, "top_p"),
    ({"metadata": {"user_id": 5}}, "metadata.user_id"),
])
def test_bodies_that_break_anthropics_schema_get_anthropics_400(endpoint, fields, param):
    ex = exchange(body(**fields))
    with pytest.raises(GatewayError) as e:
        endpoint.to_chat(ex.body, ex)
    assert (e.value.status, e.value.type, e.value.param) == (400, "invalid_request_error", param), e.value.message


@pytest.mark.parametrize("fields", [
    {"temperature": 0}, {"temperature": 1}, {"top_p": 0.5}, {"top_k": 0}, {"top_k": 40},
    {"tools": [TOOL], "tool_choice": {"type": "tool", "name": "Bash"}}, {"tools": [TOOL], "tool_choice": {"type": "any"}},
    {"tool_choice": {"type": "auto"}}, {"tool_choice": {"type": "none"}},
    {"tools": [{"name": "mcp__server__tool-1", "input_schema": {"type": "object"}}]},
    {"thinking": {"type": "enabled", "budget_tokens": 31999}, "max_tokens": 32000},  # Claude Code's
    {"thinking": {"type": "adaptive"}, "temperature": 1, "top_p": 0.95, "tools": [TOOL],
     "tool_choice": {"type": "auto"}},
    {"thinking": {"type": "disabled"}, "temperature": 0.2, "top_k": 5, "tools": [TOOL], "tool_choice": {"type": "any"}},
])
def test_bodies_anthropic_takes_are_taken(endpoint, fields):
    ex = exchange(body(**fields))
    endpoint.to_chat(ex.body, ex)


# ---- Claude Code's side requests ------------------------------------------------------------------------

