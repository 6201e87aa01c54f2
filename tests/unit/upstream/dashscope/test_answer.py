"""Qwen's whole answer made into OpenAI's (upstream/dashscope/answer.py): ids made only where Qwen sent none."""

from __future__ import annotations

from qwen_gateway import ids
from qwen_gateway.upstream.dashscope import answer

CALL = {"index": 0, "type": "function", "function": {"name": "f", "arguments": "{}"}}


def qwen_answer(**fields) -> dict:
    message = {"role": "assistant", "content": None, "tool_calls": [{**CALL, **fields.pop("call", {})}]}
    return {"object": "chat.completion", "model": "coder-model", **fields,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}


def test_ids_are_made_only_when_qwen_sent_none(monkeypatch):
    made = []
    real_uuid, real_hex = ids.uuid_text, ids.hex_id
    monkeypatch.setattr(ids, "uuid_text", lambda: made.append("uuid") or real_uuid())
    monkeypatch.setattr(ids, "hex_id", lambda n=16: made.append("hex") or real_hex(n))
    out = answer.qwen_to_chat(qwen_answer(id="chatcmpl-qwen", call={"id": "call_qwen"}), model="gpt-4o")
    assert out["id"] == "chatcmpl-qwen" and out["choices"][0]["message"]["tool_calls"][0]["id"] == "call_qwen"
    assert made == []  # nothing made to be thrown away
    out = answer.qwen_to_chat(qwen_answer(), model="gpt-4o")
    assert out["id"].startswith("chatcmpl-") and out["choices"][0]["message"]["tool_calls"][0]["id"].startswith("call_")
    assert made == ["uuid", "hex"]
