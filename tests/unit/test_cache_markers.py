"""A chat body's cache markers as the continuation's bill reads them (cache_markers.py `marked_to_end`)."""

from __future__ import annotations

import pytest

from qwen_gateway.cache_markers import marked_to_end

MARK = {"type": "ephemeral"}


@pytest.mark.parametrize("body, whole", [
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": MARK}]}]}, True),
    ({"messages": [{"role": "user", "content": "a", "cache_control": MARK}]}, True),  # on the message itself
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": MARK},
                                                {"type": "text", "text": "b"}]}]}, False),  # a part after it
    ({"messages": [{"role": "system", "content": [{"type": "text", "text": "s", "cache_control": MARK}]},
                   {"role": "user", "content": "a"}]}, False),  # the last message unmarked
    ({"messages": []}, False), ({}, False), (None, False), ({"messages": ["x"]}, False),
])
def test_whether_the_whole_prompt_is_marked(body, whole):
    assert marked_to_end(body) is whole
