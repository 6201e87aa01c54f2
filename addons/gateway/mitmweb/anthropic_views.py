"""mitmweb content views for the Anthropic Messages API (`POST /v1/messages`, api/messages/): a request shown
as a conversation (system text, the turns with their text, images, tool uses and results, thinking; the tools
offered and the settings), and an answer — a stream folded into one message, or a whole Message — shown as
its blocks (thinking, text, tool uses with their input parsed), stop reason, usage and error, then, for a
stream, the raw events. Registered by contentviews.register(), with the OpenAI views.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from mitmproxy import contentviews

from ..sse import SSEDecoder
from .flowrecord import content_type, endpoint, is_request, is_response, json_object, route

# Routes whose bodies are Messages requests: the endpoint, and the token count the gateway answers itself.
REQUEST_ROUTES = frozenset({"messages", "count_tokens"})


class AssembledMessage(TypedDict):
    """An answer as one Message; a plain dict at run time, typed so the renderer's keys are checked."""

    id: str | None
    model: str | None
    blocks: dict[int, dict[str, Any]]  # by index, as in a Message; a streamed tool_use's input is `partial_json`
    stop_reason: str | None
    usage: dict[str, Any] | None
    error: str | None
    events: int | None  # a stream's event count; None for a whole Message
    ended: bool  # message_stop seen (a whole Message has ended)


def _empty(events: int | None) -> AssembledMessage:
    return {"id": None, "model": None, "blocks": {}, "stop_reason": None, "usage": None, "error": None,
            "events": events, "ended": events is None}


def _error_text(error: object) -> str:
    if isinstance(error, dict):
        return ": ".join(str(x) for x in (error.get("type"), error.get("message")) if x) or json.dumps(error)
    return str(error)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _merge_usage(out: AssembledMessage, usage: object) -> None:
    if isinstance(usage, dict):  # message_delta's counts are cumulative: the newest of each wins
        out["usage"] = {**(out["usage"] or {}), **{k: v for k, v in usage.items() if v is not None}}


def assemble_messages_stream(data: bytes) -> AssembledMessage:
    """Anthropic stream events (message_start … message_stop, or error) folded into one message."""
    decoder = SSEDecoder()
    events = decoder.feed(data) + decoder.flush()
    out = _empty(len(events))
    for e in events:
        try:
            ev = _dict(json.loads(e.data))
        except ValueError:
            continue
        kind = ev.get("type")
        if kind == "message_start" and isinstance(ev.get("message"), dict):
            msg = ev["message"]
            out["id"], out["model"] = msg.get("id"), msg.get("model")
            _merge_usage(out, msg.get("usage"))
        elif kind == "content_block_start" and isinstance(ev.get("content_block"), dict):
            block = dict(ev["content_block"])
            if block.get("type") in ("tool_use", "server_tool_use"):
                block["partial_json"] = ""
            out["blocks"][_index(ev)] = block
        elif kind == "content_block_delta" and isinstance(ev.get("delta"), dict):
            _delta(out["blocks"].setdefault(_index(ev), {"type": "?"}), ev["delta"])
        elif kind == "message_delta":
            out["stop_reason"] = _dict(ev.get("delta")).get("stop_reason") or out["stop_reason"]
            _merge_usage(out, ev.get("usage"))
        elif kind == "message_stop":
            out["ended"] = True
        elif kind == "error":
            out["error"] = _error_text(ev.get("error"))
    return out


def _index(ev: dict) -> int:
    index = ev.get("index")
    return index if isinstance(index, int) else 0


def _delta(block: dict[str, Any], delta: dict) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = _str(block.get("text")) + _str(delta.get("text"))
    elif kind == "thinking_delta":
        block["thinking"] = _str(block.get("thinking")) + _str(delta.get("thinking"))
    elif kind == "signature_delta":
        block["signature"] = _str(block.get("signature")) + _str(delta.get("signature"))
    elif kind == "input_json_delta":
        block["partial_json"] = _str(block.get("partial_json")) + _str(delta.get("partial_json"))


def assemble_message(body: dict) -> AssembledMessage:
    """A whole answer: a Message, or an error body (`{"type": "error", "error": {…}}`)."""
    out = _empty(None)
    if body.get("type") == "error":
        out["error"] = _error_text(body.get("error"))
        return out
    if body.get("type") != "message":
        raise ValueError("not an Anthropic Message")
    out["id"], out["model"], out["stop_reason"] = body.get("id"), body.get("model"), body.get("stop_reason")
    _merge_usage(out, body.get("usage"))
    content = body.get("content")
    out["blocks"] = {i: b for i, b in enumerate(content if isinstance(content, list) else []) if isinstance(b, dict)}
    return out


def shorten(signature: str) -> str:
    """A thinking signature, long and opaque, as its ends and its length."""
    return signature if len(signature) <= 24 else f"{signature[:10]}…{signature[-6:]} ({len(signature)} chars)"


def _tool_input(block: dict[str, Any]) -> str:
    raw = block.get("partial_json")
    if isinstance(raw, str) and raw.strip():
        try:
            return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
        except ValueError:
            return raw + "\n(input cut short: not complete JSON)"
    return json.dumps(block.get("input", {}), indent=2, ensure_ascii=False)


