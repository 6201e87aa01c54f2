"""mitmweb content views: streams shown assembled (text, reasoning, tool calls, usage), then raw;
OpenAI/Qwen request bodies shown as a readable conversation; and, for a request the gateway forwarded,
what went to Qwen (the flow's request is the client's: method, path and body as the client sent them); the
cache doctor's verdict on a turn and its prefix's diff ("Qwen cache doctor", on the answer).
The Anthropic Messages views are in anthropic_views.py. Registered by addons/qwen.py."""

from __future__ import annotations

import json
from typing import Any, TypedDict
from urllib.parse import urlsplit

from mitmproxy import contentviews, http

from ..redact import redact_headers, redact_url
from ..sse import SSEDecoder
from . import anthropic_views
from .anthropic_views import describe_messages_request, is_messages_request
from .flowrecord import endpoint as _endpoint, is_response as _is_response, json_object, record, upstream as _upstream


class ToolCall(TypedDict):
    """One tool call of an assembled answer (arguments as streamed: JSON text, maybe cut short)."""

    id: str | None
    name: str
    arguments: str


class Assembled(TypedDict):
    """A stream folded into one answer; a plain dict at run time, typed so the renderer's keys are checked."""

    text: str
    reasoning: str
    tool_calls: dict[int, ToolCall]  # by the stream's index (chat) or output_index (responses)
    finish_reason: str | None
    usage: dict[str, Any] | None
    error: str | None
    events: int
    model: str | None


def _events(data: bytes) -> list[tuple[str | None, str]]:
    d = SSEDecoder()
    return [(e.event, e.data) for e in d.feed(data) + d.flush()]


def _empty() -> Assembled:
    return {"text": "", "reasoning": "", "tool_calls": {}, "finish_reason": None, "usage": None, "error": None,
            "events": 0, "model": None}


