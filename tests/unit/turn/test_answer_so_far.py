"""What the client has been sent of a streamed answer the turn may continue (turn/answer_so_far.py): its text, whether
anything but text went out, and a continuation's chunks as more of the same answer — the first id and time, no
second opening, the usage of every request that made the answer."""

from __future__ import annotations

from qwen_gateway.tokens import encoding
from qwen_gateway.turn.answer_so_far import AnswerSoFar
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer


def event(delta: dict | None = None, finish=None, *, cid="chatcmpl-a", created=7, usage=None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": "q", "choices": choices,
            "usage": usage}


def test_the_text_sent_is_kept_and_only_text():
    answer = AnswerSoFar(ChunkNormalizer("gpt-4o"))
    for ev in (event({"role": "assistant", "content": ""}), event({"content": "Hel"}), event({"content": "lo"})):
        answer.feed(ev)
    assert answer.text == "Hello" and not answer.more_than_text and answer.id == "chatcmpl-a"
    answer.feed(event({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]}))
    assert answer.more_than_text
    thinking = AnswerSoFar(ChunkNormalizer("gpt-4o"))
    thinking.feed(event({"reasoning_content": "hmm"}))
    assert thinking.more_than_text and thinking.text == ""


def test_a_continuation_is_more_of_the_first_answer():
    answer = AnswerSoFar(ChunkNormalizer("gpt-4o"))
    answer.feed(event({"role": "assistant", "content": ""}))
    answer.feed(event({"content": "Echo: "}))
    answer.continued(ChunkNormalizer("gpt-4o"))
    assert answer.feed(event({"role": "assistant", "content": ""}, cid="chatcmpl-b", created=9)) == []  # its opening
    (chunk,) = answer.feed(event({"content": "hi"}, cid="chatcmpl-b", created=9))
    assert (chunk["id"], chunk["created"], chunk["choices"][0]["delta"]) == ("chatcmpl-a", 7, {"content": "hi"})
    (chunk,) = answer.feed(event({}, "stop", cid="chatcmpl-b", created=9))
    assert chunk["choices"][0]["finish_reason"] == "stop" and answer.finish_reasons == {0: "stop"}
    assert answer.text == "Echo: hi"


def test_usage_sums_what_qwen_reported_and_estimates_what_it_did_not():
    count = encoding().count
    answer = AnswerSoFar(ChunkNormalizer("gpt-4o"))
    answer.feed(event({"content": "one two "}))
    answer.continued(ChunkNormalizer("gpt-4o"))  # broke with no usage: estimated
    answer.feed(event({"content": "three "}, cid="b"))
    answer.feed(event(usage={"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}, cid="b"))
    answer.continued(ChunkNormalizer("gpt-4o"))  # reported its usage before it broke: as reported
    answer.feed(event({"content": "four"}, cid="c"))
    (last,) = answer.feed(event(usage={"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51,
                                       "prompt_tokens_details": {"cached_tokens": 40}}, cid="c"))
    shared = 50 - count("one two three ")  # Qwen's count of the prompt the three requests share
    assert answer.estimated == (shared, count("one two "))
    assert last["usage"]["prompt_tokens"] == 50 + 30 + shared
    assert last["usage"]["completion_tokens"] == 1 + 2 + count("one two ")
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
    assert last["usage"]["prompt_tokens_details"] == {"cached_tokens": 40} and answer.usage == last["usage"]
