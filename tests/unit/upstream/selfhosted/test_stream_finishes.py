"""A self-hosted server's finishes the client's API has no word for (upstream/selfhosted/stream.py): vLLM's and
SGLang's `abort` and vLLM's `error` break the answer off (continued, or the dialect's error), vLLM's `repetition` is
an incomplete answer said as `length`, with the server's own word on the flow."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.errors import SERVER
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.upstream.selfhosted.stream import Chunks

OPENAI_FINISHES = {"stop", "length", "tool_calls", "content_filter", "function_call"}


class Recorder:
    def __init__(self) -> None:
        self.finishes: list[str] = []
        self.failed: list[dict] = []

    def feed(self, chunk):
        self.finishes += [c["finish_reason"] for c in chunk["choices"] if c.get("finish_reason")]
        return [b"x"]

    def finish(self):
        return [b"end"]

    def fail(self, error):
        self.failed.append(error)
        return [b"failed"]


def sse(*events: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def choice(content: str | None, finish: str | None = None) -> dict:
    delta = {} if content is None else {"content": content}
    return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.mark.parametrize("finish", ["abort", "error", "something_new"])
def test_abort_and_error_break_the_answer_off(finish):
    chunks = Chunks("gpt-4o")
    out = chunks.feed(choice("half", finish))
    assert out and out[0]["choices"][0]["finish_reason"] is None  # the text goes out, never the server's word
    assert chunks.finish_reasons == {} and chunks.error_text and finish in chunks.error_text
    err = chunks.fault(chunks.error_text)
    assert (err.kind, err.status, err.code, err.type) == (SERVER, 502, "upstream_error", "server_error")


@pytest.mark.parametrize("finish", ["abort", "error"])
def test_a_stream_broken_off_ends_in_the_clients_error_never_a_finish(finish):
    rec = Recorder()
    rw = StreamRewriter(Chunks("gpt-4o"), rec)
    rw.run(sse(choice("Hel"), choice("lo", finish)))
    assert rw.error is not None and rw.error["code"] == "upstream_error" and rec.failed
    assert rec.finishes == [] and not rw.unfinished_end


def test_a_held_break_is_for_the_turn_to_continue():
    rw = StreamRewriter(Chunks("gpt-4o"), Recorder(), holds_breaks=True)
    rw(sse(choice("Hel"), choice(None, "abort")))
    assert rw.broken is not None and rw.error is None and rw.upstream_kind is SERVER  # continued on the same account


def test_repetition_is_an_incomplete_answer_said_as_length_with_the_servers_word_noted():
    rec = Recorder()
    chunks = Chunks("gpt-4o")
    rw = StreamRewriter(chunks, rec)
    rw.run(sse(choice("la la la"), choice(None, "repetition")))
    assert rw.error is None and rec.finishes == ["length"] and chunks.finish_reasons == {0: "length"}
    assert set(rec.finishes) <= OPENAI_FINISHES
    assert chunks.notes and "'repetition'" in chunks.notes[0]


def test_the_known_finishes_pass_as_they_came():
    for finish in ("stop", "length", "tool_calls", "content_filter"):
        chunks = Chunks("gpt-4o")
        assert chunks.feed(choice("a", finish))[0]["choices"][0]["finish_reason"] == finish
        assert chunks.error_text is None and chunks.notes == []


def dialects():
    from qwen_gateway.api.chat import ChatStreamTranslator
    from qwen_gateway.api.messages.stream import MessagesStreamTranslator
    from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
    return {"chat": lambda: ChatStreamTranslator(False, {"model": "m"}),
            "responses": lambda: ResponsesStreamTranslator({"model": "m"}, response_id="resp_1", created_at=1),
            "messages": lambda: MessagesStreamTranslator(model="m", sign=lambda t: t)}


def client_events(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


@pytest.mark.parametrize("dialect", ["chat", "responses", "messages"])
def test_repetition_in_each_dialects_own_words(dialect):
    raw = StreamRewriter(Chunks("m"), dialects()[dialect]()).run(sse(choice("la la"), choice(None, "repetition")))
    events = client_events(raw)
    if dialect == "chat":
        assert [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]] == ["length"]
    elif dialect == "responses":
        last = events[-1]
        assert last["type"] == "response.incomplete" and last["response"]["status"] == "incomplete"
        assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    else:
        delta = [e for e in events if e["type"] == "message_delta"]
        assert delta[0]["delta"]["stop_reason"] == "max_tokens" and events[-1]["type"] == "message_stop"
    assert b"repetition" not in raw


@pytest.mark.parametrize("dialect", ["chat", "responses", "messages"])
def test_abort_in_each_dialects_terminal_error(dialect):
    raw = StreamRewriter(Chunks("m"), dialects()[dialect]()).run(sse(choice("la la"), choice(None, "abort")))
    events = client_events(raw)
    last = events[-1]
    assert ("error" in last) if dialect == "chat" else last["type"] in ("response.failed", "error"), last
    assert b'"abort"' not in raw or b"finish_reason 'abort'" in raw  # never as a finish
    assert not any(c.get("finish_reason") for e in events for c in e.get("choices") or [])
