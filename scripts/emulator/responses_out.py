"""The Responses API's answers: the Response object, its output items, usage and stream events, in the shapes of
Model Studio's "Create a response" page and its examples (2026) and of the third party's probe (yobo2u/omugw,
2026-09-27: ids `resp_<uuid>`, the top-level fields, `usage.x_details[]` with `x_billing_type: "response_api"`).
Where neither says (function calls in a stream, output item ids), OpenAI's shapes; noted in place.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from .cache import tokens
from .chat import pieces

ECHOED = ("instructions", "max_output_tokens", "metadata", "previous_response_id", "reasoning", "temperature", "text",
          "top_p")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4()}"


def assistant(plan: dict) -> list[dict]:
    """The answer as the chat history of a later turn holds it."""
    if not plan["calls"]:
        return [{"role": "assistant", "content": plan["text"]}]
    return [{"role": "assistant", "content": plan["text"], "tool_calls": [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in plan["calls"]]}]


def cut(plan: dict, cap: int | None, shares: bool) -> tuple[dict, bool]:
    """`max_output_tokens` reached: the answer stops there and the response is `incomplete` (the page). It bounds the
    answer, and the reasoning too on models whose reasoning shares the cap (the page: Qwen3.8; here the catalogue's
    `shares_output`); the output reported is the cap."""
    reasoning = tokens(plan["reasoning"]) if shares and plan["reasoning"] else 0
    if cap is None or tokens(plan["text"]) + reasoning <= cap or not plan["text"]:
        return plan, False
    room = max(cap - reasoning, 0)
    usage = {**plan["usage"], "completion_tokens": cap, "total_tokens": plan["usage"]["prompt_tokens"] + cap}
    return {**plan, "text": plan["text"][:max(4 * room - 1, 0)], "usage": usage}, True


def items(plan: dict, incomplete: bool) -> list[dict]:
    out: list[dict] = []
    if plan["reasoning"]:
        out.append({"id": new_id("msg"), "type": "reasoning", "summary": [{"type": "summary_text",
                                                                           "text": plan["reasoning"]}],
                    "content": None, "encrypted_content": None, "status": None})
    if plan["text"] or not plan["calls"]:
        out.append({"id": new_id("msg"), "type": "message", "role": "assistant",
                    "status": "incomplete" if incomplete else "completed",
                    "content": [{"type": "output_text", "text": plan["text"], "annotations": [], "logprobs": None}]})
    for c in plan["calls"]:  # OpenAI's function_call item (Model Studio's examples read name, arguments, call_id)
        out.append({"id": new_id("fc"), "type": "function_call", "call_id": c["id"], "name": c["name"],
                    "arguments": c["arguments"], "status": "completed"})
    return out


def usage(chat_usage: dict) -> dict:
    """Chat usage in the Responses API's words; the prompt's cache details (implicit, or the session cache's
    creation fields) as `x_details[0].prompt_tokens_details`, as the Context cache page shows them."""
    p, o = chat_usage["prompt_tokens"], chat_usage["completion_tokens"]
    details = chat_usage.get("prompt_tokens_details") or {"cached_tokens": int(chat_usage.get("cached_tokens") or 0)}
    r = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    return {"input_tokens": p, "input_tokens_details": {"cached_tokens": details["cached_tokens"]}, "output_tokens": o,
            "output_tokens_details": {"reasoning_tokens": r}, "total_tokens": p + o,
            "x_details": [{"input_tokens": p, "output_tokens": o, "total_tokens": p + o,
                           "output_tokens_details": {"reasoning_tokens": r}, "prompt_tokens_details": details,
                           "x_billing_type": "response_api"}]}


def response(body: dict, rid: str, status: str, output: list, use: dict | None, *, error: dict | None = None,
             incomplete: bool = False) -> dict:
    """The Response object; the request's fields echoed as given (the probe: even values the API ignores)."""
    now = int(time.time())
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    return {"id": rid, "object": "response", "created_at": now, "status": status, "background": False,
            "completed_at": now if status in ("completed", "incomplete") else None, "conversation": None,
            "error": error, "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            **{k: body.get(k) for k in ECHOED}, "max_tool_calls": None, "model": body.get("model"),
            "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", False), "prompt": None,
            "prompt_cache_key": None, "prompt_cache_retention": None, "safety_identifier": None, "service_tier": None,
            "store": body.get("store", True), "tool_choice": body.get("tool_choice", "auto"), "tools": tools,
            "top_logprobs": None, "truncation": None, "usage": use, "user": None}


def events(resp: dict, chunk_count: int = 0) -> Iterator[dict]:
    """The stream's events (sequence numbers are the writer's), in the page's order. `response.created` says
    `queued` and, as the page's example shows, an empty model until the end. A function call is announced and
    finished (`output_item.added`/`.done`) without argument deltas: Model Studio's event list names none (assumed)."""
    skeleton = {**resp, "status": "queued", "output": [], "usage": None, "model": "", "completed_at": None,
                "incomplete_details": None}
    yield {"type": "response.created", "response": skeleton}
    yield {"type": "response.in_progress", "response": {**skeleton, "status": "in_progress"}}
    for at, item in enumerate(resp["output"]):
        ref = {"item_id": item["id"], "output_index": at}
        if item["type"] == "reasoning":
            text = item["summary"][0]["text"]
            yield {"type": "response.output_item.added", "output_index": at, "item": {**item, "summary": []}}
            for piece in pieces(text, chunk_count):
                yield {"type": "response.reasoning_summary_text.delta", **ref, "summary_index": 0, "delta": piece}
            yield {"type": "response.reasoning_summary_text.done", **ref, "summary_index": 0, "text": text}
        elif item["type"] == "message":
            part = item["content"][0]
            yield {"type": "response.output_item.added", "output_index": at,
                   "item": {**item, "content": [], "status": "in_progress"}}
            yield {"type": "response.content_part.added", **ref, "content_index": 0, "part": {**part, "text": ""}}
            for piece in pieces(part["text"], chunk_count):
                yield {"type": "response.output_text.delta", **ref, "content_index": 0, "delta": piece, "logprobs": []}
            yield {"type": "response.output_text.done", **ref, "content_index": 0, "text": part["text"], "logprobs": []}
            yield {"type": "response.content_part.done", **ref, "content_index": 0, "part": part}
        else:
            yield {"type": "response.output_item.added", "output_index": at,
                   "item": {**item, "arguments": "", "status": "in_progress"}}
        yield {"type": "response.output_item.done", "output_index": at, "item": item}
    yield {"type": "response.incomplete" if resp["status"] == "incomplete" else "response.completed", "response": resp}
