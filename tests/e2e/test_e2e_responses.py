"""The Responses API as Codex's built-in provider and the 2026 spec speak it, through a real mitmdump with the
openai SDK (its strict `responses.stream()` accumulator) and raw SSE validated against the spec's schemas."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from helpers.openai_schema import validate, validate_stream_event

if TYPE_CHECKING:
    import openai  # annotations only; the functions import it when they run

pytestmark = pytest.mark.e2e

EXEC_JS = 'const r = await tools.exec_command({cmd: "echo pong-from-tool"}); text(r);'
CODEX_BUILTIN_TOOLS = {"type": "additional_tools", "role": "developer", "tools": [
    {"type": "namespace", "name": "functions", "description": "", "tools": [
        {"type": "custom", "name": "exec", "description": "Run JavaScript code to orchestrate tool calls",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: SOURCE\nSOURCE: /[\\s\\S]+/\n"}},
        {"type": "function", "name": "wait", "description": "Wait for an exec cell", "strict": False,
         "parameters": {"type": "object", "properties": {"cell_id": {"type": "string"}}}}]},
    {"type": "namespace", "name": "clock", "description": "Time", "tools": [
        {"type": "function", "name": "sleep", "description": "Sleep", "strict": False,
         "parameters": {"type": "object", "properties": {"duration_ms": {"type": "number"}}}}]}]}
META = {"internal_chat_message_metadata_passthrough": {"turn_id": "t1", "content_item_kinds": ["user.text"]}}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Use apply_patch to edit files. FREEFORM.",
               "format": {"type": "grammar", "syntax": "lark",
                          "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'}}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
IMG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJ"
       "RU5ErkJggg==")


def text_of(content) -> str:
    """A chat message's text (the gateway marks the last message for Qwen's cache: a list of parts)."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def client(gw) -> openai.OpenAI:
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def user(text: str, **extra) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}], **extra}


def sse(gw, body: dict, path: str = "/v1/responses", validate_events: bool = True) -> list[dict]:
    out = []
    with httpx.stream("POST", gw.url + path, json=body, timeout=30, trust_env=False) as r:
        assert r.status_code == 200, r.read()
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == event
                out.append(data)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    if validate_events:
        for e in out:
            validate_stream_event(e)
    return out


def codex_builtin_body(*items, stream=True) -> dict:
    """What Codex 0.169's built-in provider posts (docs/compatibility.md), cut down."""
    return {"model": "gpt-6.1-sol", "stream": stream, "store": False, "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "low", "context": "all_turns"}, "text": {"verbosity": "low"},
            "tool_choice": "auto", "parallel_tool_calls": False, "prompt_cache_key": "sess-1",
            "input": [CODEX_BUILTIN_TOOLS,
                      {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}],
                       **META},
                      user("say pong", **META), *items]}


