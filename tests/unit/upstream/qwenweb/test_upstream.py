"""The Qwen Chat web upstream's pure parts (upstream/qwenweb/): its headers and wire request, the frame → chunk
normaliser, and the error envelopes and punish pages mapped to the gateway's errors. The request builder, the
`<tool_call>` parser and the pacing: test_request.py, test_tools.py, test_pacing.py."""

from __future__ import annotations

import json

import pytest

from qwen_gateway import errors
from qwen_gateway.accounts import WEB, Credential
from qwen_gateway.turn.assembler import ChunkAssembler
from qwen_gateway.redact import SECRET_HEADERS
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.qwenweb import errors as web_errors
from qwen_gateway.upstream.qwenweb.headers import web_headers
from qwen_gateway.upstream.qwenweb.stream import WebChunks
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


# ---- the headers and the wire request ------------------------------------------------------------------


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
