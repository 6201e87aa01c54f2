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


def explicit(prompt: int, read: int, written: int, *, hour: bool = False) -> dict:
    """Qwen's usage of a request with cache markers (Model Studio's explicit cache)."""
    creation = {"ephemeral_1h_input_tokens" if hour else "ephemeral_5m_input_tokens": written}
    return {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1,
            "prompt_tokens_details": {"cached_tokens": read, "cache_creation_input_tokens": written,
                                      "cache_creation": creation, "cache_type": "ephemeral"}}


def test_a_broken_request_with_markers_is_billed_as_the_cache_write_it_was():
    """The request that broke had stored its marked prefix (the continuation on the same account reads it all):
    what it read of an earlier turn's prefix was a read, the rest of that prefix a write (5-minute or hour)."""
    count = encoding().count
    for hour in (False, True):
        answer = AnswerSoFar(ChunkNormalizer("gpt-4o"))
        answer.feed(event({"content": "one two "}))
        answer.continued(ChunkNormalizer("gpt-4o"), same_account=True, read_before=1_500, hour=hour)
        answer.feed(event({"content": "three"}, cid="b"))
        (last,) = answer.feed(event(usage=explicit(5_000 + count("one two "), 4_000, 0), cid="b"))
        details = last["usage"]["prompt_tokens_details"]
        assert details["cached_tokens"] == 4_000 + 1_500  # the continuation's read, the broken one's read
        assert details["cache_creation_input_tokens"] == 4_000 - 1_500  # the broken one stored the rest
        bucket = "ephemeral_1h_input_tokens" if hour else "ephemeral_5m_input_tokens"
        assert details["cache_creation"][bucket] == 2_500, details
        assert last["usage"]["prompt_tokens"] == 2 * 5_000 + count("one two ")


def test_a_broken_requests_cache_share_is_not_guessed_where_the_continuation_cannot_tell_it():
    """Continued on another account (whose cache holds nothing of the broken request's), or without markers:
    the broken request's prompt stays plain input, as estimated."""
    answer = AnswerSoFar(ChunkNormalizer("gpt-4o"))
    answer.feed(event({"content": "one two "}))
    answer.continued(ChunkNormalizer("gpt-4o"), same_account=False, read_before=1_500, hour=False)
    (last,) = answer.feed(event(usage=explicit(5_000, 0, 4_000), cid="b"))
    details = last["usage"]["prompt_tokens_details"]
    assert (details["cached_tokens"], details["cache_creation_input_tokens"]) == (0, 4_000)


def test_a_broken_request_marked_to_its_end_is_counted_as_qwen_counted_it():
    """Its last message ended in a marker: Qwen stored its whole prompt, and what the continuation read of the
    cache is that prompt, in Qwen's count; the rest of the continuation's prompt is the text it had sent. The
    gateway's tokenizer, which counts that text otherwise, is not asked (before: a 500-token prefix left the
    turn's prompts 3.5 % under Qwen's bill)."""
    count = encoding().count
    prefix = "token1 is, perhaps, the (next) word-7. " * 40
    answer = AnswerSoFar(ChunkNormalizer("gpt-4o"))
    answer.feed(event({"content": prefix}))
    answer.continued(ChunkNormalizer("gpt-4o"), same_account=True, read_before=1_583, marked_to_end=True)
    answer.feed(event({"content": "and the end."}, cid="b"))
    (last,) = answer.feed(event(usage=explicit(3_326 + 219, 3_326, 0), cid="b"))  # Qwen's 219 for the prefix
    assert count(prefix) != 219  # the gateway's count would differ
    assert answer.estimated == (3_326, 219)
    usage = last["usage"]
    assert usage["prompt_tokens"] == 3_545 + 3_326 and usage["completion_tokens"] == 1 + 219
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3_326 + 1_583
    assert usage["prompt_tokens_details"]["cache_creation_input_tokens"] == 3_326 - 1_583
    unmarked = AnswerSoFar(ChunkNormalizer("gpt-4o"))  # its last message carried no marker: the estimate, as before
    unmarked.feed(event({"content": prefix}))
    unmarked.continued(ChunkNormalizer("gpt-4o"), same_account=True, read_before=1_583, marked_to_end=False)
    unmarked.feed(event(usage=explicit(3_326 + 219, 3_326, 0), cid="b"))
    assert unmarked.estimated == (3_545 - count(prefix), count(prefix))


def test_a_broken_request_continued_elsewhere_read_what_its_account_held_and_wrote_the_rest():
    """Continued on another account (a throttle inside the stream): the continuation's read says nothing of the
    broken request's account, but the cache doctor knows what that account held (`read_before`); marked to its
    end, the request read that and wrote the rest of its prompt (before: all of it plain input, +16 %)."""
    count = encoding().count
    answer = AnswerSoFar(ChunkNormalizer("gpt-4o"))
    answer.feed(event({"content": "one two "}))
    answer.continued(ChunkNormalizer("gpt-4o"), same_account=False, read_before=1_500, marked_to_end=True)
    (last,) = answer.feed(event(usage=explicit(5_000, 0, 5_000 - count("one two ") + 4), cid="b"))
    mine = 5_000 - count("one two ")  # the broken request's prompt, estimated
    details = last["usage"]["prompt_tokens_details"]
    assert details["cached_tokens"] == 1_500 and answer.estimated_cache == (1_500, mine - 1_500)
    assert details["cache_creation_input_tokens"] == (mine + 4) + (mine - 1_500)
