"""The Qwen Chat web upstream's pure parts (upstream/qwenweb/): the request builder (history flattened into one
message, tools described), the frame → chunk normaliser, the `<tool_call>` parser with its tags split at every
offset, and the error envelopes and punish pages mapped to the gateway's errors."""

from __future__ import annotations

import json

import pytest

from qwen_gateway import errors
from qwen_gateway.accounts import WEB, Credential
from qwen_gateway.turn.assembler import ChunkAssembler
from qwen_gateway.errors import GatewayError
from qwen_gateway.redact import SECRET_HEADERS
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.qwenweb import errors as web_errors, request
from qwen_gateway.upstream.qwenweb.headers import web_headers
from qwen_gateway.upstream.qwenweb.pacing import Pacer
from qwen_gateway.upstream.qwenweb.stream import WebChunks
from qwen_gateway.upstream.qwenweb.tools import ToolCallParser, describe
from qwen_gateway.upstream.qwenweb.upstream import QwenWeb

QWEN_WEB = QwenWeb()

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def frame(phase: str | None, content: str = "", status: str = "typing", **more) -> dict:
    delta = {"role": "assistant", "content": content, "status": status, **more}
    if phase is not None:
        delta["phase"] = phase
    return {"choices": [{"delta": delta}], "response_id": "r1"}


def sse(*frames: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames)


# ---- the request builder ----------------------------------------------------------------------------

def test_a_lone_user_message_is_sent_as_it_is():
    notes: list[str] = []
    body = request.completion_body({"messages": [{"role": "user", "content": "hi"}]}, model="qwen3.7-max",
                                   notes=notes, now=1790000000)
    node, = body["messages"]
    assert node["content"] == "hi" and node["role"] == "user" and body["model"] == "qwen3.7-max"
    assert body["stream"] is True and body["incremental_output"] is True and body["chat_id"] is None
    assert body["feature_config"]["output_schema"] == "phase" and body["timestamp"] == 1790000000
    assert notes == []


def test_a_model_the_web_app_lacks_goes_to_its_best_model_with_a_note():
    notes: list[str] = []
    body = request.completion_body({"messages": [{"role": "user", "content": "hi"}]}, model="coder-model", notes=notes)
    assert body["model"] == "qwen3.8-max" and "coder-model" in notes[0]  # the static list's best (catalogue.rank)


def test_history_is_flattened_system_first_tool_calls_and_results_as_text():
    chat = {"messages": [{"role": "system", "content": "Be terse."},
                         {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "call_1", "type": "function",
                              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                         {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
            "tools": TOOLS}
    text = request.flatten(chat)
    assert text.startswith("Be terse.\n\n# Tools")
    assert 'User: weather?' in text
    assert 'Assistant: <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in text
    assert "Tool result (call_1): sunny" in text and text.endswith("answer the last message.")


def test_tool_choice_none_leaves_the_tools_out_and_required_says_so():
    assert describe(TOOLS, "none") is None and describe([], "auto") is None
    assert "must call at least one" in (describe(TOOLS, "required") or "")
    forced = describe(TOOLS, {"type": "function", "function": {"name": "get_weather"}}) or ""
    assert "must call the function get_weather" in forced


def test_thinking_follows_the_client():
    def thinking(**chat) -> bool:
        body = request.completion_body({"messages": [{"role": "user", "content": "x"}], **chat}, model="m", notes=[])
        return body["feature_config"]["thinking_enabled"]
    assert thinking() is True and thinking(enable_thinking=False) is False and thinking(reasoning_effort="none") is False


def test_an_image_is_a_clear_400():
    chat = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"},
                                                      {"type": "image_url", "image_url": {"url": "data:,"}}]}]}
    with pytest.raises(GatewayError) as e:
        request.completion_body(chat, model="m", notes=[])
    assert e.value.status == 400 and e.value.param == "messages[0].content" and e.value.code == "unsupported_value"


def test_knobs_the_web_app_lacks_are_dropped_with_a_note_and_n_and_logprobs_refused():
    notes: list[str] = []
    request.completion_body({"messages": [{"role": "user", "content": "x"}], "temperature": 0.2, "max_tokens": 9},
                            model="qwen3.7-plus", notes=notes)
    assert [n.split(":")[0] for n in notes] == ["temperature", "max_tokens"]
    for field, value in (("n", 2), ("logprobs", True)):
        with pytest.raises(GatewayError) as e:
            request.completion_body({"messages": [{"role": "user", "content": "x"}], field: value}, model="m", notes=[])
        assert (e.value.status, e.value.param, e.value.code) == (400, field, "unsupported_value")
    with pytest.raises(GatewayError) as e:
        request.completion_body({"messages": [{"role": "user", "content": "x"}], "web_search_options": {}},
                                model="m", notes=[])
    assert e.value.param == "web_search_options"
    notes = []
    request.completion_body({"messages": [{"role": "user", "content": "x"}],
                             "web_search_options": {"optional": True, "param": "tools"}}, model="m", notes=notes)
    assert any("search tool was dropped" in n for n in notes)


