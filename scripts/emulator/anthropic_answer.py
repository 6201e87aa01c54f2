"""The Anthropic-compatible base's answers: a Message object, or its SSE events in Anthropic's order
(message_start, ping, content_block_start/delta/stop per block, message_delta, message_stop).

What is said comes from the OpenAI path's deterministic reply (`chat.plan`, so the same switches drive both):
"Echo: <last user text>", a tool call when the prompt asks for one (tools.py), "Tool said: <result>" after a
tool_result, the reasoning text as a `thinking` block with a signature. Shapes follow Anthropic's Messages reference; usage
follows Anthropic's accounting (input_tokens without the cached and newly cached prompt tokens).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator

from . import anthropic_rules, chat
from .cache import Served, text_of, tokens, tools_text

STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens", "content_filter": "refusal"}


def _result_text(block: dict) -> str:
    content = block.get("content", "")
    return content if isinstance(content, str) else text_of(content)


def _parts(content) -> list[dict]:
    """Content as OpenAI-style text parts (tool results as their text), cache markers kept."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts = []
    for b in content:
        text = b.get("text", "") if b["type"] == "text" else _result_text(b) if b["type"] == "tool_result" else ""
        part = {"type": "text", "text": text}
        if isinstance(b.get("cache_control"), dict):
            part["cache_control"] = b["cache_control"]
        parts.append(part)
    return parts


def view(body: dict) -> dict:
    """The request as the OpenAI path sees one: what chat.plan and the prompt cache take."""
    messages = [{"role": "system", "content": _parts(body["system"])}] if body.get("system") else []
    for m in body["messages"]:
        results = isinstance(m["content"], list) and any(b["type"] == "tool_result" for b in m["content"])
        messages.append({"role": "tool" if results else m["role"], "content": _parts(m["content"])})
    tools = [{"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
             for t in body.get("tools") or []]
    choice = body.get("tool_choice") or {}
    tool_choice = {"none": "none", "any": "required", "auto": "auto"}.get(choice.get("type"))
    if choice.get("type") == "tool":
        tool_choice = {"type": "function", "function": {"name": choice["name"]}}
    # Explicit enabled/disabled decide; otherwise a model that thinks by default thinks when the `reasoning`
    # switch says so (as on the OpenAI path), and the others do not.
    kind = (body.get("thinking") or {}).get("type")
    thinking = {"enabled": True, "disabled": False}.get(kind, None if anthropic_rules.thinking_on(body) else False)
    return {"model": body["model"], "messages": messages, "tools": tools, "tool_choice": tool_choice,
            "enable_thinking": thinking}


def prompt_tokens(body: dict) -> int:
    """The emulator's count of a request's prompt (tools, system and message texts, characters / 4): count_tokens."""
    v = view(body)
    return tokens(tools_text(v) + "".join(text_of(m["content"]) for m in v["messages"]))


def signature(thinking: str) -> str:
    return base64.b64encode(hashlib.sha256(b"qwen-emulator:" + thinking.encode()).digest()).decode()


def plan(body: dict, sw: dict, served: Served) -> dict:
    """What to answer: blocks (with tool arguments as sent), stop reason and sequence, usage."""
    v = view(body)
    p = chat.plan(v, sw, served)
    text, stop_sequence = p["text"], None
    hits = [(text.find(s), s) for s in body.get("stop_sequences") or () if s and s in text]
    if hits and not p["calls"]:
        at, stop_sequence = min(hits)
        text = text[:at]
    reason = "stop_sequence" if stop_sequence else STOP_REASONS.get(p["finish"], p["finish"])
    blocks: list[dict] = []
    if p["reasoning"]:
        blocks.append({"type": "thinking", "thinking": p["reasoning"], "signature": signature(p["reasoning"])})
    if text or not p["calls"]:
        blocks.append({"type": "text", "text": text})
    for call in p["calls"]:
        blocks.append({"type": "tool_use", "id": "toolu_" + call["id"].removeprefix("call_"), "name": call["name"],
                       "arguments": call["arguments"]})
    usage = p["usage"]
    details = usage.get("prompt_tokens_details", {})
    cached = details.get("cached_tokens", usage.get("cached_tokens", 0))
    created = details.get("cache_creation_input_tokens", 0)
    output = tokens(p["reasoning"] + text + "".join(c["arguments"] for c in p["calls"]))
    return {"blocks": blocks, "stop_reason": reason, "stop_sequence": stop_sequence, "usage": {
        "input_tokens": max(0, usage["prompt_tokens"] - cached - created), "output_tokens": output,
        "cache_creation_input_tokens": created, "cache_read_input_tokens": cached}}


def _input(arguments: str) -> dict:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _shell(body: dict) -> dict:
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": body["model"],
            "content": [], "stop_reason": None, "stop_sequence": None}


def message(body: dict, a: dict) -> dict:
    content = [{k: v for k, v in b.items() if k != "arguments"} | ({"input": _input(b["arguments"])}
               if b["type"] == "tool_use" else {}) for b in a["blocks"]]
    return {**_shell(body), "content": content, "stop_reason": a["stop_reason"],
            "stop_sequence": a["stop_sequence"], "usage": a["usage"]}


def events(body: dict, a: dict, sw: dict) -> Iterator[tuple[str, dict]]:
    """(event name, data) pairs; the `deltas`, `chunk_count` switches cut the text as on the OpenAI path."""
    start_usage = {**a["usage"], "output_tokens": 0}
    yield "message_start", {"type": "message_start", "message": {**_shell(body), "usage": start_usage}}
    yield "ping", {"type": "ping"}
    for i, b in enumerate(a["blocks"]):
        if b["type"] == "thinking":
            head, deltas = {"type": "thinking", "thinking": "", "signature": ""}, [
                {"type": "thinking_delta", "thinking": piece} for piece in chat.pieces(b["thinking"], 0)]
            deltas.append({"type": "signature_delta", "signature": b["signature"]})
        elif b["type"] == "text":
            given = [str(d) for d in sw["deltas"] or ()]
            pieces = given if given and b["text"] == "".join(given) else chat.pieces(b["text"], int(sw["chunk_count"]))
            head, deltas = {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces]
        else:
            args = b["arguments"]
            head = {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": frag}
                      for frag in (args[:len(args) // 2], args[len(args) // 2:]) if frag]
        yield "content_block_start", {"type": "content_block_start", "index": i, "content_block": head}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    yield "message_delta", {"type": "message_delta", "usage": a["usage"],
                            "delta": {"stop_reason": a["stop_reason"], "stop_sequence": a["stop_sequence"]}}
    yield "message_stop", {"type": "message_stop"}
