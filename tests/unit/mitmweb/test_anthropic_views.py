"""mitmweb's Anthropic Messages views (mitmweb/anthropic_views.py): requests as a conversation, answers —
streams and whole Messages — assembled; and, end to end, mitmweb's content API showing a real /v1/messages
exchange through the gateway and the emulator assembled."""

from __future__ import annotations

import json
import time

import argon2
import httpx
import pytest
from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow

from qwen_gateway.api.messages.response import chat_to_message
from qwen_gateway.api.messages.stream import MessagesStreamTranslator
from qwen_gateway.mitmweb.anthropic_views import (VIEWS, assemble_message, assemble_messages_stream,
    describe_messages_request, render_message, shorten)
from qwen_gateway.mitmweb.contentviews import register
from qwen_gateway.sse import encode
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer
from helpers.procs import free_port, mitmweb_api

SIGNATURE = "EuYBCkQIBhgCKkDx" + "q" * 300 + "Zm9vYg=="
USAGE = {"prompt_tokens": 30, "completion_tokens": 14, "total_tokens": 44, "prompt_tokens_details": {"cached_tokens": 20}}
CHUNKS = [
    {"choices": [{"index": 0, "delta": {"reasoning_content": "The user wants "}}]},
    {"choices": [{"index": 0, "delta": {"reasoning_content": "the weather."}}]},
    {"choices": [{"index": 0, "delta": {"content": "Let me check."}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {
        "name": "get_weather", "arguments": "{\"location\":"}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": " \"Paris\", \"unit\""}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": \"celsius\"}"}}]}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": USAGE}]


def translator() -> MessagesStreamTranslator:
    return MessagesStreamTranslator(model="claude-sonnet-4-5", sign=lambda thinking: SIGNATURE)


def messages_sse(chunks=CHUNKS, done: bool = True) -> bytes:
    """What the gateway sends a Messages client for these Qwen chunks."""
    body = b"".join(encode(c) for c in chunks) + (b"data: [DONE]\n\n" if done else b"")
    return StreamRewriter(ChunkNormalizer("coder-model"), translator()).run(body)


def test_a_translated_stream_is_assembled_thinking_text_and_a_tool_use_split_across_events():
    data = messages_sse()
    assert data.count(b"input_json_delta") == 3 and b"signature_delta" in data
    a = assemble_messages_stream(data)
    assert a["model"] == "claude-sonnet-4-5" and a["id"].startswith("msg_") and a["ended"]
    assert [b["type"] for _, b in sorted(a["blocks"].items())] == ["thinking", "text", "tool_use"]
    assert a["blocks"][0]["thinking"] == "The user wants the weather." and a["blocks"][0]["signature"] == SIGNATURE
    assert a["blocks"][2]["partial_json"] == '{"location": "Paris", "unit": "celsius"}'
    assert a["stop_reason"] == "tool_use"
    assert a["usage"] == {"input_tokens": 10, "output_tokens": 14, "cache_read_input_tokens": 20,
                          "cache_creation_input_tokens": 0}
    text = render_message(a)
    assert text.startswith(f"── assembled message ({a['events']} events, model claude-sonnet-4-5, msg_")
    assert "thinking #0:\nThe user wants the weather.\n(signature: EuYBCkQIBh…9vYg== (324 chars))" in text
    assert "text #1:\nLet me check." in text
    assert 'tool use #2: get_weather (call_1)\n{\n  "location": "Paris",\n  "unit": "celsius"\n}' in text
    assert "stop: tool_use\nusage: {\"input_tokens\": 10" in text
    assert SIGNATURE not in text and "error" not in text


def test_an_anthropic_stream_as_the_api_sends_it():
    """Usage comes in message_start and is completed by message_delta; several tool uses; a ping."""
    events = [
        {"type": "message_start", "message": {"id": "msg_01X", "type": "message", "role": "assistant",
                                              "model": "claude-opus-4-1", "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 472, "output_tokens": 2,
                                                        "cache_read_input_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay, "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "two tools."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01A",
                                                                     "name": "Bash", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"comm'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'and": "ls"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_01B",
                                                                     "name": "TodoRead", "input": {}}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 89}},
        {"type": "message_stop"}]
    a = assemble_messages_stream(b"".join(encode(e, event=e["type"]) for e in events))
    assert a["events"] == len(events) and a["usage"] == {"input_tokens": 472, "output_tokens": 89,
                                                         "cache_read_input_tokens": 0}
    text = render_message(a)
    assert "text #0:\nOkay, two tools." in text
    assert 'tool use #1: Bash (toolu_01A)\n{\n  "command": "ls"\n}' in text
    assert "tool use #2: TodoRead (toolu_01B)\n{}" in text  # no input_json_delta: the start's input


