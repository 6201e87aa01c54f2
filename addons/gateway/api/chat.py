"""Chat completions: OpenAI request -> Qwen request, Qwen answer -> OpenAI answer. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Mapping

from .. import ids
from ..errors import GatewayError, classify_stream_error
from ..models import Thinking
from ..upstream.dashscope import rules

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# OpenAI-only request fields Qwen rejects or would misread (prompt_cache_key is read first: the session id).
_DROP = ("store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "prediction",
         "modalities", "audio", "web_search_options", "verbosity")


def validate_chat_request(body: object) -> dict:
    """Reject what no upstream could answer, with the param OpenAI would name."""
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "'messages' is required and must be a non-empty array.", param="messages",
                           code="missing_required_parameter" if messages is None else "invalid_type")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise GatewayError(400, f"messages[{i}] must be an object with a valid 'role'.",
                               param=f"messages[{i}].role", code="invalid_value")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise GatewayError(400, f"messages[{i}].content must be a string or an array of content parts.",
                               param=f"messages[{i}].content", code="invalid_type")
    if "model" in body and not isinstance(body["model"], str):
        raise GatewayError(400, "'model' must be a string.", param="model", code="invalid_type")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise GatewayError(400, "'stream' must be a boolean.", param="stream", code="invalid_type")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise GatewayError(400, "'tools' must be an array.", param="tools", code="invalid_type")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise GatewayError(400, "'n' must be a positive integer.", param="n", code="invalid_value")
    return body


def wants_usage(body: dict) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and bool(opts.get("include_usage"))


def chat_to_qwen(body: dict, *, model: str, oauth: bool, session_id: str | None = None,
                 notes: list[str] | None = None, default_model: str | None = None,
                 learned_thinking: Mapping[str, Thinking] | None = None) -> dict:
    """The body Qwen gets, obeying DashScope's rules, in qwen-code's shape (OAuth and keys alike).

    `notes` collects what was changed from the client's request; `default_model` is the account's, tried
    first when images need a vision model; `session_id` overrides the one derived from the conversation;
    `learned_thinking` overrides the thinking table for models a 400 taught about (`thinking_refusal`).
    The model may change (images): read it back from the result's "model".
    """
    # A shallow copy: every step below builds new containers where it changes one (copy on write), so
    # the client's body is never altered (a deep copy of a long conversation costs more than the rest).
    out = dict(body)
    session = session_id or rules.session_id(body)
    out["model"] = model
    out["messages"] = rules.system_roles([m for m in out.get("messages") or [] if isinstance(m, dict)], notes)
    effort = out.get("reasoning_effort")
    for key in _DROP:
        out.pop(key, None)
    if "max_completion_tokens" in out:
        out.setdefault("max_tokens", out.pop("max_completion_tokens"))
    if out.get("stream"):
        # Always ask for usage: the gateway needs it; the client only sees it if it asked.
        out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}
    else:
        out.pop("stream_options", None)
    if not out.get("tools"):
        out.pop("tools", None)
        out.pop("tool_choice", None)
        out.pop("parallel_tool_calls", None)
    out = rules.route_vision(out, oauth=oauth, default_model=default_model, notes=notes)
    out = rules.thinking_knobs(out, effort, notes, learned=learned_thinking)
    out = rules.clamp_output(out, notes)
    return rules.qwen_code_shape(out, session=session, stream=bool(out.get("stream")))


def normalise_usage(usage: object) -> dict | None:
    """Qwen may put cached_tokens at top level; OpenAI clients read prompt_tokens_details."""
    if not isinstance(usage, dict):
        return None
    out = dict(usage)
    cached = out.pop("cached_tokens", None)
    details = dict(out.get("prompt_tokens_details") or {})
    if isinstance(cached, int) and "cached_tokens" not in details:
        details["cached_tokens"] = cached
    if details:
        out["prompt_tokens_details"] = details
    for key in ("prompt_tokens", "completion_tokens"):
        out.setdefault(key, 0)
    out.setdefault("total_tokens", out["prompt_tokens"] + out["completion_tokens"])
    return out


def qwen_to_chat(body: dict, *, model: str) -> dict:
    """A non-stream Qwen answer as the OpenAI client expects it: its own model name, usage, tool calls."""
    out = dict(body)
    out["model"] = model
    if out.get("system_fingerprint") is None:
        out.pop("system_fingerprint", None)  # Qwen sends null; OpenAI's schema allows a string or nothing
    out.setdefault("object", "chat.completion")
    out.setdefault("id", f"chatcmpl-{ids.uuid_text()}")
    choices = []
    for i, choice in enumerate(out.get("choices") or []):
        choice = dict(choice)
        if choice.get("finish_reason") == "error_finish":
            # R6: an error (e.g. throttling), its text in the message: never the model's answer.
            text = (choice.get("message") or {}).get("content") if isinstance(choice.get("message"), dict) else None
            raise classify_stream_error(text).to_gateway_error()
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
    return out


def _fix_tool_call(tc: dict, j: int) -> dict:
    tc = dict(tc)
    tc.pop("index", None)
    tc.setdefault("id", f"call_{ids.hex_id(12)}")
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