def test_the_headers_carry_the_session_and_the_record_shows_none_of_it():
    cred = Credential("chat", WEB, "http://127.0.0.1:9/", "tok", cookies={"token": "old", "ssxmod_itna": "jar"},
                      headers={"user-agent": "UA", "bx-ua": "secret-ua", "bx-v": "2.5.36"})
    new = dict(web_headers(cred, "127.0.0.1:9", bearer=False))
    assert "Authorization" not in new and new["Cookie"] == "token=tok; ssxmod_itna=jar"  # the current token
    comp = dict(web_headers(cred, "127.0.0.1:9", bearer=True))
    assert comp["Authorization"] == "Bearer tok" and comp["bx-ua"] == "secret-ua" and comp["User-Agent"] == "UA"
    assert comp["version"] and comp["source"] == "web"
    assert {"cookie", "authorization", "bx-ua", "bx-umidtoken"} <= SECRET_HEADERS
    wire = QWEN_WEB.wire(cred, "", {"chat_id": "c1", "model": "m"}, user_agent="x", stream=True, attempt=0)
    assert wire.url == "http://127.0.0.1:9/api/v2/chat/completions?chat_id=c1"


# ---- the frames ---------------------------------------------------------------------------------------

def run(*frames: dict) -> dict:
    assembler = ChunkAssembler()
    rw = StreamRewriter(WebChunks("gpt-4o"), assembler)
    rw.run(sse(*frames))
    assert rw.error is None, rw.error
    return assembler.completion()


def test_phases_become_reasoning_and_content_with_the_last_usage():
    usage = {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6, "characters": 0,
             "input_tokens_details": {"cached_tokens": 2}}
    out = run({"response.created": {"chat_id": "c", "parent_id": None, "response_id": "r1"}},
              frame("think", "Thinking "), frame("think", "hard"), frame("think", status="finished"),
              {**frame("answer", "Echo:"), "usage": usage},
              {**frame("answer", " hi"), "usage": {**usage, "output_tokens": 3, "total_tokens": 8}},
              frame("answer", status="finished"))
    msg = out["choices"][0]["message"]
    assert (msg["reasoning_content"], msg["content"]) == ("Thinking hard", "Echo: hi")
    assert out["choices"][0]["finish_reason"] == "stop" and out["model"] == "gpt-4o"
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                            "prompt_tokens_details": {"cached_tokens": 2}}


def test_summary_thinking_sends_only_the_new_tail_and_a_thinking_finish_is_not_the_end():
    def summary(*items: str, status: str = "typing") -> dict:
        return frame("thinking_summary", status=status, extra={"summary_thought": {"content": list(items)}})
    source = WebChunks("m")
    got = [c for f in (summary("a"), summary("a", "b"), summary("a", "b", status="finished")) for c in source.feed(f)]
    assert [c["choices"][0]["delta"]["reasoning_content"] for c in got] == ["a\n", "b\n"]
    assert source.finish_reasons == {}
    source.feed(frame("answer", status="finished"))
    assert source.finish_reasons == {0: "stop"}


def test_frames_of_another_response_are_ignored_and_the_end_has_no_done():
    source = WebChunks("m")
    source.feed(frame("answer", "mine"))
    assert source.feed({**frame("answer", "theirs"), "response_id": "r2"}) == []
    rw = StreamRewriter(WebChunks("m"), ChunkAssembler())
    rw.run(sse(frame("answer", "cut")))  # no end frame: cut off
    assert rw.error is not None and "before the answer was complete" in rw.error["message"]


def test_an_error_frame_is_a_502():
    rw = StreamRewriter(WebChunks("m"), ChunkAssembler())
    rw.run(sse(frame("answer", "x"), {"error": {"code": "invalid_input", "details": "bad url"}}))
    assert rw.upstream_error is not None and rw.upstream_error.status == 502
    assert "bad url" in rw.upstream_error.message