def test_an_error_event_and_a_cut_stream():
    t = translator()
    head = t.feed({"choices": [{"index": 0, "delta": {"content": "Hal"}}]})
    data = b"".join(head + t.fail({"type": "server_error", "message": "Qwen is overloaded"}))
    a = assemble_messages_stream(data)
    assert a["error"] == "api_error: Qwen is overloaded" and not a["ended"]
    text = render_message(a)
    assert "text #0:\nHal" in text and text.endswith("\nerror: api_error: Qwen is overloaded")
    assert "stop:" not in text  # the stream never got one
    broken = messages_sse(CHUNKS[:5], done=False)  # Qwen broke off mid tool call: the gateway says so
    assert render_message(assemble_messages_stream(broken)).endswith(
        "\nerror: api_error: Qwen ended the stream before the answer was complete.")
    cut = broken[:broken.rindex(b"event: error")]  # the client's connection broke before that
    text = render_message(assemble_messages_stream(cut))
    assert '{"location": "Paris", "unit"\n(input cut short: not complete JSON)' in text
    assert "stop: None\nusage: " in text and text.endswith("\n(the stream ended without message_stop)")


def test_a_whole_message_renders_like_the_stream_it_would_have_been():
    chat = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Let me check.", "reasoning_content": "The user wants the weather.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"location": "Paris", "unit": "celsius"}'}}]}}], "usage": USAGE}
    message = dict(chat_to_message(chat, model="claude-sonnet-4-5", sign=lambda thinking: SIGNATURE))
    whole = render_message(assemble_message(message)).split("\n")
    streamed = render_message(assemble_messages_stream(messages_sse())).split("\n")
    assert whole[0] == f"── message (model claude-sonnet-4-5, {message['id']}) ──"
    assert whole[1:] == streamed[1:]
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
             "request_id": "req_1"}
    assert render_message(assemble_message(error)) == ("── error ──\n\n"
                                                       "error: invalid_request_error: max_tokens: Field required")
    with pytest.raises(ValueError):
        assemble_message({"input_tokens": 12})  # count_tokens' answer: left to the JSON view


CLAUDE_CODE_REQUEST = {
    "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
    "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
    "metadata": {"user_id": "{\"session_id\": \"s1\"}"},
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1;"},
               {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "Bash", "input_schema": {"type": "object"}},
              {"name": "Read", "input_schema": {"type": "object"}, "defer_loading": True}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 4096}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]},
        {"role": "system", "content": "# Environment\ncwd: /work"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should list files.", "signature": SIGNATURE},
            {"type": "text", "text": "Listing."},
            {"type": "tool_use", "id": "toolu_01A", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "is_error": True,
             "content": "ls: cannot open directory\nPermission denied"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [
                {"type": "text", "text": "screenshot:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "B" * 400}}]},
            {"type": "text", "text": "try sudo"}]}]}


def test_a_claude_code_request_as_a_conversation():
    text = describe_messages_request(CLAUDE_CODE_REQUEST)
    lines = text.split("\n")
    assert lines[:4] == ["model: claude-sonnet-4-5   stream: True   max_tokens: 32000",
                         'thinking: {"type": "adaptive"}', 'output_config: {"effort": "high"}', "tools (2): Bash, Read"]
    assert ("[system]\nx-anthropic-billing-header: cc_version=2.1;\n\nYou are Claude Code.\n\n[user]\n"
            "What is in this picture?\n[image image/png, 3.0 KiB base64]\n[image https://example.com/cat.png]") in text
    assert "[system]\n# Environment\ncwd: /work\n\n[assistant]" in text
    assert (f"[thinking, signature {shorten(SIGNATURE)}]\nI should list files.\nListing.\n"
            '→ tool_use Bash({"command": "ls"}) id=toolu_01A') in text
    assert ("← tool_result for toolu_01A (error)\n  ls: cannot open directory\n  Permission denied\n"
            "← tool_result for toolu_01B\n  screenshot:\n  [image image/jpeg, 300 B base64]\ntry sudo") in text
    assert SIGNATURE not in text and "AAAA" not in text
    assert describe_messages_request({"model": "m", "max_tokens": 5, "system": "be brief",
                                      "messages": [{"role": "user", "content": "hi"}]}).split("\n")[1:] == [
        "", "[system]", "be brief", "", "[user]", "hi"]


