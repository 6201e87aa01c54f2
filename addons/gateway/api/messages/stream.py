"""Normalised chat chunks -> Anthropic's stream events, in the order the SDKs' accumulators check:

    message_start, ping, then per content block: content_block_start, content_block_delta…,
    content_block_stop; then message_delta (stop_reason, usage) and message_stop.

Blocks open as Qwen's output changes kind: reasoning -> a `thinking` block (its gateway-made signature as a
`signature_delta` before it closes), content -> a `text` block, each tool call -> a `tool_use` block whose
arguments stream as `input_json_delta`. Every event carries an `event:` line (Claude Code reads a stream
without them as empty). An error ends the stream with an `error` event. No I/O; never raises on odd input.

`message_start` carries the gateway's estimate of the prompt (`input_tokens`: Qwen counts only at the end,
in `message_delta`). With stop sequences, text goes through a `StopScanner` (stops.py): what follows the
first sequence found is not the client's, and the answer ends with `stop_reason: "stop_sequence"`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ... import sse
from ..websearch import anthropic_citations, server_tool_use
from .errors import stream_error_type
from .response import MessagesUsage, new_message_id, stop_reason, usage
from .stops import StopScanner


def event(payload: dict) -> bytes:
    return sse.encode(payload, event=payload["type"])


class MessagesStreamTranslator:
    def __init__(self, *, model: str, sign: Callable[[str], str], thinking: bool = True,
                 stops: tuple[str, ...] = (), input_tokens: Callable[[], int | None] = lambda: None,
                 diagnostics: Callable[[str], dict | None] | None = None,
                 final: Callable[[str, dict], dict | None] | None = None) -> None:
        self.model = model
        self.diagnostics = diagnostics  # the cache diagnostics the client asked for, given the message's id
        self.final = final  # what `message_delta` adds to them, given Qwen's usage (messages/diagnostics.final)
        self.message_id = ""
        self.scanner = StopScanner(stops) if stops else None
        self.input_tokens = input_tokens  # the gateway's prompt estimate, read when the stream starts
        self.sign = sign
        self.show_thinking = thinking  # False: the client did not ask for thinking blocks
        self.started = False
        self.index = -1  # the open block's index (-1: none open)
        self.kind: str | None = None  # "thinking" | "text" | "tool_use"
        self.thinking = ""
        self.tool_blocks: dict[int, int] = {}  # chat tool-call index -> block index
        self.stop: str | None = None
        self.usage: MessagesUsage | None = None
        self.blocks = 0
        self.searches: dict | None = None  # usage.server_tool_use, once Qwen's sources arrived
        self.text = ""  # a searched answer's text, for its citations

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out = self._start()
        usage_seen = chunk.get("usage")
        if isinstance(usage_seen, dict) and not chunk.get("choices"):
            self.usage = usage(usage_seen)
        self.searches = self.searches or server_tool_use(chunk.get("search_info"))
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # Messages answers one choice
            if choice.get("finish_reason"):
                self.stop = choice["finish_reason"]
            if self.scanner is not None and self.scanner.matched is not None:
                continue  # the answer ended at a stop sequence
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content") and self.show_thinking:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                self.thinking += delta["reasoning_content"]
                out.append(self._delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]}))
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._text(delta["content"] if self.scanner is None else self.scanner.feed(delta["content"]))
                if self.scanner is not None and self.scanner.matched is not None:
                    continue
            if delta.get("annotations") and self.kind == "text":
                out += [self._delta({"type": "citations_delta", "citation": c})
                        for c in anthropic_citations(self.text, delta["annotations"])]
            for call in delta.get("tool_calls") or []:
                out += self._tool_call(call)
        return out

    def _text(self, text: str) -> list[bytes]:
        if not text:
            return []
        out = self._open("text", {"type": "text", "text": ""})
        out.append(self._delta({"type": "text_delta", "text": text}))
        self.text += text if self.searches else ""
        return out

    def finish(self) -> list[bytes]:
        out = self._start() + self._close()
        # without Qwen's count, the estimate again: a 0 here would replace it in the SDKs' accumulators
        final = self.usage or self._estimate()
        if self.searches:
            final = {**final, "server_tool_use": self.searches}
        matched = self.scanner.matched if self.scanner is not None else None
        delta: dict[str, Any] = {"type": "message_delta",
                                 "delta": {"stop_reason": "stop_sequence" if matched else stop_reason(self.stop),
                                           "stop_sequence": matched}, "usage": dict(final)}
        if self.final is not None and self.usage and (said := self.final(self.message_id, dict(self.usage))):
            delta["diagnostics"] = said  # a Qwen-side miss, known only now
        out.append(event(delta))
        out.append(event({"type": "message_stop"}))
        return out

    def fail(self, error: dict) -> list[bytes]:
        return [event({"type": "error", "error": {"type": stream_error_type(error),
                                                  "message": str(error.get("message") or "Qwen failed.")}})]

    # ---- blocks --------------------------------------------------------------------------------------

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {"id": (mid := new_message_id()), "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": dict(self._estimate())}
        self.message_id = mid
        if self.diagnostics is not None:
            message["diagnostics"] = self.diagnostics(mid)
        return [event({"type": "message_start", "message": message}), event({"type": "ping"})]

    def _estimate(self) -> MessagesUsage:
        """The gateway's prompt estimate as usage (0 when the count has not finished: it runs off the request
        path, and Qwen rarely answers before it ends)."""
        return MessagesUsage(input_tokens=self.input_tokens() or 0, output_tokens=0, cache_read_input_tokens=0,
                     cache_creation_input_tokens=0)

    def _open(self, kind: str, block: dict) -> list[bytes]:
        if self.kind == kind and kind != "tool_use":
            return []
        out = self._close()
        self.index, self.kind = self.blocks, kind
        self.blocks += 1
        out.append(event({"type": "content_block_start", "index": self.index, "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if self.kind == "text" and self.scanner is not None and self.scanner.held:
            held = self.scanner.flush()  # the text is over: a held tail was no sequence's start
            return [self._delta({"type": "text_delta", "text": held}), *self._close()]
        if self.kind is None:
            return []
        out = []
        if self.kind == "thinking":
            out.append(self._delta({"type": "signature_delta", "signature": self.sign(self.thinking)}))
            self.thinking = ""
        out.append(event({"type": "content_block_stop", "index": self.index}))
        self.kind = None
        return out

    def _delta(self, delta: dict, index: int | None = None) -> bytes:
        return event({"type": "content_block_delta", "index": self.index if index is None else index,
                      "delta": delta})

    def _tool_call(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        fn = call.get("function") or {}
        position = call.get("index", 0)
        if call.get("id") and position not in self.tool_blocks:  # a new call: its own block
            out += self._open("tool_use", {"type": "tool_use", "id": call["id"], "name": fn.get("name") or "",
                                           "input": {}})
            self.tool_blocks[position] = self.index
        block = self.tool_blocks.get(position)
        if block is not None and fn.get("arguments"):
            out.append(self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]}, block))
        return out
