"""The way back of chat_params.py's translations: Qwen's tool calls as the client offered its tools. A
legacy `functions` client reads only `message.function_call` (`finish_reason: "function_call"`, streamed as
`delta.function_call`); a `custom` tool's call is a `custom` tool call carrying the freeform text (streamed
whole, in the choice's last chunk: its text is decoded out of the JSON Qwen writes). Pure functions and a
stateful chunk rewriter (no I/O)."""

from __future__ import annotations

from typing import Any, cast

from ..interfaces import ChatChunk, ChunkChoice
from .chat_params import custom_names, is_legacy
from .responses.items import custom_input


def _custom_call(call: dict) -> dict:
    fn = call.get("function") or {}
    return {"id": call.get("id"), "type": "custom",
            "custom": {"name": fn.get("name"), "input": custom_input(str(fn.get("arguments") or ""))}}


def to_client(answer: dict, body: dict) -> dict:
    """A whole chat answer with the tool calls in the form the client's request offered them; a `service_tier`
    asked is answered with the tier that served it, as OpenAI does (Qwen has one: `default`)."""
    if body.get("service_tier") is not None:
        answer = {**answer, "service_tier": "default"}
    legacy, custom = is_legacy(body), custom_names(body)
    if not legacy and not custom:
        return answer
    choices = []
    for choice in answer.get("choices") or []:
        message = dict(choice.get("message") or {})
        calls = message.get("tool_calls") or []
        if legacy:
            message.pop("tool_calls", None)
            if calls:
                fn = calls[0].get("function") or {}
                message["function_call"] = {"name": fn.get("name"), "arguments": fn.get("arguments") or ""}
                if choice.get("finish_reason") == "tool_calls":
                    choice = {**choice, "finish_reason": "function_call"}
        elif calls:
            message["tool_calls"] = [_custom_call(c) if (c.get("function") or {}).get("name") in custom else c
                                     for c in calls]
        choices.append({**choice, "message": message})
    return {**answer, "choices": choices}


class CallRewriter:
    """Normalised chunks with the tool calls in the form the client's request offered them."""

    def __init__(self, body: dict) -> None:
        self.legacy = is_legacy(body)
        self.custom = custom_names(body)
        self.held: dict[int, dict[int, dict]] = {}  # per choice, custom calls by index: id, name, arguments

    @property
    def active(self) -> bool:
        return self.legacy or bool(self.custom)

    def rewrite(self, chunk: ChatChunk) -> ChatChunk | None:
        if not self.active or not chunk["choices"]:
            return chunk
        choices = [c for c in (self._choice(c) for c in chunk["choices"]) if c is not None]
        return {**chunk, "choices": choices} if choices else None

    def _choice(self, choice: ChunkChoice) -> ChunkChoice | None:
        delta: dict[str, Any] = dict(choice["delta"])
        finish = choice["finish_reason"]
        calls: list[dict[str, Any]] = delta.pop("tool_calls", None) or []
        if self.legacy:
            first = [c for c in calls if c["index"] == 0]
            if first:
                delta["function_call"] = dict(first[0]["function"])
            if finish == "tool_calls":
                finish = "function_call"
        else:
            held = self.held.setdefault(choice["index"], {})
            passed: list[dict[str, Any]] = []
            for c in calls:
                name = c["function"].get("name")
                if c["index"] in held or name in self.custom:
                    slot = held.setdefault(c["index"], {"id": c.get("id"), "name": name, "arguments": ""})
                    slot["arguments"] += c["function"].get("arguments") or ""
                else:
                    passed.append(c)
            if finish and held:
                passed += [{"index": i, "id": s["id"], "type": "custom",
                            "custom": {"name": s["name"], "input": custom_input(s["arguments"])}}
                           for i, s in sorted(held.items())]
                held.clear()
            if passed:
                delta["tool_calls"] = passed
        if not delta and not finish:
            return None
        return cast(ChunkChoice, {**choice, "delta": delta, "finish_reason": finish})
