"""The freeform text of a custom tool call decoded as Qwen's `{"input": "…"}` arrives (api/responses/input_decoder.py)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_gateway.api.responses.input_decoder import InputDecoder


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.lists(st.integers(0, 200), max_size=8))
def test_input_decoder_gives_the_text_whatever_the_split(text, cuts):
    args = json.dumps({"input": text}, ensure_ascii=bool(len(text) % 2))
    d = InputDecoder()
    prev, out = 0, ""
    for c in sorted(x for x in cuts if x <= len(args)) + [len(args)]:
        out += d.feed(args[prev:c])
        prev = c
    assert out == text and d.done and not d.failed


def test_input_decoder_gives_up_on_other_shapes():
    d = InputDecoder()
    assert d.feed("[1, 2]") == "" and d.failed
    d = InputDecoder()
    assert d.feed('{"input": 5}') == "" and d.failed


def feed_all(*fragments: str) -> tuple[InputDecoder, list[str]]:
    d = InputDecoder()
    return d, [d.feed(f) for f in fragments]


def test_text_is_handed_out_as_soon_as_it_is_complete():
    d, out = feed_all('{"in', 'put": "li', 'ne\\', 'nnext"', "}")
    # a lone backslash waits for the character it escapes
    assert out == ["", "li", "ne", "\nnext", ""] and d.done and d.text == "line\nnext"


def test_an_escaped_surrogate_pair_waits_for_its_second_half():
    d, out = feed_all('{"input": "\\ud83d', '\\ude00!"}')
    assert out == ["", "😀!"] and not d.failed


def test_whitespace_between_the_tokens_is_allowed():
    d, out = feed_all('{ "input" :\n "x"}')
    assert out == ["x"] and d.done


def test_nothing_is_handed_out_after_the_closing_quote():
    d, out = feed_all('{"input": "a"', ', "b": "c"}')
    assert out == ["a", ""] and d.raw == '{"input": "a", "b": "c"}'
