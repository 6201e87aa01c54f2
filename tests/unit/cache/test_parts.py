"""A message's content parts as Qwen's cache reads them (cache/parts.py): markers no part of them (the core's
markers, cache_markers.py), an hour asked by either marker."""

from __future__ import annotations

from qwen_gateway.cache.parts import asks_hour, strip


def test_either_marker_is_no_part_of_what_the_cache_reads():
    part = {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}, "prompt_cache_breakpoint": {}}
    assert strip(part) == {"type": "text", "text": "a"}
    unmarked = {"type": "text", "text": "a"}
    assert strip(unmarked) is unmarked


def test_an_hour_asked_by_either_marker():
    assert asks_hour({"prompt_cache_breakpoint": {"ttl": "1h"}}) and asks_hour({"cache_control": {"ttl": "1h"}})
    assert not asks_hour({"cache_control": {"type": "ephemeral"}}) and not asks_hour({})
