"""The Messages API passed through to a plan's own Anthropic-compatible base (`qwen_messages_passthrough`,
key accounts only; components.py declares the pair). The request stays a Messages request, made acceptable to
a strict Anthropic-compatible server; the answer stays Anthropic's, with the client's model name and the
gateway's thinking signatures (so a later turn verifies on either path).

What Claude Code sends beyond the base API is folded or left out here, as the translation does: `role:
"system"` messages join `system`, the billing line is dropped, `thinking` blocks (the gateway's signatures
mean nothing upstream) and the extras (`context_management`, `safeguards`, `output_config`, …) are removed,
adaptive thinking becomes an explicit budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from ... import sse
from ...errors import SERVER, THROTTLE, TIMEOUT, UpstreamError
from ...exchange import note
from ...interfaces import ChatChunk
from .errors import stream_error_type
from .content import bad
from .request import system_blocks

# Fields of the base Messages API a strict Anthropic-compatible server takes.
_KEPT = ("model", "max_tokens", "stop_sequences", "stream", "temperature", "top_p", "top_k", "tools",
         "tool_choice", "metadata", "thinking")
_BUDGETS = {"low": 1024, "medium": 8192, "high": 16384, "max": 32768}


def own_body(body: dict, notes: list[str]) -> dict:
    """The client's Messages body as the plan's Anthropic base takes it."""
    out = {k: body[k] for k in _KEPT if k in body}
    dropped = sorted(set(body) - set(_KEPT) - {"messages", "system"})
    if dropped:
        note(notes, f"passed through without {', '.join(dropped)} (no meaning upstream)")
    system = system_blocks(body.get("system"), "system", notes)
    messages = []
    for i, m in enumerate(body.get("messages") or []):
        if not isinstance(m, dict):
            raise bad(f"messages.{i}: Input should be an object", f"messages.{i}")
        if m.get("role") == "system":
            system += system_blocks(m.get("content"), f"messages.{i}.content", notes)
            continue
        content = m.get("content")
        if isinstance(content, list):
            kept = [b for b in content if not (isinstance(b, dict) and b.get("type") in ("thinking",
                                                                                          "redacted_thinking"))]
            if len(kept) != len(content):
                note(notes, "earlier thinking blocks left out (their signatures are the gateway's)")
            content = kept
        messages.append({**m, "content": content})
    out["messages"] = messages
    if system:  # blocks when one carries a cache marker (kept for the base's cache), else one text
        marked = any("cache_control" in b for b in system)
        out["system"] = system if marked else "\n\n".join(b["text"] for b in system)
    if isinstance(out.get("tools"), list):  # deferred tools stay hidden, as the translation keeps them
        out["tools"] = [t for t in out["tools"] if not (isinstance(t, dict) and t.get("defer_loading"))]
    out.update(_thinking(body))
    return out


def _thinking(body: dict) -> dict:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return {}
    if thinking.get("type") == "disabled":
        return {"thinking": {"type": "disabled"}}
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    budget = thinking.get("budget_tokens") if thinking.get("type") == "enabled" else _BUDGETS.get(str(effort), 8192)
    raw = body.get("max_tokens")
    max_tokens: int = raw if isinstance(raw, int) else 0
    if not isinstance(budget, int) or max_tokens <= 1024:
        return {"thinking": {"type": "disabled"}}
    return {"thinking": {"type": "enabled", "budget_tokens": max(1024, min(budget, max_tokens - 1))}}


def has_markers(body: object) -> bool:
    """Whether a Messages body carries a `cache_control` marker (then the base's cache is the explicit one)."""
    def marked(blocks: object) -> bool:
        return isinstance(blocks, list) and any(isinstance(b, dict) and ("cache_control" in b or marked(
            b.get("content"))) for b in blocks)
    return isinstance(body, dict) and (marked(body.get("system")) or marked(body.get("tools")) or any(
        isinstance(m, dict) and marked(m.get("content")) for m in body.get("messages") or []))


def chat_usage(usage: object, explicit: bool = False) -> dict | None:
    """Anthropic's usage in the chat form the ledger and metrics read: an explicit cache's (the request had
    markers, or the base created a cache) as Qwen reports one (`cache_type`), else hits of the implicit one."""
    if not isinstance(usage, dict):
        return None
    cached = usage.get("cache_read_input_tokens") or 0
    created = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cached + created
    completion = usage.get("output_tokens") or 0
    details: dict = {"cached_tokens": cached}
    if explicit or created:
        details.update(cache_creation_input_tokens=created, cache_write_tokens=created, cache_type="ephemeral")
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": details}


_THINKING = ("thinking", "redacted_thinking")


def own_answer(data: dict, *, model: str, sign: Callable[[str], str], explicit: bool = False,
               thinking: bool = True) -> tuple[dict, dict | None]:
    """The upstream's Message with the client's model name and the gateway's thinking signatures (no thinking
    blocks when the client asked for none: a model that thinks anyway); and its usage in chat form
    (`explicit`: the request had cache markers)."""
    content = [{**b, "signature": sign(str(b.get("thinking") or ""))} if isinstance(b, dict) and
               b.get("type") == "thinking" else b for b in data.get("content") or []
               if thinking or not (isinstance(b, dict) and b.get("type") in _THINKING)]
    return {**data, "model": model, "content": content}, chat_usage(data.get("usage"), explicit)


class EventTap:
    """The pass-through stream's reader (a `ChunkSource`): each Anthropic event goes on as it is; usage and
    the stop are noted for the record (`explicit`: the request had cache markers)."""

    def __init__(self, explicit: bool = False) -> None:
        self.explicit = explicit
        self.usage: dict | None = None
        self.finish_reasons: dict[int, str] = {}
        self.error_text: str | None = None
        self._usage: dict[str, Any] = {}

    def feed(self, event: object) -> list[ChatChunk]:
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            self._usage.update(event["message"].get("usage") or {})
            self.usage = chat_usage(self._usage, self.explicit) if self._usage else None
        elif kind == "message_delta":
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            self.usage = chat_usage(self._usage, self.explicit) if self._usage else None
            stop = (event.get("delta") or {}).get("stop_reason")
            self.finish_reasons[0] = str(stop or "end_turn")
        elif kind == "message_stop":
            self.finish_reasons.setdefault(0, "end_turn")
        return [cast(ChatChunk, event)]  # not a chat chunk: the dialect's own event, for EventRelay

    def fault(self, error: object) -> UpstreamError:
        err = error if isinstance(error, dict) else {}
        message = str(err.get("message") or error or "the upstream failed")
        if err.get("type") == "rate_limit_error":
            return UpstreamError(THROTTLE, 429, message, "requests", "rate_limit_exceeded")
        if err.get("type") == "overloaded_error":  # the client reads it as Anthropic's overloaded_error again
            return UpstreamError(SERVER, 503, message, "server_error", "upstream_overloaded", overloaded=True)
        if err.get("type") == "timeout_error":
            return UpstreamError(TIMEOUT, 504, message, "server_error", "upstream_timeout")
        return UpstreamError(SERVER, 502, message, "server_error", "upstream_error")


class EventRelay:
    """The pass-through stream's writer (a `StreamTranslator`): the events as they came, the model renamed and
    thinking re-signed by the gateway."""

    def __init__(self, *, model: str, sign: Callable[[str], str], thinking: bool = True,
                 diagnostics: Callable[[str], dict | None] | None = None,
                 final: Callable[[str, dict], dict | None] | None = None) -> None:
        self.model = model
        self.diagnostics = diagnostics  # the cache diagnostics the client asked for, given the message's id
        self.final = final  # what `message_delta` adds to them, given the usage so far (messages/diagnostics.final)
        self.message_id, self.usage = "", cast(dict[str, Any], {})
        self.sign = sign
        self.show_thinking = thinking  # False: thinking blocks left out (the client asked for none)
        self.hidden: list[int] = []  # the upstream's indexes of the blocks left out
        self.thinking: dict[int, str] = {}
        self.stopped = False  # message_stop went out

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        event = dict(chunk)
        kind = event.get("type")
        if "index" in event and isinstance(event["index"], int) and not self.show_thinking:
            block = event.get("content_block")
            if kind == "content_block_start" and isinstance(block, dict) and block.get("type") in _THINKING:
                self.hidden.append(event["index"])
            if event["index"] in self.hidden:
                return []
            event["index"] -= sum(1 for i in self.hidden if i < event["index"])  # the client's blocks count on
        if kind == "message_start" and isinstance(event.get("message"), dict):
            event["message"] = {**event["message"], "model": self.model}
            self.message_id = str(event["message"].get("id") or "")
            self.usage.update(event["message"].get("usage") or {})
            if self.diagnostics is not None:
                event["message"]["diagnostics"] = self.diagnostics(self.message_id)
        elif kind == "message_delta" and self.final is not None:
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            if said := self.final(self.message_id, dict(self.usage)):
                event["diagnostics"] = said  # a Qwen-side miss, known only now
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            index = event.get("index", 0)
            if delta.get("type") == "thinking_delta":
                self.thinking[index] = self.thinking.get(index, "") + str(delta.get("thinking") or "")
            elif delta.get("type") == "signature_delta":
                event["delta"] = {**delta, "signature": self.sign(self.thinking.pop(index, ""))}
        self.stopped = self.stopped or kind == "message_stop"
        return [sse.encode(event, event=str(kind or "message"))]

    def finish(self) -> list[bytes]:
        # message_stop came from upstream; or the stream was cut after the message's end (message_delta), whole
        return [] if self.stopped else [sse.encode({"type": "message_stop"}, event="message_stop")]

    def fail(self, error: dict) -> list[bytes]:
        return [sse.encode({"type": "error", "error": {"type": stream_error_type(error),
                                                       "message": str(error.get("message") or "failed")}},
                           event="error")]