def render_message(a: AssembledMessage) -> str:
    facts = [x for x in (a["events"] is not None and f"{a['events']} events", a["model"] and f"model {a['model']}",
                         a["id"]) if x]
    title = "assembled message" if a["events"] is not None else "error" if a["error"] and not a["id"] else "message"
    lines = [f"── {title} ({', '.join(facts)}) ──" if facts else f"── {title} ──"]
    for i, block in sorted(a["blocks"].items()):
        kind = block.get("type")
        if kind == "thinking":
            lines += ["", f"thinking #{i}:", _str(block.get("thinking")),
                      f"(signature: {shorten(_str(block.get('signature'))) or 'none'})"]
        elif kind == "redacted_thinking":
            lines += ["", f"redacted thinking #{i} ({len(_str(block.get('data')))} chars)"]
        elif kind == "text":
            lines += ["", f"text #{i}:", _str(block.get("text"))]
        elif kind in ("tool_use", "server_tool_use"):
            lines += ["", f"tool use #{i}: {block.get('name')} ({block.get('id')})", _tool_input(block)]
        else:
            lines += ["", f"{kind} #{i}:", json.dumps(block, indent=2, ensure_ascii=False)]
    tail = [f"stop: {a['stop_reason']}"] if a["stop_reason"] or not a["error"] else []
    if a["usage"]:
        tail.append("usage: " + json.dumps(a["usage"], ensure_ascii=False))
    if a["error"]:
        tail.append(f"error: {a['error']}")
    elif not a["ended"]:
        tail.append("(the stream ended without message_stop)")
    lines += ["", *tail]
    return "\n".join(lines)


# ---- requests ------------------------------------------------------------------------------------------

SETTINGS = ("thinking", "output_config", "temperature", "top_p", "top_k", "stop_sequences", "tool_choice")


def _size(chars: int) -> str:
    size = chars * 3 // 4  # base64
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} B"


def _source(block: dict) -> str:
    source = _dict(block.get("source"))
    kind = source.get("type")
    if kind == "base64":
        return f"{source.get('media_type')}, {_size(len(_str(source.get('data'))))} base64"
    if kind == "url":
        return _str(source.get("url"))
    if kind == "text":
        return f"text, {len(_str(source.get('data')))} chars"
    return str(kind or "?")


def describe_blocks(content: object) -> list[str]:
    """A message's content (a string or blocks) as lines."""
    if isinstance(content, str):
        return [content]
    lines: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            lines.append(_str(block.get("text")))
        elif kind == "image":
            lines.append(f"[image {_source(block)}]")
        elif kind == "document":
            title = block.get("title")
            lines.append(f"[document {json.dumps(title, ensure_ascii=False) + ' ' if title else ''}{_source(block)}]")
        elif kind == "tool_use":
            lines.append(f"→ tool_use {block.get('name')}({json.dumps(block.get('input'), ensure_ascii=False)})"
                         f" id={block.get('id')}")
        elif kind == "tool_result":
            lines.append(f"← tool_result for {block.get('tool_use_id')}" + (" (error)" if block.get("is_error") else ""))
            lines += ["  " + line for text in describe_blocks(block.get("content")) for line in text.split("\n")]
        elif kind == "thinking":
            lines += [f"[thinking, signature {shorten(_str(block.get('signature'))) or 'none'}]",
                      _str(block.get("thinking"))]
        elif kind == "redacted_thinking":
            lines.append(f"[redacted_thinking, {len(_str(block.get('data')))} chars]")
        else:
            lines.append(f"[{kind}]")
    return lines


def describe_messages_request(body: dict) -> str:
    lines = [f"model: {body.get('model')}   stream: {bool(body.get('stream'))}   max_tokens: {body.get('max_tokens')}"]
    for key in SETTINGS:
        if body.get(key) is not None:
            lines.append(f"{key}: {json.dumps(body[key], ensure_ascii=False)}")
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    if tools:
        lines.append(f"tools ({len(tools)}): " + ", ".join(str(t.get("name") or t.get("type")) for t in tools))
    system = body.get("system")
    if system:
        lines += ["", "[system]", "\n\n".join(describe_blocks(system))]
    for m in body.get("messages") or []:
        if isinstance(m, dict):
            lines += ["", f"[{m.get('role') or '?'}]", *describe_blocks(m.get("content"))]
    return "\n".join(lines)


def is_messages_request(meta: contentviews.Metadata) -> bool:
    """A request the gateway routed as Anthropic Messages (the endpoint, or its token count)."""
    return is_request(meta) and (endpoint(meta) == "messages" or route(meta) in REQUEST_ROUTES)


class AnthropicRequestContentview(contentviews.Contentview):
    name = "Anthropic request"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return describe_messages_request(json_object(data))

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        return 2 if is_messages_request(metadata) and "json" in content_type(metadata) else -1


class AnthropicMessageContentview(contentviews.Contentview):
    """A Messages answer: a stream assembled, then its raw events; a whole Message (or error) the same way."""

    name = "Anthropic message"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        if "event-stream" in content_type(metadata) or data.lstrip().startswith(b"event:"):
            return (render_message(assemble_messages_stream(data)) + "\n\n── raw events ──\n"
                    + data.decode("utf-8", "replace"))
        return render_message(assemble_message(json_object(data)))

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        if not is_response(metadata):
            return -1
        kind, ours = content_type(metadata), endpoint(metadata) == "messages"
        if "event-stream" in kind:
            return 2 if ours or b"event: message_start" in data[:4096] else -1
        return 2 if ours and "json" in kind else -1


VIEWS = (AnthropicRequestContentview(), AnthropicMessageContentview())
