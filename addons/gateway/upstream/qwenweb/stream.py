"""The web API's SSE frames (qwen-web-protocol.md §1.7) made into the chat form's normalised chunks (no I/O).

Thinking phases (`think`: text in `content`; `thinking_summary`: a growing `extra.summary_thought.content` array,
only its new tail) → `reasoning_content`; `answer` → `content`, `<tool_call>` blocks → tool calls; usage is
cumulative, so the last one seen is final, sent in a chunk of its own after the finish. The answer ends at
`phase=answer` + `status=finished` (a thinking phase sends a `finished` too); there is no `[DONE]`."""

from __future__ import annotations

import time

from ... import ids
from ...errors import UpstreamError
from ...interfaces import ChatChunk, ChunkChoice, ChunkDelta, ToolCallDelta
from .errors import stream_fault
from .tools import ToolCallParser

THINKING = ("think", "thinking", "thinking_summary")


def usage(raw: object) -> dict | None:
    """The web's usage (`input_tokens`, `output_tokens`, …) as OpenAI's."""
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("input_tokens", raw.get("prompt_tokens"))
    completion = raw.get("output_tokens", raw.get("completion_tokens"))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = raw.get("total_tokens")
    out: dict = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": total if isinstance(total, int) else prompt + completion}
    details = raw.get("input_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        out["prompt_tokens_details"] = {"cached_tokens": details["cached_tokens"]}
    return out


class WebChunks:
    """A `ChunkSource` (interfaces.py) for the web API's frames."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{ids.uuid_text()}"
        self.created = int(time.time())
        self.usage: dict | None = None
        self.finish_reasons: dict[int, str] = {}
        self.error_text: str | None = None
        self.response_id: str | None = None
        self.parser = ToolCallParser()
        self.summary_seen = 0  # items of the growing summary array already sent
        self.calls = 0
        self.started = False

    def feed(self, event: object) -> list[ChatChunk]:
        if not isinstance(event, dict) or self.finish_reasons:
            return []
        created = event.get("response.created")
        if isinstance(created, dict):
            self.response_id = self.response_id or _str(created.get("response_id"))
            return []
        rid = _str(event.get("response_id"))
        if rid and self.response_id and rid != self.response_id:
            return []  # a replayed or foreign frame (QP filters by the first response_id)
        self.response_id = self.response_id or rid
        seen = usage(event.get("usage"))
        if seen is not None:
            self.usage = seen
        choices = event.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        assert isinstance(delta, dict)
        phase, status = delta.get("phase"), delta.get("status")
        out: list[ChatChunk] = []
        if phase in THINKING:
            thought = self._thinking(str(phase), delta)
            if thought:
                out.append(self._chunk(ChunkDelta(reasoning_content=thought)))
        elif phase in ("answer", None):
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._answer(self.parser.feed(text))
            if phase == "answer" and status == "finished":
                out += self._answer(self.parser.flush())
                out += self._finish()
        return out

    def _thinking(self, phase: str, delta: dict) -> str:
        if phase != "thinking_summary":
            text = delta.get("content")
            return text if isinstance(text, str) else ""
        extra = delta.get("extra") if isinstance(delta.get("extra"), dict) else {}
        thought = extra.get("summary_thought") if isinstance(extra, dict) else None
        items = thought.get("content") if isinstance(thought, dict) else None
        if not isinstance(items, list) or len(items) <= self.summary_seen:
            return ""
        new, self.summary_seen = items[self.summary_seen:], len(items)
        return "\n".join(str(x) for x in new) + "\n"

    def _answer(self, pieces: list[tuple[str, object]]) -> list[ChatChunk]:
        out = []
        for kind, value in pieces:
            if kind == "text" and isinstance(value, str) and value:
                out.append(self._chunk(ChunkDelta(content=value)))
            elif kind == "call" and isinstance(value, dict):
                call = ToolCallDelta(index=self.calls, id=f"call_{ids.hex_id(24)}", type="function",
                                     function={"name": value["name"], "arguments": value["arguments"]})
                self.calls += 1
                out.append(self._chunk(ChunkDelta(tool_calls=[call])))
        return out

    def _finish(self) -> list[ChatChunk]:
        reason = "tool_calls" if self.calls else "stop"
        self.finish_reasons[0] = reason
        out = [self._chunk(ChunkDelta(), finish=reason)]
        if self.usage is not None:
            last = self._chunk(None)
            last["usage"] = self.usage
            out.append(last)
        return out

    def _chunk(self, delta: ChunkDelta | None, finish: str | None = None) -> ChatChunk:
        choices: list[ChunkChoice] = []
        if delta is not None:
            if not self.started:
                delta = ChunkDelta(role="assistant", **delta)
                self.started = True
            choices = [ChunkChoice(index=0, delta=delta, logprobs=None, finish_reason=finish)]
        return ChatChunk(id=self.id, object="chat.completion.chunk", created=self.created, model=self.model,
                         choices=choices)

    def fault(self, error: object) -> UpstreamError:
        return stream_fault(error)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