def test_codex_builtin_request_with_additional_tools_is_answered(gw, emu):
    body = codex_builtin_body({"type": "configuration_update", "reasoning": {"effort": "low"}})
    emu.switches(tool_calls="always", tool_arguments={"input": EXEC_JS})
    events = sse(gw, body)
    assert events[-1]["type"] == "response.completed"
    sent = emu.chat_requests()[-1]["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["exec", "wait", "clock__sleep"]
    exec_tool = sent["tools"][0]["function"]
    assert exec_tool["parameters"]["required"] == ["input"] and "SOURCE" in exec_tool["description"]
    item = events[-1]["response"]["output"][-1]
    assert item == {**item, "type": "custom_tool_call", "name": "exec", "input": EXEC_JS, "namespace": "functions"}
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(deltas) == EXEC_JS
    done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
    assert done["input"] == EXEC_JS


def test_codex_builtin_tool_round_trip_and_namespaced_call(gw, emu):
    call = {"type": "custom_tool_call", "call_id": "call_1", "name": "exec", "namespace": "functions",
            "input": EXEC_JS, "status": "completed", **META}
    output = {"type": "custom_tool_call_output", "call_id": "call_1", "output": "pong-from-tool", **META}
    events = sse(gw, codex_builtin_body(call, output))
    assert events[-1]["response"]["output"][-1]["content"][0]["text"] == "Tool said: pong-from-tool"
    msgs = emu.chat_requests()[-1]["body"]["messages"]
    assert msgs[-2]["tool_calls"][0]["function"] == {"name": "exec", "arguments": json.dumps({"input": EXEC_JS})}
    assert msgs[-1]["role"] == "tool" and text_of(msgs[-1]["content"]) == "pong-from-tool"


def test_catalog_apply_patch_is_a_custom_tool_call_through_the_strict_sdk(gw, emu):
    emu.switches(tool_calls="always", tool_arguments={"input": PATCH})
    tools = [APPLY_PATCH, {"type": "function", "name": "exec_command", "parameters": {"type": "object",
                                                                                      "properties": {}}},
             {"type": "tool_search", "execution": "client", "description": "find tools",
              "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
             {"type": "web_search"}]
    with client(gw).responses.stream(model="gpt-5.5", input="add hello.txt", tools=tools) as stream:
        kinds = [ev.type for ev in stream]
        final = stream.get_final_response()
    call = final.output[-1]
    assert call.type == "custom_tool_call" and call.name == "apply_patch" and call.input == PATCH
    assert "response.custom_tool_call_input.delta" in kinds
    sent = emu.chat_requests()[-1]["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["apply_patch", "exec_command", "tool_search"]
    second = client(gw).responses.create(model="gpt-5.5", previous_response_id=final.id, tools=tools, input=[
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Success. Updated: A hello.txt"}])
    assert second.output_text == "Tool said: Success. Updated: A hello.txt"
    history = emu.chat_requests()[-1]["body"]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert json.loads(history[1]["tool_calls"][0]["function"]["arguments"]) == {"input": PATCH}


def test_function_call_arguments_reach_the_client_as_qwen_writes_them(gw, emu):
    emu.switches(tool_calls="always", gap_ms=300, tool_arguments={"location": "Paris"})
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {
        "location": {"type": "string"}}}}
    seen: list[tuple[str, float]] = []
    start = time.monotonic()
    with client(gw).responses.stream(model="gpt-4o", input="weather?", tools=[tool]) as stream:
        for ev in stream:
            seen.append((ev.type, time.monotonic() - start))
        final = stream.get_final_response()
    assert final.output[-1].arguments == '{"location": "Paris"}'
    at = dict(reversed(seen))  # first time each event type was seen
    assert [t for t, _ in seen].count("response.function_call_arguments.delta") == 2  # one per upstream fragment
    # the item is announced while Qwen is still writing its arguments (two more 300 ms gaps)
    assert at["response.completed"] - at["response.output_item.added"] > 0.5


def test_remote_compaction_and_its_item_carried_back(gw, emu):
    history = [{"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": '{"cmd":"make"}'},
               {"type": "function_call_output", "call_id": "c1", "output": "make: built ok"}]
    body = {"model": "gpt-5.5", "stream": True, "store": False, "tools": [APPLY_PATCH],
            "input": [user("build it"), *history, {"type": "compaction_trigger"}]}
    events = sse(gw, body)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.output_item.added",
                                           "response.output_item.done", "response.completed"]
    (item,) = events[-1]["response"]["output"]
    assert item["type"] == "compaction" and "built" not in item["encrypted_content"]
    sent = emu.chat_requests()[-1]["body"]
    assert "tools" not in sent and "make: built ok" in text_of(sent["messages"][-1]["content"])
    emu.reset()
    after = sse(gw, {"model": "gpt-5.5", "stream": True, "input": [user("build it"), item, user("continue")]})
    assert after[-1]["type"] == "response.completed"
    msgs = emu.chat_requests()[-1]["body"]["messages"]
    summary = text_of(msgs[1]["content"])
    assert summary.startswith("Summary of the earlier conversation") and "Echo: " in summary


def test_compact_endpoint(gw, emu):
    r = httpx.post(gw.url + "/v1/responses/compact", json={"model": "gpt-5.5", "input": [
        user("first"), {"type": "message", "role": "assistant", "content": "answer"}, user("second")]},
                   timeout=30, trust_env=False)
    assert r.status_code == 200, r.text
    data = r.json()
    validate("CompactResource", data)
    assert data["object"] == "response.compaction"
    assert [i["type"] for i in data["output"]] == ["message", "message", "compaction"]
    assert emu.chat_requests()[-1]["body"].get("stream") is not True


def test_sealed_reasoning_keeps_a_stateless_client_reasoning(gw, emu):
    emu.switches(reasoning=True)
    c = client(gw)
    first = c.responses.create(model="gpt-5.5", input="think", store=False, include=["reasoning.encrypted_content"],
                               reasoning={"summary": "auto"})  # the text shows only when a summary is asked
    rs = next(o for o in first.output if o.type == "reasoning")
    assert rs.encrypted_content and rs.summary[0].text not in rs.encrypted_content
    items = [o.model_dump(exclude_none=True) for o in first.output]
    c.responses.create(model="gpt-5.5", store=False, include=["reasoning.encrypted_content"],
                       input=[{"role": "user", "content": "think"}, *items, {"role": "user", "content": "again"}])
    assistant = emu.chat_requests()[-1]["body"]["messages"][1]
    assert assistant["role"] == "assistant" and assistant["reasoning_content"] == rs.summary[0].text


def test_images_in_tool_output_go_to_the_vision_model(gw, emu):
    body = {"model": "gpt-5.5", "input": [
        user("look at it"), {"type": "function_call", "call_id": "v1", "name": "view_image", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "v1",
         "output": [{"type": "input_image", "image_url": IMG, "detail": "high"}]}]}
    r = client(gw).responses.create(**body)
    assert r.status == "completed"
    msgs = emu.chat_requests()[-1]["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user"]
    assert "base64" not in json.dumps(msgs[2])
    assert any(p.get("type") == "image_url" and p["image_url"]["url"] == IMG for p in msgs[3]["content"])


def test_previous_response_keeps_developer_items_and_input_items_tokens_cancel(gw, emu):
    c = client(gw)
    first = c.responses.create(model="gpt-4o", instructions="only once", input=[
        {"role": "developer", "content": "project rules"}, {"role": "user", "content": "q1"}])
    c.responses.create(model="gpt-4o", previous_response_id=first.id, input="q2")
    msgs = emu.chat_requests()[-1]["body"]["messages"]
    texts = [text_of(m["content"]) for m in msgs]
    assert texts[0].startswith("project rules") and "only once" not in json.dumps(msgs)
    page = httpx.get(gw.url + f"/v1/responses/{first.id}/input_items", params={"order": "asc"},
                     trust_env=False).json()
    validate("ResponseItemList", page)
    assert [i["role"] for i in page["data"]] == ["developer", "user"] and not page["has_more"]
    listed = c.responses.input_items.list(first.id, limit=1)
    assert len(listed.data) == 1 and listed.data[0].role == "user" and listed.has_more  # newest first
    count = httpx.post(gw.url + "/v1/responses/input_tokens", json={"model": "gpt-4o", "input": "hello there",
                                                                   "previous_response_id": first.id},
                       trust_env=False)
    assert count.status_code == 200
    validate("TokenCountsResource", count.json())
    assert count.json()["input_tokens"] > 5
    cancel = httpx.post(gw.url + f"/v1/responses/{first.id}/cancel", trust_env=False)
    assert cancel.status_code == 400
    assert httpx.post(gw.url + "/v1/responses/resp_nope/cancel", trust_env=False).status_code == 404
    assert httpx.get(gw.url + "/v1/responses/resp_nope/input_items", trust_env=False).status_code == 404


def test_context_overflow_on_a_stream_is_response_failed(gw, emu):
    emu.fault("context400")
    events = sse(gw, {"model": "gpt-5.5", "stream": True, "input": "x"}, validate_events=False)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    error = events[-1]["response"]["error"]
    assert error["code"] == "context_length_exceeded"  # the code Codex acts on (the spec's enum lacks it)
    for e in events[:-1]:
        validate_stream_event(e)
    events[-1]["response"]["error"]["code"] = "invalid_prompt"
    validate_stream_event(events[-1])
    emu.fault("context400")
    r = httpx.post(gw.url + "/v1/responses", json={"model": "gpt-5.5", "input": "x"}, trust_env=False, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"  # not streaming: HTTP 400
