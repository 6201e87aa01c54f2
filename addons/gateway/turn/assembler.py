"""A whole chat completion put together from the chat form's normalised chunks: for a client that asked for a
whole answer from an upstream that only streams (Qwen's stream-only models, dashscope/params.stream_whole).

`ChunkAssembler` is a `StreamTranslator` that writes nothing and keeps everything, so the upstream's stream
goes through the same `StreamRewriter` and `ChunkSource` as a streaming client's (reasoning, tool calls,
usage, finish reasons, errors inside the stream) and every client dialect then gets a whole answer.
"""

from __future__ import annotations

from typing import Any

from ..interfaces import ChatChunk


class ChunkAssembler:
    """Normalised chunks in, nothing out; `completion()` is the whole answer they make."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {}
        self.usage: dict | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.calls: dict[int, dict[int, dict]] = {}  # per choice: tool calls by their index

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        if not self.head:
            self.head = {"id": chunk["id"], "created": chunk["created"], "model": chunk["model"]}
            if isinstance(chunk.get("system_fingerprint"), str):
                self.head["system_fingerprint"] = chunk["system_fingerprint"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk["choices"]:
            self._choice(choice["index"], dict(choice["delta"]), choice["finish_reason"])
        return []

    def _choice(self, index: int, delta: dict, finish: str | None) -> None:
        st = self.choices.setdefault(index, {"finish_reason": None, "message": {"role": "assistant", "content": None}})
        message = st["message"]
        for key in ("content", "reasoning_content", "refusal"):
            if isinstance(delta.get(key), str):
                message[key] = (message.get(key) or "") + delta[key]
        fc = delta.get("function_call")
        if isinstance(fc, dict):
            old = message.setdefault("function_call", {"name": "", "arguments": ""})
            for key in ("name", "arguments"):
                old[key] += str(fc.get(key) or "")
        calls = self.calls.setdefault(index, {})
        for tc in delta.get("tool_calls") or []:
            call = calls.setdefault(tc["index"], {"id": "", "type": "function", "function": {"name": "",
                                                                                          "arguments": ""}})
            call["id"] = tc.get("id") or call["id"]
            call["type"] = tc.get("type") or call["type"]
            fn = tc.get("function") or {}
            call["function"]["name"] += fn.get("name") or ""
            call["function"]["arguments"] += fn.get("arguments") or ""
        if finish:
            st["finish_reason"] = finish

    def finish(self) -> list[bytes]:
        return []

    def fail(self, error: dict) -> list[bytes]:
        return []

    def completion(self) -> dict:
        choices = []
        for index in sorted(self.choices):
            st = self.choices[index]
            message = {**st["message"], "refusal": st["message"].get("refusal")}
            calls = self.calls.get(index)
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
            choices.append({"index": index, "message": message, "logprobs": None,
                            "finish_reason": st["finish_reason"] or "stop"})
        out: dict[str, Any] = {**self.head, "object": "chat.completion", "choices": choices}
        if self.usage is not None:
            out["usage"] = self.usage
        return out
