"""vLLM (2026) and SGLang modes: the dialects the servers speak themselves besides chat — the Anthropic Messages API
(`POST /v1/messages`, `/v1/messages/count_tokens`) and, on vLLM, the Responses API (`POST /v1/responses`,
`GET /v1/responses/{id}`, `POST /v1/responses/{id}/cancel`). Minimal but faithful in shape: each request becomes a chat
request that goes through the chat path's refusals, prompt, engine and answer (vllm.py, vllm_answer.py), and the answer
is written in the dialect's shape with the emulator's Anthropic and Responses writers where they model the wire.

- Messages (vLLM `docs/serving/online_serving/anthropic_compatible_server.md`; SGLang `docs/basic_usage/
  anthropic_api.md`): `system`, text, `tool_use` and `tool_result` blocks, `tools` (`input_schema`), `tool_choice`,
  `max_tokens`, `stop_sequences`, `thinking` (enabled / disabled: the template's `enable_thinking`; SGLang maps
  `budget_tokens` to its thinking budget), `chat_template_kwargs` and `cache_salt` passed on. With a reasoning parser
  the reasoning comes as a `thinking` block whose `signature` is empty. Stop reasons: end_turn, max_tokens,
  tool_use. Errors: `{"type": "error", "error": {"type", "message"}}`. count_tokens: `{"input_tokens": N}`.
- Responses (vLLM `responses_api.md`): `input` (a string or items), `instructions`, flat function `tools`,
  `max_output_tokens`, `stream` (`event: <type>` SSE with `sequence_number`). The reasoning is a `reasoning` item with
  `reasoning_text` content. No store unless `--responses-store` (VLLM_ENABLE_RESPONSES_API_STORE=1): then every
  response is kept (in memory, never evicted; `/_emulator/reset` empties it), `GET /v1/responses/{id}` finds it and
  `previous_response_id` continues it; without it `store: true` is ignored, `previous_response_id` and GET answer 404
  "Response with id '…' not found.", and `background: true` is a 400. Background work itself is not emulated (a
  stored background request is answered at once, completed).
"""

from __future__ import annotations

import json
import time
import uuid

from . import anthropic_answer, responses_in, sglang, vllm, vllm_answer, vllm_prompt
from .cache import text_of
from .faults import dumps
from .vllm_rules import error, read_body

STOPS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
NO_STORE = ("This vLLM engine does not support `store=True` and therefore does not support the background mode. To "
            "enable these features, set the environment variable `VLLM_ENABLE_RESPONSES_API_STORE=1` when launching "
            "the vLLM server.")


def owns(cfg, path: str) -> bool:
    if path in ("/v1/messages", "/v1/messages/count_tokens"):
        return cfg.modern
    return path.startswith("/v1/responses") and cfg.modern and not cfg.sglang


def _blocks(content) -> list[dict]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else [
        b for b in content or () if isinstance(b, dict)]


def chat_of_messages(body: dict, cfg) -> dict:
    """An Anthropic Messages request as the chat request the server runs."""
    msgs = [{"role": "system", "content": text_of(_blocks(body["system"]))}] if body.get("system") else []
    for m in body.get("messages") or ():
        blocks = _blocks(m.get("content"))
        calls = [{"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": json.dumps(
            b.get("input") or {})}} for b in blocks if b.get("type") == "tool_use"]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        for r in results:
            msgs.append({"role": "tool", "tool_call_id": r.get("tool_use_id"), "content": text_of(_blocks(
                r.get("content") or ""))})
        text = text_of([b for b in blocks if b.get("type") == "text"])
        if text or calls or not results:
            msgs.append({"role": m.get("role"), "content": text, **({"tool_calls": calls} if calls else {})})
    out: dict = {"model": body.get("model"), "messages": msgs, "stream": body.get("stream") is True}
    if body.get("tools"):
        out["tools"] = [{"type": "function", "function": {"name": t.get("name"), "description": t.get("description"),
                                                          "parameters": t.get("input_schema")}} for t in body["tools"]]
        choice = (body.get("tool_choice") or {}).get("type", "auto")
        out["tool_choice"] = {"any": "required", "none": "none"}.get(choice, "auto") if choice != "tool" else {
            "type": "function", "function": {"name": body["tool_choice"].get("name")}}
    kwargs = dict(body.get("chat_template_kwargs") or {})
    kind = (body.get("thinking") or {}).get("type")
    if kind in ("enabled", "disabled"):
        kwargs["enable_thinking"] = kind == "enabled"
    if cfg.sglang and isinstance((body.get("thinking") or {}).get("budget_tokens"), int):
        kwargs["thinking_budget"] = body["thinking"]["budget_tokens"]
    if kwargs:
        out["chat_template_kwargs"] = kwargs
    for a, b in (("max_tokens", "max_tokens"), ("stop_sequences", "stop"), ("temperature", "temperature"),
                 ("top_p", "top_p"), ("top_k", "top_k"), ("cache_salt", "cache_salt")):
        if body.get(a) is not None:
            out[b] = body[a]
    return out