def test_a_tool_call_block_becomes_a_tool_call_and_the_finish_says_so():
    block = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    out = run(*[frame("answer", block[i:i + 7]) for i in range(0, len(block), 7)], frame("answer", status="finished"))
    choice = out["choices"][0]
    call, = choice["message"]["tool_calls"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert call["id"].startswith("call_")


# ---- the tool-call parser -------------------------------------------------------------------------------

TEXT = 'Let me check. <tool_call>{"name": "a", "arguments": {"x": "<b>"}}</tool_call> and <tool_call>' \
       '{"name": "b", "arguments": "{}"}</tool_call> done <tool'


def parse(pieces: list[str]) -> list[tuple[str, object]]:
    p = ToolCallParser()
    out = [ev for piece in pieces for ev in p.feed(piece)] + p.flush()
    merged: list[tuple[str, object]] = []
    for kind, value in out:  # adjacent text pieces joined: where text is cut does not matter
        if kind == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", str(merged[-1][1]) + str(value))
        else:
            merged.append((kind, value))
    return merged


EXPECTED = [("text", "Let me check. "), ("call", {"name": "a", "arguments": '{"x": "<b>"}'}), ("text", " and "),
            ("call", {"name": "b", "arguments": "{}"}), ("text", " done <tool")]


@pytest.mark.parametrize("cut", range(len(TEXT) + 1))
def test_the_parser_finds_calls_split_at_any_offset(cut):
    assert parse([TEXT[:cut], TEXT[cut:]]) == EXPECTED


def test_the_parser_one_character_at_a_time_and_what_is_not_a_call():
    assert parse(list(TEXT)) == EXPECTED
    assert parse(["<tool_call>not json</tool_call>"]) == [("text", "<tool_call>not json</tool_call>")]
    assert parse(["a <tool_call>{\"name\": \"x\""]) == [("text", 'a <tool_call>{"name": "x"')]  # never closed
    assert parse(["a < b"]) == [("text", "a < b")]


# ---- errors -----------------------------------------------------------------------------------------------

def envelope(code: str, details: str = "", **more) -> bytes:
    return json.dumps({"success": False, "data": {"code": code, "details": details, **more}}).encode()


JSON = {"content-type": "application/json"}


def test_envelopes_map_to_the_gateways_errors():
    limited = web_errors.classify(200, envelope("RateLimited", "You've reached the upper limit for today's usage.",
                                                num=3), JSON)
    assert (limited.kind, limited.status, limited.retry_after) == (errors.QUOTA, 429, 10800.0)
    assert limited.headers == {"retry-after": "10800"} and "upper limit" in limited.message
    auth = web_errors.classify(200, envelope("Unauthorized", "401 Unauthorized"), JSON)
    assert (auth.kind, auth.status) == (errors.AUTH, 401)
    assert web_errors.classify(200, envelope("unauthorized"), JSON).kind is errors.AUTH
    assert web_errors.classify(401, b"", {}).kind is errors.AUTH
    bad = web_errors.classify(200, envelope("Bad_Request", "Something wrong with request!"), JSON)
    assert (bad.kind, bad.status, bad.code) == (errors.SERVER, 502, "upstream_bad_request")
    missing = web_errors.classify(200, envelope("Not_Found", "Model not found"), JSON)
    assert (missing.status, missing.code) == (404, "model_not_found")
    assert web_errors.classify(200, envelope("ParallelLimited"), JSON).kind is errors.THROTTLE


@pytest.mark.parametrize("body", [
    b'<html><script>window.location.replace("https://chat.qwen.ai/_____tmd_____/punish?x5secdata=x")</script>',
    json.dumps({"ret": ["FAIL_SYS_USER_VALIDATE", "RGV587_ERROR::SM::x"], "data": {"url": "u"}}).encode(),
    b"<html>" + b" " * 16000 + b"aliyun_waf <div id='baxia-dialog-content'></div></html>",
])
def test_punish_pages_are_a_503_never_retried(body):
    err = web_errors.classify(200, body, {"content-type": "text/html"})
    assert (err.kind, err.status) == (errors.PUNISHED, 503) and "fresh browser login" in err.message


def test_only_a_stream_is_an_answer():
    assert not QWEN_WEB.refused(200, {"Content-Type": "text/event-stream; charset=utf-8"})
    assert QWEN_WEB.refused(200, {"content-type": "application/json"}) and QWEN_WEB.refused(200, {})
    assert QWEN_WEB.refused(500, {"content-type": "text/event-stream"})


# ---- pacing ---------------------------------------------------------------------------------------------------

def test_pacing_books_one_slot_per_interval_and_account():
    now = [100.0]
    pacer = Pacer(3, clock=lambda: now[0])
    assert [pacer.book("a") for _ in range(3)] == [0, 3, 6]  # concurrent requests queue in order
    assert pacer.book("b") == 0  # another account has its own pace
    now[0] = 110.0
    assert pacer.book("a") == 0 and Pacer(0).book("a") == 0
