"""Model Studio's Responses answers read back into the chat form (`qwen_responses_native`): a whole
Response as a chat completion, its stream's events as chat chunks (`EventSource`, the pair's `ChunkSource`).
The client then gets them from the gateway's own Responses translation (output.py, stream.py): the same items,
events, ids and stored objects as a translated request's, whichever path answered.

Model Studio's usage ("OpenAI compatible - Responses", "Context cache"): `input_tokens`, `output_tokens` and the
cache's details in `x_details[0].prompt_tokens_details` (the session cache's as the explicit cache's:
`cache_creation_input_tokens`, `cache_type: "ephemeral"`), read as chat usage, which the ledger prices.
"""

from __future__ import annotations

import time
from typing import Any

from ...errors import CLIENT, SERVER, THROTTLE, UpstreamError
from ...interfaces import ChatChunk, ChunkDelta, ToolCallDelta


def chat_usage(usage: object) -> dict | None:
    """A Responses usage in the chat form (None: none)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    x = usage.get("x_details")
    found = x[0].get("prompt_tokens_details") if isinstance(x, list) and x and isinstance(x[0], dict) else None
    if not isinstance(found, dict):
        found = usage.get("input_tokens_details")
    details: dict = found if isinstance(found, dict) else {}
    kept = {k: details[k] for k in ("cached_tokens", "cache_creation_input_tokens", "cache_creation", "cache_type")
            if k in details}
    kept["cached_tokens"] = int(kept.get("cached_tokens") or 0)
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": kept, "completion_tokens_details": {"reasoning_tokens": reasoning}}


def chat_answer(response: dict, *, model: str) -> dict:
    """A whole Response as a chat completion named `model`."""
    content, reasoning, calls = "", "", []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            content += "".join(str(p.get("text") or "") for p in item.get("content") or []
                               if isinstance(p, dict) and p.get("type") == "output_text")
        elif kind == "reasoning":
            reasoning += "".join(str(p.get("text") or "") for p in (item.get("summary") or item.get("content") or [])
                                 if isinstance(p, dict))
        elif kind == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function",
                          "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}})
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return {"id": f"chatcmpl-{response.get('id') or ''}", "object": "chat.completion",
            "created": int(response.get("created_at") or time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason(response, bool(calls))}],
            "usage": chat_usage(response.get("usage"))}


def finish_reason(response: dict, calls: bool) -> str:
    if response.get("status") == "incomplete":
        return "length"
    return "tool_calls" if calls else "stop"


class EventSource:
    """Model Studio's Responses stream (its parsed events) as normalised chat chunks; the id of its Response
    (`upstream_id`) kept for a later turn's chain."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage: dict | None = None
        self.finish_reasons: dict[int, str] = {}
        self.error_text: str | None = None  # a `response.failed` (or `error`) event's message
        self.failure: dict = {}  # and its error (code, message)
        self.upstream_id: str | None = None
        self._calls: dict[str, list] = {}  # item id -> [tool call index, arguments sent]

    def _chunk(self, delta: ChunkDelta, finish: str | None = None) -> ChatChunk:
        return {"id": f"chatcmpl-{self.upstream_id or ''}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def feed(self, event: object) -> list[ChatChunk]:
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        response: dict = event["response"] if isinstance(event.get("response"), dict) else {}
        item: dict = event["item"] if isinstance(event.get("item"), dict) else {}
        if kind in ("response.created", "response.in_progress") and isinstance(response.get("id"), str):
            self.upstream_id = response["id"]
        elif kind == "response.output_text.delta" and event.get("delta"):
            return [self._chunk({"content": str(event["delta"])})]
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta") and event.get("delta"):
            return [self._chunk({"reasoning_content": str(event["delta"])})]
        elif kind == "response.output_item.added" and item.get("type") == "function_call":
            return [self._call_start(item)]
        elif kind == "response.function_call_arguments.delta" and event.get("item_id") in self._calls:
            return self._arguments(str(event["item_id"]), str(event.get("delta") or ""), append=True)
        elif kind == "response.output_item.done" and item.get("id") in self._calls:
            return self._arguments(str(item["id"]), str(item.get("arguments") or ""), append=False)
        elif kind in ("response.completed", "response.incomplete"):
            return self._end(response)
        elif kind in ("response.failed", "error"):
            err = response.get("error") if kind == "response.failed" else event.get("error", event)
            self.failure = err if isinstance(err, dict) else {"message": str(err or "Qwen's answer failed.")}
            self.error_text = str(self.failure.get("message") or "Qwen's answer failed.")
        return []

    def _call_start(self, item: dict) -> ChatChunk:
        index = len(self._calls)
        self._calls[str(item.get("id"))] = [index, ""]
        call: ToolCallDelta = {"index": index, "id": str(item.get("call_id") or ""), "type": "function",
                               "function": {"name": str(item.get("name") or ""), "arguments": ""}}
        return self._chunk({"tool_calls": [call]})

    def _arguments(self, item_id: str, args: str, *, append: bool) -> list[ChatChunk]:
        """A call's arguments: a delta as it comes, or at the item's end whatever the deltas did not carry."""
        index, sent = self._calls[item_id]
        piece = args if append else args[len(sent):] if args.startswith(sent) else ""
        if not piece:
            return []
        self._calls[item_id][1] = sent + piece
        return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})]

    def _end(self, response: dict) -> list[ChatChunk]:
        self.upstream_id = response.get("id") if isinstance(response.get("id"), str) else self.upstream_id
        reason = finish_reason(response, bool(self._calls))
        self.finish_reasons[0] = reason
        self.usage = chat_usage(response.get("usage"))
        last = self._chunk({}, reason)
        tail: ChatChunk = {**self._chunk({}), "choices": [], "usage": self.usage}
        return [last, tail]

    def fault(self, error: object) -> UpstreamError:
        err = error if isinstance(error, dict) else {**self.failure, "message": str(error)}
        message = str(err.get("message") or "Qwen's answer failed.")
        code = str(err.get("code") or "")
        if code.startswith("Throttling") or code == "429":
            return UpstreamError(THROTTLE, 429, message, "requests", "rate_limit_exceeded")
        if code.startswith("InvalidParameter") or code.startswith("400"):
            return UpstreamError(CLIENT, 400, message, "invalid_request_error", "invalid_request")
        return UpstreamError(SERVER, 502, message, "server_error", "upstream_error")