def _run(h, cfg, chat: dict) -> tuple[int, dict] | tuple[dict, dict, list[str], int]:
    """The chat path for a translated request: its refusal, or (plan, message, tokens, cached)."""
    problem = vllm.prepare(h, cfg, chat)
    if problem:
        return problem
    kwargs = chat.get("chat_template_kwargs") or {}
    toks = vllm_prompt.tokens(vllm_prompt.render(chat, kwargs.get("enable_thinking") is False))
    refused = (sglang.context_refusal if cfg.sglang else vllm.context_refusal)(cfg, len(toks), chat.get("max_tokens"))
    if refused:
        return 400, refused
    sw = h.state.snapshot()
    with h.state.engine.slot(h.server.stopping):
        cached = h.state.vllm_cache.serve(toks, cfg.block_size, chat.get("cache_salt")) if cfg.prefix_caching else 0
        p = vllm_answer.plan(chat, cfg, sw, len(toks))
        h.state.engine.pace(len(p["pieces"]), h.server.stopping)
        h.state.engine.served(len(toks), cached, p["completion_tokens"], p["finish"])
    msg, finish = vllm_answer.message(p, "reasoning")
    return p, {**msg, "finish": finish}, toks, cached


def _anthropic_error(h, status: int, body: dict) -> None:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}.get(status, "api_error")
    h.send_json(status, {"type": "error", "error": {"type": kind, "message": body["error"]["message"]}})


def messages(h, cfg, path: str, data: dict) -> None:
    chat = chat_of_messages(data, cfg)
    if path.endswith("/count_tokens"):
        kwargs = chat.get("chat_template_kwargs") or {}
        n = len(vllm_prompt.tokens(vllm_prompt.render(chat, kwargs.get("enable_thinking") is False)))
        return h.send_json(200, {"input_tokens": n})
    ran = _run(h, cfg, chat)
    if len(ran) == 2:
        return _anthropic_error(h, *ran)
    p, msg, toks, cached = ran
    blocks: list[dict] = []
    if msg.get("reasoning"):
        blocks.append({"type": "thinking", "thinking": msg["reasoning"], "signature": ""})
    if msg["content"] or not msg["tool_calls"]:
        blocks.append({"type": "text", "text": msg["content"] or ""})
    blocks += [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "arguments": c["function"][
        "arguments"]} for c in msg["tool_calls"]]
    a = {"blocks": blocks, "stop_reason": STOPS.get(msg["finish"], msg["finish"]), "stop_sequence": p["stop_reason"],
         "usage": {"input_tokens": len(toks), "output_tokens": p["completion_tokens"],
                   "cache_read_input_tokens": cached or 0}}
    if not chat["stream"]:
        return h.send_json(200, anthropic_answer.message(data, a))
    h.start_stream()
    for name, event in anthropic_answer.events(data, a, h.state.snapshot()):
        h.write_event(f"event: {name}\ndata: ".encode() + dumps(event) + b"\n\n", False)
    h.end_stream()


def _response(data: dict, rid: str, p: dict, msg: dict, toks: list[str], cached: int) -> dict:
    hexid = lambda prefix: f"{prefix}_{uuid.uuid4().hex}"  # noqa: E731
    output: list[dict] = []
    if msg.get("reasoning"):
        output.append({"id": hexid("rs"), "type": "reasoning", "summary": [], "content": [
            {"type": "reasoning_text", "text": msg["reasoning"]}], "encrypted_content": None, "status": None})
    if msg["content"] or not msg["tool_calls"]:
        output.append({"id": hexid("msg"), "type": "message", "role": "assistant", "status": "completed", "content": [
            {"type": "output_text", "text": msg["content"] or "", "annotations": [], "logprobs": None}]})
    output += [{"id": hexid("fc"), "type": "function_call", "call_id": c["id"], "name": c["function"]["name"],
                "arguments": c["function"]["arguments"], "status": "completed"} for c in msg["tool_calls"]]
    done = msg["finish"] != "length"
    return {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed" if done else
            "incomplete", "incomplete_details": None if done else {"reason": "max_output_tokens"}, "error": None,
            "instructions": data.get("instructions"), "max_output_tokens": data.get("max_output_tokens"),
            "model": data.get("model"), "output": output, "parallel_tool_calls": data.get("parallel_tool_calls", True),
            "previous_response_id": data.get("previous_response_id"), "store": data.get("store", True),
            "tools": data.get("tools") or [], "tool_choice": data.get("tool_choice", "auto"), "usage": {
                "input_tokens": len(toks), "input_tokens_details": {"cached_tokens": cached or 0},
                "output_tokens": p["completion_tokens"], "output_tokens_details": {
                    "reasoning_tokens": p["reasoning_tokens"]}, "total_tokens": len(toks) + p["completion_tokens"]}}


