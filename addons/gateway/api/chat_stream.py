"""Streamed chat completions: Qwen's chunks made into the chunks OpenAI clients expect.

`ChunkNormalizer` repairs Qwen's quirks once, for every endpoint (`<think>` leaking into
content, tool-call index collisions, duplicate finish chunks, usage inside the finish chunk or
at top level, `error_finish`). `ChatStreamTranslator` then encodes the normalised chunks for
/v1/chat/completions. Both are plain objects: no I/O.

Text deltas are appended exactly as they come (R8: DashScope's compatible mode streams
increments, and an increment may repeat earlier text: "哈哈", "哈哈", "，好的"). Only an upstream
known to send the whole text so far in every delta is read that way (`cumulative=True`); it is
never guessed from the content.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ids, sse
from .chat import normalise_usage

_THINK_TAGS = (("<think>", "</think>"), ("<thinking>", "</thinking>"))


class ThinkSplitter:
    """Routes a leading `<think>…</think>` in streamed content to reasoning, tags split anywhere."""

    def __init__(self) -> None:
        self.state = "start"  # start | think | content
        self.buf = ""
        self.close = ""

    def feed(self, text: str) -> tuple[str, str]:
        if self.state == "content":
            return "", text
        self.buf += text
        if self.state == "start":
            head = self.buf.lstrip()
            for open_tag, close_tag in _THINK_TAGS:
                if head.startswith(open_tag):
                    self.state, self.close, self.buf = "think", close_tag, head[len(open_tag):]
                    break
            else:
                if not head or any(t.startswith(head) for t, _ in _THINK_TAGS):
                    return "", ""  # still could be the start of a tag
                self.state, out, self.buf = "content", self.buf, ""
                return "", out
        i = self.buf.find(self.close)
        if i >= 0:
            reasoning, content = self.buf[:i], self.buf[i + len(self.close):].lstrip()
            self.state, self.buf = "content", ""
            return reasoning, content
        keep = _partial_suffix(self.buf, self.close)
        reasoning, self.buf = self.buf[: len(self.buf) - keep], self.buf[len(self.buf) - keep:]
        return reasoning, ""

    def flush(self) -> tuple[str, str]:
        buf, self.buf = self.buf, ""
        if self.state == "think":
            return buf, ""
        return "", buf


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


@dataclass
class _ToolSlot:
    index: int
    id: str


class _ChoiceState:
    def __init__(self) -> None:
        self.content = ""
        self.reasoning = ""
        self.think = ThinkSplitter()
        self.tools: dict[int, _ToolSlot] = {}  # upstream index -> the call now using it
        self.tool_count = 0
        self.finished = False


def _append(seen: str, text: str, cumulative: bool) -> tuple[str, str]:
    """(new text, new accumulated). A cumulative upstream sends the whole text so far in every delta."""
    if cumulative and text.startswith(seen):
        return text[len(seen):], text
    return text, seen + text


class ChunkNormalizer:
    """Qwen chunk dicts in, normalised OpenAI `chat.completion.chunk` dicts out.

    Guarantees for whoever reads the output: deltas are incremental; reasoning is in
    `delta.reasoning_content`; each tool call has its own index and an id on its first
    fragment; at most one finish chunk per choice, with `tool_calls` when calls were made;
    usage (if upstream sent any) comes last, in its own chunk with `choices: []`.
    """

    def __init__(self, model: str, *, cumulative: bool = False) -> None:
        self.model = model
        self.cumulative = cumulative  # only for an upstream known to send cumulative text
        self.error_text: str | None = None  # set by a finish_reason "error_finish" chunk (R6)
        self.id: str | None = None
        self.created: int | None = None
        self.usage: dict | None = None
        self.finish_reasons: dict[int, str] = {}
        self._choices: dict[int, _ChoiceState] = {}

    def feed(self, chunk: object) -> list[dict]:
        if not isinstance(chunk, dict):
            return []
        self.id = self.id or (chunk.get("id") if isinstance(chunk.get("id"), str) else f"chatcmpl-{ids.uuid_text()}")
        self.created = self.created or (chunk.get("created") if isinstance(chunk.get("created"), int) else None)
        base = {"id": self.id, "object": "chat.completion.chunk", "created": self.created or 0, "model": self.model}
        if isinstance(chunk.get("system_fingerprint"), str):  # Qwen sends null: OpenAI allows a string or nothing
            base["system_fingerprint"] = chunk["system_fingerprint"]
        out: list[dict] = []
        raw_choices = chunk.get("choices")
        choices = [c for c in (raw_choices or []) if isinstance(c, dict)]
        fixed = [c for c in (self._choice(c) for c in choices) if c is not None]
        if fixed:
            out.append({**base, "choices": fixed})
        usage = normalise_usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
            out.append({**base, "choices": [], "usage": usage})
        return out

    def _choice(self, choice: dict) -> dict | None:
        idx = choice.get("index", 0) if isinstance(choice.get("index", 0), int) else 0
        st = self._choices.setdefault(idx, _ChoiceState())
        if st.finished:
            return None  # duplicate finish chunk, or stray content after it
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        if choice.get("finish_reason") == "error_finish":
            # R6: an error (e.g. TPM throttling), its text in delta.content: never the model's answer.
            st.finished = True
            text = delta.get("content")
            self.error_text = text if isinstance(text, str) and text.strip() else "Qwen ended the answer with an error."
            return None
        new: dict = {}
        if "role" in delta:
            new["role"] = delta["role"]
        reasoning = ""
        if isinstance(delta.get("reasoning_content"), str):
            reasoning, st.reasoning = _append(st.reasoning, delta["reasoning_content"], self.cumulative)
        elif isinstance(delta.get("reasoning"), str):
            reasoning, st.reasoning = _append(st.reasoning, delta["reasoning"], self.cumulative)
        content = None
        if isinstance(delta.get("content"), str):
            text, st.content = _append(st.content, delta["content"], self.cumulative)
            leaked, content = st.think.feed(text)
            reasoning += leaked
        elif "content" in delta:
            content = delta["content"]
        finish = choice.get("finish_reason")
        if finish:
            leaked, rest = st.think.flush()
            reasoning += leaked
            content = (content or "") + rest if rest else content
        if content is not None and (content != "" or "role" in new):
            new["content"] = content
        if reasoning:
            new["reasoning_content"] = reasoning
        calls = self._tool_calls(st, delta.get("tool_calls"))
        if calls:
            new["tool_calls"] = calls
        for key in ("refusal", "function_call"):
            if delta.get(key) is not None:
                new[key] = delta[key]
        if finish:
            st.finished = True
            if finish == "stop" and st.tools:
                finish = "tool_calls"
            self.finish_reasons[idx] = finish
        if not new and not finish:
            return None
        return {"index": idx, "delta": new, "logprobs": choice.get("logprobs"), "finish_reason": finish or None}

    def _tool_calls(self, st: _ChoiceState, calls: object) -> list[dict]:
        out = []
        for tc in calls if isinstance(calls, list) else []:
            if not isinstance(tc, dict):
                continue
            up = tc.get("index", 0) if isinstance(tc.get("index"), int) else 0
            tid = tc.get("id") if isinstance(tc.get("id"), str) and tc.get("id") else None
            fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
            slot = st.tools.get(up)
            if slot is None or (tid and tid != slot.id):
                # A new call, or another call reusing the index (seen upstream): give it its own.
                slot = st.tools[up] = _ToolSlot(st.tool_count, tid or f"call_{ids.hex_id(12)}")
                st.tool_count += 1
                frag = {"index": slot.index, "id": slot.id, "type": "function"}
            else:
                frag = {"index": slot.index}
            frag["function"] = {"name": fn["name"]} if fn.get("name") else {}
            frag["function"]["arguments"] = fn.get("arguments") or ""
            out.append(frag)
        return out


class ChatStreamTranslator:
    """Normalised chunks -> the SSE bytes a /v1/chat/completions client gets."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def feed(self, chunk: dict) -> list[bytes]:
        if chunk.get("choices") == [] and chunk.get("usage"):
            return [sse.encode(chunk)] if self.include_usage else []
        if self.include_usage:
            chunk = {**chunk, "usage": None}
        return [sse.encode(chunk)]

    def finish(self) -> list[bytes]:
        return [sse.DONE]

    def fail(self, error: dict) -> list[bytes]:
        # openai-python raises APIError(error.message) on a data event that carries "error".
        return [sse.encode({"error": error})]
