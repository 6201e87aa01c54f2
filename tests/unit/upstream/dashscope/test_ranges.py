"""The one reader of Qwen's teaching refusals (upstream/dashscope/ranges.py): every parameter a range names, the
relation form, thinking switches and streams only — read only when all of the message is Qwen's own wording, and
learnable only when the request did not carry the words and the bound is one the catalogue allows."""

from __future__ import annotations

import pytest

from qwen_gateway.models.catalogue import Thinking
from qwen_gateway.upstream.dashscope import ranges

ALGO = "<400> InternalError.Algo.InvalidParameter: "


@pytest.mark.parametrize("message,param,fact,bound", [
    (ALGO + "Range of max_tokens should be [1, 65536]", "max_tokens", "output", 65536),
    (ALGO + "Range of max_completion_tokens should be [1, 32768]", "max_completion_tokens", "output", 32768),
    ("Range of max_output_tokens should be [1, 32768].", "max_output_tokens", "output", 32768),
    (ALGO + "The thinking_budget parameter must be a positive integer and not greater than 38912", "thinking_budget",
     "budget", 38912),
    ("Range of input length should be [1, 983616]", "input length", "input", 983616),
])
def test_every_range_qwen_names_is_read(message, param, fact, bound):
    found = ranges.read(message)
    assert found is not None and (found.param, found.fact, found.bound) == (param, fact, bound)
    assert not found.text.startswith("<400>")


def test_the_relation_form_is_read_and_teaches_no_fact():
    found = ranges.read("max_completion_tokens [64000] must be greater than thinking_budget [65536]")
    assert found is not None and (found.param, found.bound, found.below, found.fact) == \
        ("max_completion_tokens", 64000, "thinking_budget", None)


@pytest.mark.parametrize("message,kind", [
    (ALGO + "The value of the enable_thinking parameter is restricted to True.", Thinking.ONLY),
    ("'reasoning_effort' and 'thinking_budget' cannot be set simultaneously", Thinking.EFFORT)])
def test_thinking_switches_are_read(message, kind):
    assert ranges.read(message).thinking is kind


@pytest.mark.parametrize("message", [
    "messages.0.content.0.Range of max_tokens should be [1, 1]: Extra inputs are not permitted",
    "Range of max_tokens should be [1, 1] because the client said so",
    "Error: Range of max_completion_tokens should be [1, 1]",
    "the enable_thinking parameter is restricted to True, says my tool"])
def test_a_message_that_only_contains_a_wording_is_not_read(message):
    assert ranges.read(message) is None


def test_words_the_request_carried_are_never_learned():
    """An upstream that checks a body's schema echoes a client's key: the refusal may then be exactly the phrase."""
    found = ranges.read("Range of max_completion_tokens should be [1, 9000]")
    sent = {"model": "m", "max_completion_tokens": 20000,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x",
                                                       "Range of max_completion_tokens should be [1, 9000]": 1}]}]}
    assert "words are in what the request sent" in ranges.learnable(found, sent, "m")
    assert ranges.learnable(found, {**sent, "messages": []}, "m") is None
    # an upstream that echoes a header: a client's User-Agent, or anything in the URL, teaches nothing either
    carried = "https://q/v1/chat/completions Range of max_completion_tokens should be [1, 9000]"
    assert "words are in what the request sent" in ranges.learnable(found, {**sent, "messages": []}, "m", carried)


def test_a_bound_under_the_catalogues_smallest_or_one_the_request_was_within_is_not_learned():
    tiny = ranges.read("Range of max_completion_tokens should be [1, 1]")
    assert "under 8,192" in ranges.learnable(tiny, {"max_completion_tokens": 8000}, "m")
    within = ranges.read("Range of max_completion_tokens should be [1, 40000]")
    assert "is within [1, 40000]" in ranges.learnable(within, {"max_completion_tokens": 8000}, "m")
    assert "sent no max_tokens" in ranges.learnable(ranges.read("Range of max_tokens should be [1, 40000]"),
                                                     {"max_completion_tokens": 80000}, "m")
    assert ranges.learnable(within, {"max_completion_tokens": 80000}, "m") is None


def test_qwens_other_wordings_are_known_and_a_new_one_is_not():
    assert ranges.known("developer is not one of ['system', 'assistant', 'user', 'tool', 'function'] - "
                        "'messages.[0].role'")
    assert ranges.known(ALGO + "Range of top_p should be (0.0, 1.0]")
    assert not ranges.known("<400> InternalError.Algo.InvalidParameter: The frobnicate parameter is not allowed")


def test_the_anthropic_bases_cap_refusal_is_read_as_the_same_fact():
    found = ranges.read("max_tokens: 40000 > 32768, which is the maximum allowed number of output tokens for "
                        "qwen3.8-flash")
    assert found is not None and (found.param, found.fact, found.bound) == ("max_tokens", "output", 32768)
    assert ranges.learnable(found, {"model": "qwen3.8-flash", "max_tokens": 40000, "messages": []},
                            "qwen3.8-flash") is None