def responses(h, cfg, path: str, data: dict | None) -> None:
    store = h.state.responses_store
    rid = path[len("/v1/responses/"):].removesuffix("/cancel") if path != "/v1/responses" else None
    if rid is not None:
        if h.command not in (("POST",) if path.endswith("/cancel") else ("GET",)):
            return h.send_json(405, {"detail": "Method Not Allowed"})
        if rid not in store:
            return vllm.send_error(h, 404, error(f"Response with id '{rid}' not found.", "invalid_request_error", 404))
        if path.endswith("/cancel"):
            return vllm.send_error(h, 400, error("Cannot cancel a synchronous response.", "invalid_request_error"))
        return h.send_json(200, store[rid]["response"])
    if data.get("background") and not cfg.responses_store:
        return vllm.send_error(h, 400, error(NO_STORE, "invalid_request_error"))
    history: list[dict] = []
    prev = data.get("previous_response_id")
    if prev is not None:
        if prev not in store:
            return vllm.send_error(h, 404, error(f"Response with id '{prev}' not found.", "invalid_request_error", 404))
        history = store[prev]["messages"]
    system = [{"role": "system", "content": data["instructions"]}] if isinstance(data.get("instructions"), str) else []
    chat = {"model": data.get("model"), "messages": [*system, *history, *responses_in.messages(data.get("input") or
                                                                                              [])]}
    tools = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}}
             for t in data.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    if tools:
        chat.update(tools=tools, tool_choice=data.get("tool_choice") if data.get("tool_choice") in (
            "none", "required") else "auto")
    if isinstance(data.get("max_output_tokens"), int):
        chat["max_tokens"] = data["max_output_tokens"]
    ran = _run(h, cfg, chat)
    if len(ran) == 2:
        return vllm.send_error(h, *ran)
    p, msg, toks, cached = ran
    resp = _response(data, f"resp_{uuid.uuid4().hex}", p, msg, toks, cached)
    if cfg.responses_store and data.get("store", True) is not False:
        said = {"role": "assistant", "content": msg["content"] or "", **(
            {"tool_calls": msg["tool_calls"]} if msg["tool_calls"] else {})}
        store[resp["id"]] = {"response": resp, "messages": [*history, *responses_in.messages(data.get("input") or
                                                                                             []), said]}
    else:
        resp["store"] = False
    if data.get("stream") is not True:
        return h.send_json(200, resp)
    h.start_stream()
    for seq, event in enumerate(_events(resp)):
        h.write_event(f"event: {event['type']}\ndata: ".encode() + dumps({**event, "sequence_number": seq}) + b"\n\n",
                      False)
    h.end_stream()


def _events(resp: dict):
    """The stream's events in vLLM's order (serving_responses' streaming generator), text deltas word by word."""
    shell = {**resp, "status": "in_progress", "output": [], "usage": None}
    yield {"type": "response.created", "response": shell}
    yield {"type": "response.in_progress", "response": shell}
    for at, item in enumerate(resp["output"]):
        ref = {"item_id": item["id"], "output_index": at}
        yield {"type": "response.output_item.added", "output_index": at, "item": {**item, "status": "in_progress"}}
        if item["type"] in ("message", "reasoning"):
            text = item["content"][0]["text"]
            kind = "output_text" if item["type"] == "message" else "reasoning_text"
            if kind == "output_text":
                yield {"type": "response.content_part.added", **ref, "content_index": 0, "part": {
                    **item["content"][0], "text": ""}}
            for piece in vllm_prompt.pieces(text):
                yield {"type": f"response.{kind}.delta", **ref, "content_index": 0, "delta": piece}
            yield {"type": f"response.{kind}.done", **ref, "content_index": 0, "text": text}
            if kind == "output_text":
                yield {"type": "response.content_part.done", **ref, "content_index": 0, "part": item["content"][0]}
        else:
            yield {"type": "response.function_call_arguments.delta", **ref, "delta": item["arguments"]}
            yield {"type": "response.function_call_arguments.done", **ref, "arguments": item["arguments"]}
        yield {"type": "response.output_item.done", "output_index": at, "item": item}
    yield {"type": "response.completed" if resp["status"] == "completed" else "response.incomplete", "response": resp}


def route(h, cfg, path: str, raw: bytes) -> None:
    if h.command == "GET" or path.endswith("/cancel"):
        return responses(h, cfg, path, None)
    if h.command != "POST":
        return h.send_json(405, {"detail": "Method Not Allowed"})
    data, bad = read_body(h.headers.get("Content-Type", ""), raw)
    if bad or not isinstance(data, dict) or ("messages" if path.startswith("/v1/messages") else "input") not in data:
        problem = bad or (400, error(str([{"type": "missing", "loc": ("body",), "msg": "Field required"}]),
                                     "Bad Request"))
        return _anthropic_error(h, *problem) if path.startswith("/v1/messages") else vllm.send_error(h, *problem)
    h.state.bump("chat_requests")
    return (messages if path.startswith("/v1/messages") else responses)(h, cfg, path, data)
