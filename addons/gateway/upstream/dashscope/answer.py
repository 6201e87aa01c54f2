"""DashScope's whole answers as a chat completion in the chat form: the client's model name, usage in OpenAI's
place, tool calls complete, thinking that leaked into content moved to `reasoning_content`. Pure functions."""

from __future__ import annotations

import json

from ... import ids
from .errors import classify_stream_error
from .search import annotate_answer


def normalise_usage(usage: object) -> dict | None:
    """Qwen may put cached_tokens at top level; OpenAI clients read prompt_tokens_details, and an explicit
    cache's creation as OpenAI's `cache_write_tokens` beside Qwen's own `cache_creation_input_tokens` (and
    `cache_type`, which tells its hits from the implicit cache's: pricing/prices.py)."""
    if not isinstance(usage, dict):
        return None
    out = dict(usage)
    cached = out.pop("cached_tokens", None)
    details = dict(out.get("prompt_tokens_details") or {})
    if isinstance(cached, int) and "cached_tokens" not in details:
        details["cached_tokens"] = cached
    created = details.get("cache_creation_input_tokens")
    if isinstance(created, int) and "cache_write_tokens" not in details:
        details["cache_write_tokens"] = created
    if details:
        out["prompt_tokens_details"] = details
    for key in ("prompt_tokens", "completion_tokens"):
        out.setdefault(key, 0)
    out.setdefault("total_tokens", out["prompt_tokens"] + out["completion_tokens"])
    return out


# The finishes OpenAI's chat completions know (its SDK accepts no other; Model Studio documents stop, length and
# tool_calls, and `error_finish`, read apart): any other is never passed on, but read as the answer broken off
FINISHES = ("stop", "length", "tool_calls", "content_filter", "function_call")


def unknown_finish(finish: object) -> str:
    """Why an answer whose finish no client knows is not complete (a break: continued, or the client's error)."""
    return f"Qwen ended the answer with finish_reason {finish!r}, which says it is not complete."


def qwen_to_chat(body: dict, *, model: str) -> dict:
    """A non-stream Qwen answer as the OpenAI client expects it: its own model name, usage, tool calls."""
    out = dict(body)
    out["model"] = model
    if out.get("system_fingerprint") is None:
        out.pop("system_fingerprint", None)  # Qwen sends null; OpenAI's schema allows a string or nothing
    out.setdefault("object", "chat.completion")
    if "id" not in out:  # an id made only when Qwen sent none (setdefault would make one every time)
        out["id"] = f"chatcmpl-{ids.uuid_text()}"
    choices = []
    for i, choice in enumerate(out.get("choices") or []):
        choice = dict(choice)
        if choice.get("finish_reason") == "error_finish":
            # R6: an error (e.g. throttling), its text in the message: never the model's answer.
            text = (choice.get("message") or {}).get("content") if isinstance(choice.get("message"), dict) else None
            raise classify_stream_error(text).to_gateway_error()
        if (finish := choice.get("finish_reason")) is not None and finish not in FINISHES:
            raise classify_stream_error(unknown_finish(finish)).to_gateway_error()
        choice.setdefault("index", i)
        choice.setdefault("logprobs", None)
        message = dict(choice.get("message") or {})
        message.setdefault("role", "assistant")
        message.setdefault("content", None)
        content = message.get("content")
        if isinstance(content, str) and content.lstrip().startswith(("<think>", "<thinking>")):
            reasoning, content = split_think(content)
            message["content"] = content
            if reasoning and not message.get("reasoning_content"):
                message["reasoning_content"] = reasoning
        if message.get("tool_calls"):
            message["tool_calls"] = [_fix_tool_call(tc, j) for j, tc in enumerate(message["tool_calls"])]
            if choice.get("finish_reason") == "stop":
                choice["finish_reason"] = "tool_calls"
        message.setdefault("refusal", None)
        choice["message"] = message
        choice.setdefault("finish_reason", "stop")
        choices.append(choice)
    out["choices"] = choices
    usage = normalise_usage(out.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return annotate_answer(out)  # web search sources (search_info) as url_citation annotations


def _fix_tool_call(tc: dict, j: int) -> dict:
    tc = dict(tc)
    tc.pop("index", None)
    if "id" not in tc:
        tc["id"] = f"call_{ids.hex_id(12)}"
    tc.setdefault("type", "function")
    fn = dict(tc.get("function") or {})
    fn.setdefault("name", "")
    if not isinstance(fn.get("arguments"), str):
        fn["arguments"] = "" if fn.get("arguments") is None else _json(fn["arguments"])
    tc["function"] = fn
    return tc


def _json(v: object) -> str:
    return json.dumps(v, ensure_ascii=False)


def split_think(text: str) -> tuple[str, str]:
    """`<think>r</think>c` -> (r, c): thinking that leaked into content."""
    stripped = text.lstrip()
    for open_tag, close_tag in (("<think>", "</think>"), ("<thinking>", "</thinking>")):
        if stripped.startswith(open_tag):
            rest = stripped[len(open_tag):]
            reasoning, sep, content = rest.partition(close_tag)
            if not sep:
                return rest, ""
            return reasoning.strip(), content.lstrip()
    return "", text
