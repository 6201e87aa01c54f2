"""The way out for a whole answer: Qwen's chat completion -> a Response object.

`response_object` writes every field OpenAI's schema requires and the Open Responses spec's besides, with
the values used (`completed_at` once completed; the sampling defaults where the client sent none), echoing
the request (the stream translator uses it too; `upgraded` brings a stored older one up to it); `chat_to_response` fills its output with the client's items (items.py): the reasoning (sealed
when the request's `include` asks for it), the message, one item per tool call — or, for a compaction
request, the one sealed `compaction` item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from ...errors import GatewayError
from ..websearch import responses_annotations, search_call_item
from .compaction import compaction_item
from .fields import cap_calls
from .items import message_item, new_id, reasoning_item, tool_item, wants_sealed_reasoning, wants_summary
from .shapes import ItemStatus, OutputItem, Response, ResponseError, Usage
from .tools import ToolRef, echo_tools

# A chat finish_reason that leaves a Response incomplete -> the reason the Responses API gives. Keyed by
# object: an odd finish_reason is looked up as it came.
_INCOMPLETE: dict[object, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}
# The sampling a Response reports when the client sent none: the API's defaults, as OpenAI's Response says
# `temperature: 1.0` rather than null (Qwen is sent none, and samples at its own model's defaults).
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0}
# The Open Responses spec requires the penalties in a Response; OpenAI's request defines neither (a client's
# is refused as an unknown parameter), so none ever reaches Qwen: the API's neutral value.
NO_PENALTY = 0.0


def usage_to_responses(usage: dict | None) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or details.get("cache_creation_input_tokens") or 0)
    reasoning = int(((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(usage.get("total_tokens") or prompt + completion)}


def sampling(request: dict, field: str) -> float:
    """The request's `temperature` or `top_p` as used: the client's number, else the API's default."""
    value = request.get(field)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else SAMPLING_DEFAULTS[field]


def completion_time(status: str) -> int | None:
    """`completed_at` for a Response reaching `status` now: unix seconds when it completed, else null."""
    return int(time.time()) if status == "completed" else None


def response_object(request: dict, *, response_id: str, created_at: int, status: str, output: list[OutputItem],
                    usage: dict | None = None, error: ResponseError | None = None,
                    incomplete: str | None = None, completed_at: int | None = None) -> Response:
    """A Response with every field OpenAI's schema requires and the Open Responses spec's besides, echoing the
    request. `usage` is null until Qwen reports it and `user` when not sent, as OpenAI's snapshots say them."""
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "completed_at": completed_at if status == "completed" else None,
        "background": request.get("background") is True, "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions") if isinstance(request.get("instructions"), str) else None,
        "max_output_tokens": request.get("max_output_tokens"), "max_tool_calls": cap_calls(request),
        "model": request.get("model") or "",
        "output": output, "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") if isinstance(request.get("reasoning"), dict) else None,
        "service_tier": "default",  # the tier that served it: Qwen has one (the request's is not sent)
        "store": request.get("store", True) is not False,
        "temperature": sampling(request, "temperature"), "top_p": sampling(request, "top_p"),
        "presence_penalty": NO_PENALTY, "frequency_penalty": NO_PENALTY,
        "text": t if isinstance(t := request.get("text"), dict) else {"format": {"type": "text"}},
        "tool_choice": echo_tool_choice(request.get("tool_choice")),
        "tools": echo_tools(request), "top_logprobs": 0,  # anything else is refused (fields.py)
        # "auto": the context guard drops the oldest items when the input is over the model's limit
        "truncation": t if (t := request.get("truncation")) in ("auto", "disabled") else "disabled",
        "usage": usage_to_responses(usage) if usage else None,
        "metadata": m if isinstance(m := request.get("metadata"), dict) else {},
        # echoed as OpenAI does (the key names the upstream session: rules.session_id)
        "prompt_cache_key": k if isinstance(k := request.get("prompt_cache_key"), str) else None,
        "safety_identifier": s if isinstance(s := request.get("safety_identifier"), str) else None,
        "user": u if isinstance(u := request.get("user"), str) else None,
    }


