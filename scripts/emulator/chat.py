"""Deterministic Qwen-style chat answers, whole or as a stream of chunks (dicts)."""

from __future__ import annotations

import json
import time
import uuid

KNOWN_MODELS = ("coder-model", "vision-model", "qwen3-coder-plus", "qwen3-coder-flash", "qwen3.5-plus",
                "qwen3.6-plus", "qwen-plus", "qwen-max", "qwen-turbo", "qwen3-max")


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def validate(body) -> tuple[int, dict] | None:
    """Qwen's own 400s for what it refuses."""
    if not isinstance(body, dict):
        return 400, _err("invalid_parameter_error", "Request body is not valid JSON.")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return 400, _err("invalid_parameter_error", "messages must not be empty")
    if body.get("model") not in KNOWN_MODELS:
        return 400, _err("model_not_found", f"The model `{body.get('model')}` does not exist or you do not have "
                                            "access to it.")
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema") and body.get("enable_thinking"):
        return 400, _err("invalid_parameter_error", "Json mode response is not supported when enable_thinking "
                                                    "is true")
    return None


def _err(code: str, message: str, type: str = "invalid_request_error") -> dict:
    return {"error": {"code": code, "message": message, "param": None, "type": type},
            "request_id": str(uuid.uuid4())}


def plan(body: dict, sw: dict) -> dict:
    """What to answer: reasoning, text or tool calls, usage."""
    msgs = body["messages"]
    last = msgs[-1] if isinstance(msgs[-1], dict) else {}
    tools = body.get("tools") or []
    reasoning = "Thinking about it." if (sw["reasoning"] or body.get("enable_thinking")) else ""
    calls: list[dict] = []
    if last.get("role") == "tool":
        text = "Tool said: " + _text(last.get("content"))
    elif tools and body.get("tool_choice") != "none":
        forced = body.get("tool_choice")
        names = [t.get("function", {}).get("name", "tool") for t in tools if isinstance(t, dict)]
        if isinstance(forced, dict):
            names = [forced.get("function", {}).get("name") or names[0]]
        for i in range(max(1, int(sw["tool_calls_count"]))):
            fn = next((t["function"] for t in tools if t.get("function", {}).get("name") == names[i % len(names)]),
                      tools[0].get("function", {}))
            props = (fn.get("parameters") or {}).get("properties") or {}
            args = sw["tool_arguments"] if sw["tool_arguments"] is not None else (
                {"location": "Paris"} if "location" in props else {})
            calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "name": fn.get("name", "tool"),
                          "arguments": json.dumps(args)})
        text = ""
    else:
        user = next((m for m in reversed(msgs) if isinstance(m, dict) and m.get("role") == "user"), {})
        text = sw["reply"] if sw["reply"] is not None else "Echo: " + _text(user.get("content"))
    if sw["think_leak"] and text:
        text = f"<think>{reasoning or 'hidden thoughts'}</think>{text}"
        reasoning = ""
    prompt = sum(len(_text(m.get("content"))) for m in msgs if isinstance(m, dict)) // 4 + 1
    completion = (len(text) + len(reasoning) + sum(len(c["arguments"]) for c in calls)) // 4 + 1
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    cached = int(sw["usage_cached_tokens"])
    if sw["usage_top_level_cached"]:
        usage["cached_tokens"] = cached
    else:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"reasoning": reasoning, "text": text, "calls": calls, "usage": usage,
            "finish": "tool_calls" if calls else "stop"}


def completion(body: dict, p: dict) -> dict:
    message = {"role": "assistant", "content": p["text"]}
    if p["reasoning"]:
        message["reasoning_content"] = p["reasoning"]
    if p["calls"]:
        message["tool_calls"] = [{"id": c["id"], "type": "function", "index": i,
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for i, c in enumerate(p["calls"])]
    n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 0 else 1
    return {"id": f"chatcmpl-{uuid.uuid4()}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": None, "usage": p["usage"],
            "choices": [{"index": i, "message": message, "finish_reason": p["finish"], "logprobs": None}
                        for i in range(n)]}


def _pieces(text: str, count: int) -> list[str]:
    if not text:
        return []
    if count <= 0:
        words = text.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    size = max(1, -(-len(text) // count))
    return [text[i:i + size] for i in range(0, len(text), size)]


def stream_chunks(body: dict, p: dict, sw: dict) -> list[dict]:
    cid, created, model = f"chatcmpl-{uuid.uuid4()}", int(time.time()), body["model"]

    def chunk(delta: dict, finish=None, usage=None, choices=True) -> dict:
        c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
             "system_fingerprint": None, "usage": usage}
        c["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []
        return c

    out = [chunk({"role": "assistant", "content": ""})]
    for piece in _pieces(p["reasoning"], 0):
        out.append(chunk({"reasoning_content": piece}))
    acc = ""
    for piece in _pieces(p["text"], int(sw["chunk_count"])):
        acc += piece
        out.append(chunk({"content": acc if sw["cumulative_deltas"] else piece}))
    for i, call in enumerate(p["calls"]):
        index = 0 if sw["tool_index_collision"] else i
        first = {"index": index, "id": call["id"], "type": "function", "function": {"arguments": ""}}
        if sw["split_tool_name"]:
            out.append(chunk({"tool_calls": [first]}))
            out.append(chunk({"tool_calls": [{"index": index, "function": {"name": call["name"]}}]}))
        else:
            first["function"]["name"] = call["name"]
            out.append(chunk({"tool_calls": [first]}))
        args = call["arguments"]
        half = len(args) // 2
        for frag in (args[:half], args[half:]):
            if frag:
                out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": frag}}]}))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    usage_here = p["usage"] if include_usage and sw["usage_in_finish_chunk"] else None
    out.append(chunk({}, finish=p["finish"], usage=usage_here))
    if sw["duplicate_finish"]:
        out.append(chunk({}, finish=p["finish"]))
    if include_usage and not sw["usage_in_finish_chunk"]:
        out.append(chunk({}, usage=p["usage"], choices=False))
    return out


def embeddings(body: dict) -> dict:
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else (inputs or [])
    data = []
    for i, text in enumerate(inputs):
        seed = sum(ord(c) for c in str(text))
        data.append({"object": "embedding", "index": i, "embedding": [((seed * (k + 7)) % 1000) / 1000 for k in
                                                                       range(8)]})
    tokens = sum(len(str(t)) // 4 + 1 for t in inputs)
    return {"object": "list", "data": data, "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