def flow(meta: dict, request: dict, response: bytes, content_type: str) -> http.HTTPFlow:
    f = tflow.tflow(resp=True)
    f.metadata["qwen"] = meta
    f.request.path = "/v1/messages"
    f.request.headers["content-type"] = "application/json"
    f.request.content = json.dumps(request).encode()
    f.response = http.Response.make(200, response, {"content-type": content_type})
    return f


@pytest.fixture
def views():
    register()
    with taddons.context():  # mitmproxy's contentviews read ctx.options
        yield


def test_views_are_chosen_by_the_record_and_tolerate_garbage(views):
    record = {"route": "messages", "endpoint": "messages"}
    f = flow(record, CLAUDE_CODE_REQUEST, messages_sse(), "text/event-stream")
    req, resp = contentviews.prettify_message(f.request, f), contentviews.prettify_message(f.response, f)
    assert req.view_name == "Anthropic request" and "→ tool_use Bash" in req.text
    assert resp.view_name == "Anthropic message" and "── assembled message" in resp.text
    assert resp.text.index("── raw events ──\nevent: message_start") > resp.text.index("stop: tool_use")
    whole = json.dumps(dict(chat_to_message({"choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}]},
                                            model="claude-haiku-4-5", sign=str))).encode()
    fw = flow(record, {**CLAUDE_CODE_REQUEST, "stream": False}, whole, "application/json")
    shown = contentviews.prettify_message(fw.response, fw)
    assert shown.view_name == "Anthropic message" and "text #0:\nHi\n\nstop: end_turn" in shown.text
    # the token count the gateway answers takes a Messages body; an OpenAI flow keeps its own view
    fc = flow({"route": "count_tokens"}, CLAUDE_CODE_REQUEST, b'{"input_tokens": 12}', "application/json")
    assert contentviews.prettify_message(fc.request, fc).view_name == "Anthropic request"
    assert contentviews.prettify_message(fc.response, fc).view_name != "Anthropic message"
    fo = flow({"route": "chat.completions", "endpoint": "chat.completions"}, {"model": "gpt-4o", "messages": []},
              b"{}", "application/json")
    assert contentviews.prettify_message(fo.request, fo).view_name == "OpenAI request"
    fs = flow({}, {}, messages_sse(), "text/event-stream")  # not the gateway's: known by its first event
    assert contentviews.prettify_message(fs.response, fs).view_name == "Anthropic message"
    for view in VIEWS:
        for junk in (b"", b"\xff\xfe", b"event: message_start\ndata: {\n\n", b"[1,2", b'{"type": "message"}',
                     b'data: {"type": "content_block_delta", "delta": {"type": "text_delta", "text": 5}}\n\n'):
            for message, kind in ((f.request, "application/json"), (f.response, "text/event-stream")):
                try:
                    view.prettify(junk, contentviews.Metadata(flow=f, content_type=kind, http_message=message))
                except ValueError:
                    pass


def test_the_upstream_view_of_a_messages_flow(views):
    """Forwarded: the request tab opens on what went to Qwen and names the Anthropic view for the client's
    side; passed through to an Anthropic-compatible base, the upstream body is a Messages body."""
    up = {"url": "https://portal.qwen.ai/v1/chat/completions", "headers": {"authorization": "Bearer <redacted>"},
          "body": {"model": "coder-model", "messages": [{"role": "user", "content": "hi"}]}}
    f = flow({"route": "messages", "endpoint": "messages", "upstream": up}, CLAUDE_CODE_REQUEST, b"", "text/plain")
    shown = contentviews.prettify_message(f.request, f)
    assert shown.view_name == "Qwen upstream request"
    assert 'the "Anthropic request" view shows the client\'s request' in shown.text
    assert "model: coder-model   stream: False\n\n[user]\nhi" in shown.text
    up.update(url="https://dashscope-intl.aliyuncs.com/apps/anthropic/v1/messages",
              body={"model": "qwen3-coder-plus", "max_tokens": 5, "messages": [
                  {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    shown = contentviews.prettify_message(f.request, f)
    assert "model: qwen3-coder-plus   stream: False   max_tokens: 5\n\n[user]\nhi" in shown.text


# ---- end to end: mitmweb, the gateway and the emulator ----------------------------------------------------

PASSWORD = "test-pass"


@pytest.fixture
def web(make_gateway, emu, oauth_home):
    port = free_port()
    gw = make_gateway("web", tool="mitmweb", env=oauth_home["env"], args=(
        "--set", f"web_password={argon2.PasswordHasher().hash(PASSWORD)}", "--set", f"web_port={port}",
        "--set", "web_host=127.0.0.1"))
    api = mitmweb_api(gw, port, PASSWORD)
    yield gw, api
    api.close()


def wait_flows(api, n: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        flows = [f for f in api.get("/flows").json() if f.get("comment")]
        if len(flows) >= n or time.monotonic() > deadline:
            return flows
        time.sleep(0.1)


@pytest.mark.e2e
def test_mitmweb_shows_a_messages_turn_assembled(web, emu):
    gw, api = web
    emu.switches(tool_calls="always")  # a call of the offered tool, whatever the prompt (docs/emulator.md)
    weather = {"name": "get_weather", "description": "The weather",
               "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30,
                      headers={"x-api-key": "sk-ant-client-key", "anthropic-version": "2023-06-01"}) as c:
        streamed = c.post("/v1/messages", json={
            "model": "claude-sonnet-4-5", "max_tokens": 2000, "stream": True, "tools": [weather],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "Weather in Paris?"}]})
        assert streamed.status_code == 200, streamed.text
        assert streamed.text.count("input_json_delta") == 2  # the emulator sends the arguments in two halves
        whole = c.post("/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 100,
                                             "messages": [{"role": "user", "content": "show me in mitmweb"}]})
        assert whole.status_code == 200, whole.text
    flows = sorted(wait_flows(api, 2), key=lambda f: f["request"]["timestamp_start"])
    assert [(f["request"]["method"], f["request"]["path"]) for f in flows] == [("POST", "/v1/messages")] * 2
    assert all("client: POST /v1/messages" in f["comment"] and f["comment"].startswith("claude-sonnet-4-5 → ")
               for f in flows), [f["comment"] for f in flows]
    stream_flow, whole_flow = flows
    shown = api.get(f"/flows/{stream_flow['id']}/response/content/auto.json").json()
    assert shown["view_name"] == "Anthropic message", shown
    text = shown["text"]
    assert "── assembled message" in text and "thinking #0:\nThinking about it.\n(signature: " in text
    assert 'tool use #1: get_weather (call_' in text and '{\n  "location": "Paris"\n}' in text
    assert "stop: tool_use\nusage: {" in text and "── raw events ──\nevent: message_start" in text
    shown = api.get(f"/flows/{whole_flow['id']}/response/content/auto.json").json()
    assert shown["view_name"] == "Anthropic message"
    assert "── message (model claude-sonnet-4-5" in shown["text"]
    assert "Echo: show me in mitmweb\n\nstop: end_turn" in shown["text"]
    # the request tab opens on what went to Qwen; the client's request is one click away
    assert api.get(f"/flows/{stream_flow['id']}/request/content/auto.json").json()["view_name"] == \
        "Qwen upstream request"
    client = api.get(f"/flows/{stream_flow['id']}/request/content/Anthropic%20request.json").json()
    assert client["view_name"] == "Anthropic request"
    assert client["text"].startswith("model: claude-sonnet-4-5   stream: True   max_tokens: 2000\n"
                                     'thinking: {"type": "enabled", "budget_tokens": 1024}\ntools (1): get_weather')
    assert "[user]\nWeather in Paris?" in client["text"]
