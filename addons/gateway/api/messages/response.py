"""An answer in the chat form -> an Anthropic Message: thinking (signed by the gateway), text and tool_use blocks,
the stop reason and the usage in Anthropic's terms. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, NotRequired, TypedDict

from ... import ids
from ..websearch import anthropic_citations, server_tool_use
from .stops import cut

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]
# Qwen's finish reasons ("stop_sequence" is the gateway's own finding: stops.py).
_STOP: dict[str, StopReason] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                                "content_filter": "refusal"}


class MessagesUsage(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    server_tool_use: NotRequired[dict]  # {"web_search_requests": n} when Qwen searched the web
    cache_creation: NotRequired[dict]  # the writes by lifetime (5 minutes, Qwen4's hour), when Qwen says them


class Message(TypedDict):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: MessagesUsage
    container: NotRequired[None]


def new_message_id() -> str:
    return "msg_" + ids.hex_id(24)


def stop_reason(finish: object) -> StopReason:
    return _STOP.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def usage(chat_usage: object) -> MessagesUsage:
    """Anthropic counts input without the cached part: input + cache_read + cache_creation = the whole prompt."""
    u: dict = chat_usage if isinstance(chat_usage, dict) else {}
    raw = u.get("prompt_tokens_details")
    details: dict = raw if isinstance(raw, dict) else {}
    cached = _int(details.get("cached_tokens"))
    created = _int(details.get("cache_creation_input_tokens"))
    prompt = _int(u.get("prompt_tokens"))
    out = MessagesUsage(input_tokens=max(0, prompt - cached - created), output_tokens=_int(u.get("completion_tokens")),
                        cache_read_input_tokens=cached, cache_creation_input_tokens=created)
    creation = details.get("cache_creation")
    if isinstance(creation, dict):  # Model Studio's explicit cache says its writes by lifetime, as Anthropic does
        out["cache_creation"] = {"ephemeral_5m_input_tokens": _int(creation.get("ephemeral_5m_input_tokens")),
                                 "ephemeral_1h_input_tokens": _int(creation.get("ephemeral_1h_input_tokens"))}
    return out


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def tool_input(arguments: object) -> dict:
    """A tool call's arguments as the `input` object (Qwen writes JSON text; anything else is kept, wrapped)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except ValueError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def chat_to_message(chat: dict, *, model: str, sign: Callable[[str], str], thinking: bool = True,
                    stops: tuple[str, ...] = ()) -> Message:
    """`stops`: the request's stop sequences; the text ends before the first one found, and nothing after it
    (tool calls included) is the client's."""
    choices = chat.get("choices") or [{}]
    choice: dict = choices[0] if isinstance(choices[0], dict) else {}
    raw = choice.get("message")
    message: dict = raw if isinstance(raw, dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if thinking and isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": sign(reasoning)})
    text = message.get("content")
    matched = None
    if isinstance(text, str):
        text, matched = cut(text, stops)
    if isinstance(text, str) and text:
        cited = anthropic_citations(text, message.get("annotations"))  # web search sources
        content.append({"type": "text", "text": text, **({"citations": cited} if cited else {})})
    for call in message.get("tool_calls") or [] if matched is None else []:
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": str(call.get("id") or "toolu_" + ids.hex_id(24)),
                        "name": str(fn.get("name") or ""), "input": tool_input(fn.get("arguments"))})
    used = usage(chat.get("usage"))
    searches = server_tool_use(chat.get("search_info"))
    if searches:
        used["server_tool_use"] = searches
    return Message(id=new_message_id(), type="message", role="assistant", model=model, content=content,
                   stop_reason="stop_sequence" if matched else stop_reason(choice.get("finish_reason")),
                   stop_sequence=matched, usage=used)
