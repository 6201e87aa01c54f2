"""Qwen's stream normalised (upstream/dashscope/stream.py): a choice's state made once, at its first chunk."""

from __future__ import annotations

from qwen_gateway.upstream.dashscope import stream


def test_a_choices_state_is_made_once_per_stream(monkeypatch):
    made = []
    real = stream._ChoiceState

    def counted():
        made.append(1)
        return real()

    monkeypatch.setattr(stream, "_ChoiceState", counted)
    norm = stream.ChunkNormalizer("gpt-4o")
    text = ""
    for word in ("a", "b", "c", "d"):
        for chunk in norm.feed({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}):
            text += chunk["choices"][0]["delta"].get("content") or ""
    assert text == "abcd"
    assert made == [1]  # not one per chunk
