"""DashScope's streamed chunks made into the chat form's normalised chunks (no I/O).

`ChunkNormalizer` repairs Qwen's quirks once, for every client dialect (`<think>` leaking into
content, tool-call index collisions, duplicate finish chunks, usage inside the finish chunk or
at top level, `error_finish`).

Text deltas are appended exactly as they come (R8: DashScope's compatible mode streams
increments, and an increment may repeat earlier text: "哈哈", "哈哈", "，好的"). Only an upstream
known to send the whole text so far in every delta is read that way (`cumulative=True`); it is
never guessed from the content.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import ids
from ...errors import UpstreamError
from ...interfaces import ChatChunk, ChunkChoice, ChunkDelta, FunctionDelta, ToolCallDelta
from .answer import FINISHES, normalise_usage, unknown_finish
from .errors import classify_stream_error
from .search import StreamCitations

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
    """(new text, new accumulated). A cumulative upstream sends the whole text so far in every delta; for any
    other nothing is accumulated (a long answer would be held, and copied at every event)."""
    if not cumulative:
        return text, seen
    if text.startswith(seen):
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
        self.citations = StreamCitations()  # web search sources, and the text their markers are found in
        self.opened_only = True  # nothing but an answer's opening (its role) was given out yet

    def feed(self, event: object) -> list[ChatChunk]:
        if not isinstance(event, dict):
            return []
        if self.id is None:
            chunk_id = event.get("id")
            self.id = chunk_id if isinstance(chunk_id, str) and chunk_id else f"chatcmpl-{ids.uuid_text()}"
        if self.created is None:
            created = event.get("created")
            self.created = created if isinstance(created, int) and created else None
        fingerprint = event.get("system_fingerprint")  # Qwen sends null: OpenAI allows a string or nothing
        out: list[ChatChunk] = []
        if "search_info" in event:
            self.citations.event(event)
        raw_choices = event.get("choices")
        if raw_choices and isinstance(raw_choices, list):  # one loop: each event's choices, most often one
            fixed = []
            for c in raw_choices:
                if isinstance(c, dict) and (choice := self._choice(c)) is not None:
                    fixed.append(choice)
            if fixed:
                out.append(self._chunk(fixed, fingerprint))
        usage = normalise_usage(event["usage"]) if event.get("usage") is not None else None
        if usage is not None:
            self.usage = usage
            last = self._chunk([], fingerprint)
            last["usage"] = usage
            out.append(last)
        if out and self.citations.pending is not None and (info := self.citations.take_info()) is not None:
            out[0]["search_info"] = info  # passed on with the first chunk it can ride on
        return out

    def _chunk(self, choices: list[ChunkChoice], fingerprint: object) -> ChatChunk:
        chunk: ChatChunk = {"id": self.id or "", "object": "chat.completion.chunk", "created": self.created or 0,
                            "model": self.model, "choices": choices}
        if isinstance(fingerprint, str):
            chunk["system_fingerprint"] = fingerprint
        return chunk

    def fault(self, error: object) -> UpstreamError:
        """An error event or the text of an `error_finish` chunk, classified (throttling is retried)."""
        return classify_stream_error(error)

    def _choice(self, choice: dict) -> ChunkChoice | None:
        index = choice.get("index", 0)
        idx = index if isinstance(index, int) else 0
        st = self._choices.get(idx)
        if st is None:  # a choice's state made at its first chunk, not (and thrown away) at every one
            st = self._choices[idx] = _ChoiceState()
        if st.finished:
            return None  # duplicate finish chunk, or stray content after it
        raw_delta = choice.get("delta")
        delta: dict = raw_delta if isinstance(raw_delta, dict) else {}
        if choice.get("finish_reason") == "error_finish":
            # R6: an error (e.g. TPM throttling), its text in delta.content: never the model's answer.
            st.finished = True
            text = delta.get("content")
            self.error_text = text if isinstance(text, str) and text.strip() else "Qwen ended the answer with an error."
            return None
        new: ChunkDelta = {}
        if "role" in delta:
            new["role"] = delta["role"]
        reasoning = ""
        if isinstance(delta.get("reasoning_content"), str):
            reasoning, st.reasoning = _append(st.reasoning, delta["reasoning_content"], self.cumulative)
        elif isinstance(delta.get("reasoning"), str):
            reasoning, st.reasoning = _append(st.reasoning, delta["reasoning"], self.cumulative)
        content: str | None = None
        if isinstance(text := delta.get("content"), str):
            if self.cumulative:
                text, st.content = _append(st.content, text, True)
            if st.think.state == "content":  # past any leading <think>: the text as it came (most deltas)
                content = text
            else:
                leaked, content = st.think.feed(text)
                reasoning += leaked
        elif "content" in delta:
            content = delta["content"]  # null (or something odd) passed on as it came
        finish = choice.get("finish_reason")
        if finish and finish not in FINISHES:  # a finish OpenAI's clients have no word for: the answer broke off
            self.error_text, finish = unknown_finish(finish), None
        if finish:
            leaked, rest = st.think.flush()
            reasoning += leaked
            content = (content or "") + rest if rest else content
        if content is not None and (content != "" or "role" in new):
            new["content"] = content
            if self.citations.found:  # only a searched answer's text is kept
                self.citations.text(idx, content)
        if reasoning:
            new["reasoning_content"] = reasoning
        calls = self._tool_calls(st, delta["tool_calls"]) if "tool_calls" in delta else None
        if calls:
            new["tool_calls"] = calls
        if delta.get("refusal") is not None:
            new["refusal"] = delta["refusal"]
        if delta.get("function_call") is not None:
            new["function_call"] = delta["function_call"]
        if finish:
            st.finished = True
            cited = self.citations.annotations(idx)
            if cited:
                new["annotations"] = cited
            if finish == "stop" and st.tools:
                finish = "tool_calls"
            self.finish_reasons[idx] = finish
        if not new and not finish:
            return None
        if self.opened_only and (content or reasoning or calls or "refusal" in new or "function_call" in new):
            self.opened_only = False
        return {"index": idx, "delta": new, "logprobs": choice.get("logprobs"), "finish_reason": finish or None}

    def _tool_calls(self, st: _ChoiceState, calls: object) -> list[ToolCallDelta]:
        out = []
        for tc in calls if isinstance(calls, list) else []:
            if not isinstance(tc, dict):
                continue
            index, tid = tc.get("index"), tc.get("id")
            up = index if isinstance(index, int) else 0
            tid = tid if isinstance(tid, str) and tid else None
            raw_fn = tc.get("function")
            fn: dict = raw_fn if isinstance(raw_fn, dict) else {}
            slot = st.tools.get(up)
            function = FunctionDelta(name=fn["name"]) if fn.get("name") else FunctionDelta()
            function["arguments"] = fn.get("arguments") or ""
            if slot is None or (tid and tid != slot.id):
                # A new call, or another call reusing the index (seen upstream): give it its own.
                slot = st.tools[up] = _ToolSlot(st.tool_count, tid or f"call_{ids.hex_id(12)}")
                st.tool_count += 1
                out.append(ToolCallDelta(index=slot.index, id=slot.id, type="function", function=function))
            else:
                out.append(ToolCallDelta(index=slot.index, function=function))
        return out