def assemble_chat_stream(data: bytes) -> Assembled:
    """Chat-completion (or legacy completion) chunks folded into one answer."""
    out = _empty()
    for _, raw in _events(data):
        out["events"] += 1
        if raw.strip() == "[DONE]":
            continue
        try:
            chunk = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            out["error"] = chunk["error"].get("message") if isinstance(chunk["error"], dict) else str(chunk["error"])
        out["model"] = chunk.get("model") or out["model"]
        if isinstance(chunk.get("usage"), dict):
            out["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta: dict[str, Any] = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
            out["text"] += delta.get("content") or choice.get("text") or ""
            out["reasoning"] += delta.get("reasoning_content") or ""
            for tc in delta.get("tool_calls") or []:
                slot = out["tool_calls"].setdefault(tc.get("index", 0), {"id": None, "name": "", "arguments": ""})
                slot["id"] = slot["id"] or tc.get("id")
                fn = tc.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            out["finish_reason"] = choice.get("finish_reason") or out["finish_reason"]
    return out


def assemble_responses_stream(data: bytes) -> Assembled:
    """Responses API events folded into one answer."""
    out = _empty()
    for _, raw in _events(data):
        out["events"] += 1
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        kind = ev.get("type") if isinstance(ev, dict) else None
        if kind == "response.output_text.delta":
            out["text"] += ev.get("delta") or ""
        elif kind == "response.reasoning_summary_text.delta":
            out["reasoning"] += ev.get("delta") or ""
        elif kind == "response.output_item.done" and (ev.get("item") or {}).get("type") == "function_call":
            item = ev["item"]
            out["tool_calls"][ev.get("output_index", 0)] = {"id": item.get("call_id"), "name": item.get("name", ""),
                                                            "arguments": item.get("arguments", "")}
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            resp = ev.get("response") or {}
            out["finish_reason"] = resp.get("status")
            out["usage"] = resp.get("usage")
            out["model"] = resp.get("model")
            if resp.get("error"):
                out["error"] = resp["error"].get("message")
        elif kind == "error":
            out["error"] = ev.get("message")
    return out


def render_assembled(a: Assembled) -> str:
    lines = [f"── assembled answer ({a['events']} events{', model ' + a['model'] if a['model'] else ''}) ──"]
    if a["reasoning"]:
        lines += ["", "reasoning:", a["reasoning"]]
    if a["text"]:
        lines += ["", "text:", a["text"]]
    for i, call in sorted(a["tool_calls"].items()):
        try:
            args = json.dumps(json.loads(call["arguments"]), indent=2, ensure_ascii=False)
        except ValueError:
            args = call["arguments"]
        lines += ["", f"tool call #{i}: {call['name']} ({call['id']})", args]
    lines += ["", f"finish: {a['finish_reason']}"]
    if a["usage"]:
        lines.append("usage: " + json.dumps(a["usage"], ensure_ascii=False))
    if a["error"]:
        lines.append(f"error: {a['error']}")
    return "\n".join(lines)


def describe_request(body: dict) -> str:
    lines = [f"model: {body.get('model')}   stream: {bool(body.get('stream'))}"]
    for key in ("temperature", "max_tokens", "max_output_tokens", "tool_choice", "response_format", "reasoning",
                "enable_thinking", "previous_response_id"):
        if body.get(key) is not None:
            lines.append(f"{key}: {json.dumps(body[key], ensure_ascii=False)}")
    tools = body.get("tools") or []
    if tools:
        names = [(t.get("function") or t).get("name") or t.get("type") for t in tools if isinstance(t, dict)]
        lines.append("tools: " + ", ".join(str(n) for n in names))
    if isinstance(body.get("instructions"), str):
        lines += ["", "[instructions]", body["instructions"]]
    items = body.get("messages") or body.get("input") or body.get("prompt") or []
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for m in items if isinstance(items, list) else []:
        if not isinstance(m, dict):
            continue
        role = m.get("role") or m.get("type") or "?"
        lines += ["", f"[{role}]"]
        content = m.get("content") if "content" in m else m.get("output", m.get("arguments"))
        if isinstance(content, list):
            for p in content:
                if isinstance(p, dict) and p.get("type") in ("image_url", "input_image"):
                    lines.append("[image]")
                elif isinstance(p, dict):
                    lines.append(str(p.get("text", "")))
        elif content is not None:
            lines.append(str(content))
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function") or {}
            lines.append(f"→ tool call {fn.get('name')}({fn.get('arguments')}) id={tc.get('id')}")
        if m.get("tool_call_id") or m.get("call_id"):
            lines.append(f"(for call {m.get('tool_call_id') or m.get('call_id')})")
    return "\n".join(lines)


class QwenChatStreamContentview(contentviews.Contentview):
    name = "Qwen chat stream"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return render_assembled(assemble_chat_stream(data)) + "\n\n── raw events ──\n" + data.decode("utf-8", "replace")

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        if "event-stream" not in (metadata.content_type or "") or not _is_response(metadata):
            return -1
        return 2 if _endpoint(metadata) in ("chat.completions", "completions") or b"chat.completion.chunk" in data[:4096] \
            else -1


class QwenResponsesStreamContentview(contentviews.Contentview):
    name = "Qwen responses stream"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return render_assembled(assemble_responses_stream(data)) + "\n\n── raw events ──\n" + data.decode("utf-8",
                                                                                                        "replace")

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        if "event-stream" not in (metadata.content_type or "") or not _is_response(metadata):
            return -1
        return 2 if _endpoint(metadata) == "responses" or b"event: response." in data[:4096] else -1


class OpenAIRequestContentview(contentviews.Contentview):
    name = "OpenAI request"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return describe_request(json_object(data))

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        if not isinstance(metadata.http_message, http.Request) or _endpoint(metadata) is None \
                or is_messages_request(metadata):  # the "Anthropic request" view's
            return -1
        return 2 if "json" in (metadata.content_type or "") else -1


def describe_upstream(up: dict, client_view: str = "OpenAI request") -> str:
    """The request the gateway sent to Qwen, from the flow's record (the credential is redacted there
    already; redacted again, as the debug log does, in case a header carries another secret). A Messages
    request passed through to an Anthropic-compatible base is still a Messages request."""
    url = redact_url(str(up.get("url")))
    lines = [f"POST {url}", f"(what the gateway sent to Qwen; the \"{client_view}\" view shows the client's request)", ""]
    headers = up.get("headers") if isinstance(up.get("headers"), dict) else {}
    lines += [f"{k}: {v}" for k, v in redact_headers(headers).items()]
    body = up.get("body")
    if isinstance(body, dict):
        messages = urlsplit(url).path.rstrip("/").endswith("/messages")
        lines += ["", "── conversation ──", describe_messages_request(body) if messages else describe_request(body),
                  "", "── body ──", json.dumps(body, indent=2, ensure_ascii=False)]
    else:
        lines += ["", "(body not kept: only bodies up to 256 KiB are; the debug log has it)"]
    return "\n".join(lines)


class QwenUpstreamRequestContentview(contentviews.Contentview):
    """Shown first for requests the gateway forwarded: their content is the client's, this is Qwen's side."""

    name = "Qwen upstream request"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        up = _upstream(metadata)
        if up is None:
            raise ValueError("not a request the gateway forwarded")
        return describe_upstream(up, "Anthropic request" if is_messages_request(metadata) else "OpenAI request")

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        if not isinstance(metadata.http_message, http.Request) or _upstream(metadata) is None:
            return -1
        return 3  # before "OpenAI request" and "Anthropic request" (2): the detail view shows what went to Qwen


def describe_cache(cache: dict) -> str:
    """The cache doctor's record of a turn (observe/cache_doctor.py): its verdict, then the blocks around the
    prefix's first change, each with its kind, its place in this request and both turns' hashes (no text)."""
    lines = [str(cache.get("verdict") or ""), ""]
    lines.append(f"conversation {cache.get('conversation')} · turn {cache.get('turn')} · read {cache.get('read')} · "
                 f"written {cache.get('written')} · prompt {cache.get('prompt')}")
    diff = cache.get("diff")
    if not isinstance(diff, dict):
        lines += ["", "no change in the prompt's prefix to show" + (
            f" (the cause: {cache['cause']})" if cache.get("cause") else "")]
        return "\n".join(lines)
    lines += ["", f"prefix vs turn {diff.get('against')}: first change at block {diff.get('block')} "
              f"({diff.get('where')}), {diff.get('blocks_was')} blocks then, {diff.get('blocks_now')} now", "",
              f"  {'block':>5}  {'kind':<12}  {'where':<32}  {'was':<8}  {'now':<8}"]
    for row in diff.get("blocks") or []:
        mark = "→" if row.get("block") == diff.get("block") else "=" if row.get("same") else "≠"
        lines.append(f"{mark} {row.get('block'):>5}  {row.get('kind', ''):<12}  {row.get('where', ''):<32}  "
                     f"{row.get('was') or '-':<8}  {row.get('now') or '-':<8}")
    return "\n".join(lines)


class QwenCacheDoctorContentview(contentviews.Contentview):
    """A turn's cache share and what changed in its prompt's prefix (offered on the flow's answer)."""

    name = "Qwen cache doctor"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        q = record(metadata)
        cache = q.get("cache") if q is not None else None
        if not isinstance(cache, dict):
            raise ValueError("no cache doctor's record: not a turn of a conversation Qwen answered")
        return describe_cache(cache)

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        q = record(metadata)
        return 0.5 if _is_response(metadata) and q is not None and isinstance(q.get("cache"), dict) else -1


VIEWS = (QwenChatStreamContentview(), QwenResponsesStreamContentview(), OpenAIRequestContentview(),
         QwenUpstreamRequestContentview(), QwenCacheDoctorContentview(),
         *anthropic_views.VIEWS)


def register() -> None:
    for view in VIEWS:
        contentviews.add(view)
