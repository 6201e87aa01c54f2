"""mitmweb's content views of the gateway's flows (mitmweb/contentviews.py): streams assembled into the answer they
make, requests described as a conversation, the request that went to Qwen in the detail view. The Messages API's
views: test_anthropic_views.py; summaries, markers and caps: test_flowview.py."""

from __future__ import annotations

import json

from mitmproxy import contentviews, http
from mitmproxy.test import tflow

from qwen_gateway.api.chat import ChatStreamTranslator
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.mitmweb.contentviews import (VIEWS, assemble_chat_stream, assemble_responses_stream, describe_request,
                                              register, render_assembled)
from qwen_gateway.mitmweb.flowview import FlowAnnotator
from qwen_gateway.sse import encode
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer
from helpers.observe_testlib import answered, chat_body, exchange, refused


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
    f.metadata["qwen"] = {"endpoint": "chat.completions"}  # a flow without an upstream record
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


def test_the_detail_view_shows_what_went_to_qwen():
    """The list shows the client's request; its detail view shows the upstream request from the record."""
    register()
    ex = exchange(body=chat_body("look"), upstream_body={"model": "coder-model", "stream": True, "messages": [
        {"role": "system", "content": "you are qwen"}, {"role": "user", "content": "look"}]})
    ex.attempt.headers["x-note"] = "Bearer tok-should-not-show-0123"
    f = answered(ex)
    FlowAnnotator().finished(ex, f)
    req = contentviews.prettify_message(f.request, f)
    assert req.view_name == "Qwen upstream request"
    lines = req.text.splitlines()
    assert lines[0] == "POST https://portal.qwen.ai/v1/chat/completions"
    assert "authorization: <redacted>" in lines and "x-dashscope-authtype: qwen-oauth" in lines
    assert "x-note: Bearer <redacted>" in lines and "tok-should-not-show" not in req.text
    assert "model: coder-model   stream: True" in req.text and "[system]" in req.text
    assert f.request.path == "/v1/chat/completions"  # the flow itself stays the client's request
    # without a kept body the view says so; without an upstream record it steps aside
    del f.metadata["qwen"]["upstream"]["body"]
    assert "body not kept" in contentviews.prettify_message(f.request, f).text
    refusal = refused(503, "no_usable_account", "none")
    fr = answered(refusal)
    assert contentviews.prettify_message(fr.request, fr).view_name == "OpenAI request"


def test_the_assembled_answer_reads_top_to_bottom():
    text = render_assembled(assemble_chat_stream(chat_sse()))
    lines = text.splitlines()
    assert lines[0].startswith("── assembled answer (") and "model gpt-4o" in lines[0]
    assert lines[1:8] == ["", "reasoning:", "hmm", "", "text:", "Hello", ""]
    assert lines[8].startswith("tool call #0: get_weather (call_1)")
    assert '"location": "Paris"' in text  # the arguments pretty-printed
    assert "finish: tool_calls" in lines and lines[-1].startswith("usage: ")


def test_an_error_inside_a_stream_is_shown():
    stream = b'data: {"choices": [{"index": 0, "delta": {"content": "part"}}]}\n\n' \
             b'data: {"error": {"message": "Qwen stopped", "type": "server_error"}}\n\n'
    a = assemble_chat_stream(stream)
    assert a["text"] == "part" and "Qwen stopped" in str(a["error"])
    assert render_assembled(a).splitlines()[-1].startswith("error: ")


def test_the_cache_doctor_view_shows_the_prefix_diff_of_a_missed_turn():
    from mitmproxy.test import taddons
    with taddons.context():
        _cache_doctor_view()


def _cache_doctor_view():
    from qwen_gateway.accounts import Conversation
    from qwen_gateway.observe.cache_doctor import CacheDoctor
    register()
    tools = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("Read", "Bash")]
    doctor = CacheDoctor()
    flows = []
    for order, prompt in ((tools, 3000), (tools[::-1], 3200)):
        ex = exchange(upstream_body={"model": "coder-model", "tools": order, "messages": [
            {"role": "system", "content": "secret system text"}, {"role": "user", "content": "hi"}]},
            usage={"prompt_tokens": prompt, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 0}})
        ex.conversation = Conversation("c0ffee", "session")
        f = answered(ex)
        doctor.finished(ex, f)
        flows.append(f)
    first, second = flows
    shown = contentviews.prettify_message(second.response, second, "Qwen cache doctor")
    assert shown.view_name == "Qwen cache doctor"
    lines = shown.text.splitlines()
    assert lines[0] == "cache: turn 2 read 0 of 3,200 prompt tokens (0%) · lost 3,000 vs turn 1: the tools were " \
                       "reordered (tools[0] Bash)"
    assert any(line.split()[:2] == ["→", "2"] and "tools[0] Bash" in line for line in lines), lines
    assert "secret system text" not in shown.text
    # a turn with nothing to diff says its share only; a flow without the record: not this view's
    assert contentviews.prettify_message(first.response, first, "Qwen cache doctor").text.startswith(
        "cache: turn 1 read 0 of 3,000")
    assert "no change" in contentviews.prettify_message(first.response, first, "Qwen cache doctor").text
    other = answered(exchange())
    assert contentviews.prettify_message(other.response, other, "Qwen cache doctor").view_name != "Qwen cache doctor" \
        or "error" in contentviews.prettify_message(other.response, other, "Qwen cache doctor").text.lower()