def upgraded(stored: dict) -> dict:
    """A Response stored by an older gateway with the fields it lacked, as one made now would say them:
    `completed_at` unknown (null), the sampling defaults where it said null, function tools' `strict`."""
    response = {"completed_at": None, **stored}
    for field in SAMPLING_DEFAULTS:
        response[field] = sampling(response, field)
    for field in ("presence_penalty", "frequency_penalty"):
        response.setdefault(field, NO_PENALTY)
    if isinstance(response.get("tools"), list):
        response["tools"] = echo_tools(response)
    return response


def echo_tool_choice(choice: object) -> object:
    """The request's tool_choice as the Response echoes it: as sent (a named or allowed_tools choice
    included), `auto` when it sent none."""
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        return choice
    return choice if isinstance(choice, dict) and isinstance(choice.get("type"), str) else "auto"


def chat_to_response(chat: dict, request: dict, *, response_id: str, created_at: int,
                     tools: dict[str, ToolRef] | None = None, seal: Callable[[str, dict], str] | None = None,
                     compaction: bool = False) -> dict[str, Any]:
    """The Response for a whole chat answer. Typed as a plain dict for the endpoints (components.py), whose
    answers are dicts."""
    return cast(dict[str, Any], _response(chat, request, response_id, created_at, tools, seal, compaction))


def _response(chat: dict, request: dict, response_id: str, created_at: int, tools: dict[str, ToolRef] | None,
              seal: Callable[[str, dict], str] | None, compaction: bool) -> Response:
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[OutputItem] = []
    if compaction:
        summary = s if isinstance(s := message.get("content"), str) else ""
        if not summary.strip() or seal is None:
            raise GatewayError(502, "Qwen returned no summary to compact the conversation with.",
                               code="compaction_failed")
        output.append(compaction_item(summary.strip(), seal, str(request.get("model") or "")))
        return response_object(request, response_id=response_id, created_at=created_at, status="completed",
                               output=output, usage=chat.get("usage"), completed_at=completion_time("completed"))
    search = search_call_item(chat.get("search_info"), request)  # Qwen searched before it answered
    if search is not None:
        output.append(search)
    if message.get("reasoning_content"):
        text = message["reasoning_content"]
        sealed = seal("reasoning", {"text": text}) if seal and wants_sealed_reasoning(request) else None
        output.append(reasoning_item(new_id("rs"), text, sealed, wants_summary(request)))
    incomplete = incomplete_reason(choice.get("finish_reason"))
    calls = message.get("tool_calls") or []
    if (cap := cap_calls(request)) is not None:  # max_tool_calls: the first calls Qwen made
        calls = calls[:cap]
    cut: ItemStatus = "incomplete" if incomplete else "completed"  # the last item is the one cut off
    if message.get("content"):
        item = message_item(new_id("msg"), message["content"], "completed" if calls else cut)
        item["content"][0]["annotations"] = list(responses_annotations(message.get("annotations")))
        output.append(item)
    for i, tc in enumerate(calls):
        fn = tc.get("function") or {}
        name = fn.get("name") or ""
        output.append(tool_item((tools or {}).get(name), name, new_id("fc"), tc.get("id") or new_id("call"),
                                fn.get("arguments") or "", cut if i == len(calls) - 1 else "completed"))
    status = "incomplete" if incomplete else "completed"
    return response_object(request, response_id=response_id, created_at=created_at, status=status, output=output,
                           usage=chat.get("usage"), incomplete=incomplete, completed_at=completion_time(status))


def incomplete_reason(finish_reason: object) -> str | None:
    """A chat finish_reason that leaves a Response incomplete, as the Responses API names it."""
    return _INCOMPLETE.get(finish_reason)
