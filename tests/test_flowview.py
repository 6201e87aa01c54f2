"""mitmweb presentation: summaries, markers, the flow cap and the content views (unit, mitmproxy style)."""

from __future__ import annotations

import json

from mitmproxy import contentviews, http
from mitmproxy.addons.view import View
from mitmproxy.test import taddons, tflow

from qwen_gateway.chat_stream import ChatStreamTranslator, ChunkNormalizer
from qwen_gateway.contentviews import (VIEWS, assemble_chat_stream, assemble_responses_stream, describe_request,
                                         register)
from qwen_gateway.flowview import MARK_ERROR, MARK_OK, MARK_RETRIED, FlowAnnotator, FlowCap, marker, summary_line
from qwen_gateway.responses_stream import ResponsesStreamTranslator
from qwen_gateway.sse import encode
from qwen_gateway.streaming import StreamRewriter

META = {"endpoint": "chat.completions", "model": "gpt-4o", "upstream_model": "coder-model", "account": "default",
        "status": 200, "usage": {"prompt_tokens": 12, "completion_tokens": 34, "prompt_tokens_details":
                                 {"cached_tokens": 2}}, "ttfb_ms": 85.4, "duration_ms": 1200, "retries": 1,
        "notes": ["quota exhausted on a: rotated"],
        "client": {"method": "POST", "url": "http://127.0.0.1:8080/v1/chat/completions", "key": "sk-… (20 chars)"}}


def test_summary_line_and_markers():
    line = summary_line(META)
    assert line.splitlines()[0] == ("gpt-4o → coder-model · acct default · 200 · in 12 / out 34 (cached 2) · "
                                    "ttfb 85 ms · 1.20 s · retries 1")
    assert "quota exhausted on a: rotated" in line and "client: POST http://127.0.0.1:8080/v1/chat/completions" in line
    assert marker(META) == MARK_RETRIED
    assert marker({**META, "retries": 0}) == MARK_OK
    assert marker({**META, "error": {"status": 429, "message": "quota"}}) == MARK_ERROR


def test_annotator_keeps_a_users_marker():
    f = tflow.tflow(resp=True)
    f.metadata["qwen"] = dict(META)
    FlowAnnotator().response(f)
    assert f.comment.startswith("gpt-4o → coder-model") and f.marked == MARK_RETRIED
    f.marked = ":star:"  # a person marked it
    FlowAnnotator().response(f)
    assert f.marked == ":star:"


def test_flow_cap_removes_oldest_finished_but_keeps_user_marked():
    view = View()
    cap = FlowCap()
    with taddons.context(view, cap) as tctx:
        tctx.configure(cap, qwen_web_flow_limit=3)
        cap.running()
        flows = []
        for i in range(6):
            f = tflow.tflow(resp=True)
            f.live = False
            f.metadata["qwen"] = dict(META)
            FlowAnnotator().response(f)
            if i == 0:
                f.marked = ":star:"
            view.add([f])
            cap.response(f)
            flows.append(f)
        kept = [f.id for f in view]
        assert flows[0].id in kept and len(kept) == 3
        assert flows[-1].id in kept and flows[1].id not in kept


def chat_sse() -> bytes:
    rw = StreamRewriter(ChunkNormalizer("gpt-4o"), ChatStreamTranslator(True))
    body = b"".join(encode(c) for c in [
        {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hello"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {
            "name": "get_weather", "arguments": "{\"location\":"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}]) + b"data: [DONE]\n\n"
    return rw.run(body)


def test_assembles_chat_and_responses_streams():
    a = assemble_chat_stream(chat_sse())
    assert a["text"] == "Hello" and a["reasoning"] == "hmm" and a["finish_reason"] == "tool_calls"
    assert a["tool_calls"][0]["name"] == "get_weather" and json.loads(a["tool_calls"][0]["arguments"]) == {
        "location": "Paris"}
    assert a["usage"]["total_tokens"] == 7
    rw = StreamRewriter(ChunkNormalizer("gpt-4o"), ResponsesStreamTranslator({"model": "gpt-4o"}, response_id="resp_1",
                                                                            created_at=1))
    b = assemble_responses_stream(rw.run(b"".join(encode(c) for c in [
        {"choices": [{"index": 0, "delta": {"content": "Hi there"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}]) + b"data: [DONE]\n\n"))
    assert b["text"] == "Hi there" and b["finish_reason"] == "completed" and b["usage"]["total_tokens"] == 7


def test_views_are_selected_automatically_and_tolerate_garbage():
    register()
    f = tflow.tflow(resp=True)
    f.metadata["qwen"] = {"endpoint": "chat.completions"}
    f.response = http.Response.make(200, chat_sse(), {"content-type": "text/event-stream"})
    result = contentviews.prettify_message(f.response, f)
    assert result.view_name == "Qwen chat stream" and "text:\nHello" in result.text
    f.request.headers["content-type"] = "application/json"
    f.request.content = json.dumps({"model": "coder-model", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}]}]}).encode()
    req = contentviews.prettify_message(f.request, f)
    assert req.view_name == "OpenAI request" and "[image]" in req.text
    for view in VIEWS:
        for junk in (b"", b"\xff\xfe", b"data: {\n\n", b"[1,2"):
            try:
                view.prettify(junk, contentviews.Metadata(flow=f, content_type="text/event-stream",
                                                          http_message=f.response))
            except ValueError:
                pass


def test_describe_request_handles_responses_input():
    text = describe_request({"model": "gpt-4o", "instructions": "be nice", "tools": [{"type": "function",
                             "name": "f"}], "input": [{"type": "function_call_output", "call_id": "c1",
                                                       "output": "42"}]})
    assert "[instructions]" in text and "tools: f" in text and "(for call c1)" in text
