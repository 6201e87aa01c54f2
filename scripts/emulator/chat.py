"""Deterministic Qwen-style answers: chat completions (whole or as chunks), embeddings, web search."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

from . import catalogue, partial, rules, search, tools
from .cache import Served, text_of, tokens as _tokens, tools_text

KNOWN_MODELS = rules.KNOWN_MODELS
EMBEDDING_MODELS = tuple(rules.EMBEDDING_SIZES)
REASONING = "Thinking about it."


error = rules.error


def known_models(sw: dict) -> tuple[str, ...]:
    """The chat models served: the catalogue's, then the `extra_models` switch's (ids it does not name)."""
    extra = [str(m) for m in sw.get("extra_models") or () if m not in KNOWN_MODELS]
    return (*KNOWN_MODELS, *dict.fromkeys(extra))


def validate(body, sw: dict | None = None) -> tuple[int, dict] | None:
    """DashScope's 400s for what it refuses; None if the request is acceptable."""
    if not isinstance(body, dict):
        return 400, error("invalid_parameter_error", "The request body must be a JSON object.")
    problem = rules.check_text(body)
    if problem:
        return problem
    sw = sw or {}
    if body.get("model") not in known_models(sw):
        return 400, error("model_not_found", f"The model `{body.get('model')}` does not exist or you do not have "
                                             "access to it.")
    if rules.retired(body.get("model"), sw.get("today")):  # its last day passed (the catalogue's `retires`)
        return 404, error("model_not_found", rules.not_found(body.get("model"), sw.get("today")))
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        return 400, error("invalid_parameter_error", "messages must be a non-empty list of message objects.")
    # the switch (tests), else the model's longest input as the catalogue gives it (Qwen refuses a longer prompt)
    limit = sw.get("context_limit") or catalogue.window(body.get("model"))
    if limit and sum(_tokens(text_of(m.get("content"))) for m in msgs) > limit:
        return 400, error("invalid_parameter_error", f"Range of input length should be [1, {limit}]")
    return (rules.check_chat(body, sw) or partial.check(body)
            or rules.check_params(body, sw.get("stream_only_models") or ()) or search.check(body))


def _calls(body: dict, sw: dict, prompt: str) -> list[dict]:
    """The tool calls to answer with (tools.py: when, and with which arguments); empty: answer in words."""
    offered = [t.get("function") or {} for t in body["tools"] if isinstance(t, dict)]
    chosen = tools.wanted(offered, body.get("tool_choice"), prompt, sw["tool_calls"])
    calls = []
    for i in range(max(1, int(sw["tool_calls_count"])) if chosen else 0):
        fn = chosen[i % len(chosen)]
        args = sw["tool_arguments"]
        if args is None:
            args = tools.arguments(fn)
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "name": fn.get("name", "tool"),
                      "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)})
    return calls


def plan(body: dict, sw: dict, served: Served = Served()) -> dict:
    """What to answer: reasoning, text or tool calls, finish reason, usage (`served`: what the prompt cache
    read and stored)."""
    start = partial.prefix(body["messages"])  # partial mode: the answer goes on from this prefix
    msgs = body["messages"][:-1] if start is not None else body["messages"]
    # Thinking mode per model (thinking.py): the model's default unless the knobs it takes say otherwise; the
    # `reasoning` switch off silences a model that thinks by default (an explicit `enable_thinking: true` wins).
    thinking = rules.thinking_on(body) and (sw["reasoning"] or body.get("enable_thinking") is True)
    reasoning = _reasoning(sw.get("reasoning_tokens")) if thinking else ""
    user = next((m for m in reversed(msgs) if m.get("role") == "user"), {})
    calls: list[dict] = []
    text = ""
    if msgs[-1].get("role") == "tool":
        text = "Tool said: " + text_of(msgs[-1].get("content"))
    elif body.get("tools") and (calls := _calls(body, sw, text_of(user.get("content")))):
        pass
    elif sw["deltas"]:
        text = "".join(str(d) for d in sw["deltas"])
    elif sw["reply"] is not None:
        text = str(sw["reply"])
    else:
        text = "Echo: " + tools.prompt_text(text_of(user.get("content")))
    sources = search.info(body, text_of(user.get("content")))
    text = text if calls else partial.went_on(_before_stop(body, search.cite(body, text)), start)
    cap = _shared_cap(body) if reasoning else None
    used_up = cap is not None and _tokens(reasoning) >= cap
    if used_up:  # the reasoning took the whole cap: nothing is left for an answer
        reasoning, text, calls = reasoning[:4 * cap - 1], "", []  # cap tokens at a quarter of the characters
    if sw["think_leak"] and text:
        text, reasoning = f"<think>{reasoning or REASONING}</think>{text}", ""
    n = body.get("n") if isinstance(body.get("n"), int) and body["n"] > 0 else 1
    prompt = _tokens(tools_text(body) + "".join(text_of(m.get("content")) for m in body["messages"]))
    completion = _tokens(text + reasoning + "".join(c["arguments"] for c in calls)) * n
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if reasoning:  # thinking is billed as output, and said apart (Model Studio's usage object)
        usage["completion_tokens_details"] = {"reasoning_tokens": _tokens(reasoning) * n}
    cached = int(sw["usage_cached_tokens"]) or min(served.cached, prompt)
    if sw["usage_top_level_cached"]:
        usage["cached_tokens"] = cached
    elif served.explicit:  # Model Studio's fields for an explicit cache (its Context cache page)
        created = min(served.created, prompt - cached)
        hour = min(served.created_hour, created)
        creation = {"ephemeral_5m_input_tokens": created - hour}
        if hour:  # Qwen4's hour-long writes, said apart (field name assumed: Anthropic's)
            creation["ephemeral_1h_input_tokens"] = hour
        usage["prompt_tokens_details"] = {"cache_creation": creation,
                                          "cache_creation_input_tokens": created, "cache_type": "ephemeral",
                                          "cached_tokens": cached}
    else:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"reasoning": reasoning, "text": text, "calls": calls, "usage": usage, "n": n, "search_info": sources,
            "finish": sw["finish_reason"] or ("length" if used_up else "tool_calls" if calls else "stop")}


def _reasoning(tokens) -> str:
    """The reasoning text: REASONING, or `tokens` of the emulator's tokens of it (the `reasoning_tokens` switch)."""
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        return REASONING
    return ((REASONING + " ") * tokens)[:4 * tokens - 1]  # characters / 4 + 1 = tokens


def _shared_cap(body: dict) -> int | None:
    """The output cap reasoning and answer share: Model Studio's "API compatibility upgrades" (2026-11-02), from
    qwen4-max-preview on (catalogue `shares_output`); other models' caps bound the answer alone."""
    if not rules.shares_output(body.get("model")):
        return None
    caps = [v for k in ("max_completion_tokens", "max_tokens") if isinstance(v := body.get(k), int)]
    return min(caps, default=None)


def _before_stop(body: dict, text: str) -> str:
    """OpenAI's `stop`, as compatible mode applies it: the text ends before the first sequence found, which is
    not written, and the finish reason stays "stop" (the answer does not say a sequence ended it)."""
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else []
    found = [at for s in stops if s and (at := text.find(s)) >= 0]
    return text[:min(found)] if found else text


def completion(body: dict, p: dict) -> dict:
    message = {"role": "assistant", "content": p["text"]}
    if p["reasoning"]:
        message["reasoning_content"] = p["reasoning"]
    if p["calls"]:
        message["tool_calls"] = [{"index": i, "id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for i, c in enumerate(p["calls"])]
    searched = {"search_info": p["search_info"]} if p.get("search_info") else {}  # search.py: shape assumed
    return {"id": f"chatcmpl-{uuid.uuid4()}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], **searched,
            "choices": [{"index": i, "message": message, "finish_reason": p["finish"], "logprobs": None}
                        for i in range(p["n"])],
            "usage": p["usage"], "system_fingerprint": None}


def pieces(text: str, count: int) -> list[str]:
    """The text in `count` pieces, or one piece per word (with its trailing space) when count is 0."""
    if not text:
        return []
    if count <= 0:
        words = text.split(" ")
        return [w for w in [w + " " for w in words[:-1]] + [words[-1]] if w]
    cuts = [len(text) * i // count for i in range(count + 1)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:]) if a < b]


def chunks(body: dict, p: dict, sw: dict) -> Iterator[dict]:
    """The stream, in qwen-protocol.md §7 order; one dict per SSE event (without [DONE]). With `n` choices each
    event is sent once per choice, index by index (the usage once, on the last); with `logprobs` each text
    delta carries its token's log probability (and `top_logprobs` alternatives), as OpenAI's chunks do."""
    top = body.get("top_logprobs") if isinstance(body.get("top_logprobs"), int) else 0
    for event in _one_choice(body, p, sw):
        if not event["choices"] or p["n"] == 1 and body.get("logprobs") is not True:
            yield event
            continue
        for i in range(p["n"]):
            choice = {**event["choices"][0], "index": i}
            text = choice["delta"].get("content")
            if body.get("logprobs") is True and text:
                choice["logprobs"] = {"content": [_logprob(text, top)]}
            yield {**event, "choices": [choice], "usage": event["usage"] if i == p["n"] - 1 else None}


def _logprob(token: str, top: int) -> dict:
    """A text piece's log probability as one token's (deterministic: the emulator has no model)."""
    alternatives = [{"token": token, "bytes": list(token.encode()), "logprob": -0.25}] + [
        {"token": f"alt{k}", "bytes": list(f"alt{k}".encode()), "logprob": -2.0 - k} for k in range(1, top)]
    return {"token": token, "bytes": list(token.encode()), "logprob": -0.25, "top_logprobs": alternatives[:top]}


def _one_choice(body: dict, p: dict, sw: dict) -> Iterator[dict]:
    cid, created, model = f"chatcmpl-{uuid.uuid4()}", int(time.time()), body["model"]

    def chunk(delta: dict | None, finish=None, usage=None) -> dict:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": None, "choices": choices, "usage": usage}

    first = chunk({"role": "assistant", "content": ""})
    if p.get("search_info"):
        first["search_info"] = p["search_info"]  # search.py: shape assumed
    yield first
    for piece in pieces(p["reasoning"], 0):
        yield chunk({"reasoning_content": piece})
    so_far = ""
    # R8: the `deltas` switch streams exactly these pieces, repeats included ("哈哈", "哈哈", "，好的").
    deltas = [str(d) for d in sw["deltas"] or ()]
    text_pieces = deltas if deltas and p["text"] == "".join(deltas) else (
        search.pieces(body, p["text"]) or pieces(p["text"], int(sw["chunk_count"])))
    for piece in text_pieces:
        so_far += piece
        yield chunk({"content": so_far if sw["cumulative_deltas"] else piece})
    for i, call in enumerate(p["calls"]):
        index = 0 if sw["tool_index_collision"] else i
        head = {"index": index, "id": call["id"], "type": "function", "function": {"name": call["name"],
                                                                                   "arguments": ""}}
        if sw["split_tool_name"]:
            del head["function"]["name"]
            yield chunk({"tool_calls": [head]})
            yield chunk({"tool_calls": [{"index": index, "function": {"name": call["name"]}}]})
        else:
            yield chunk({"tool_calls": [head]})
        args = call["arguments"]
        for frag in (args[:len(args) // 2], args[len(args) // 2:]):
            if frag:
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": frag}}]})
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    in_finish = include_usage and sw["usage_in_finish_chunk"]
    for _ in range(2 if sw["duplicate_finish"] else 1):
        yield chunk({}, finish=p["finish"], usage=p["usage"] if in_finish else None)
    if include_usage and not in_finish:
        yield chunk(None, usage=p["usage"])


def embeddings(body) -> tuple[int, dict]:
    if not isinstance(body, dict) or body.get("model") not in EMBEDDING_MODELS:
        model = body.get("model") if isinstance(body, dict) else None
        return 400, error("model_not_found", f"The model `{model}` does not exist or you do not have access to it.")
    problem = rules.check_text(body) or rules.check_embeddings(body.get("input"))
    if problem:
        return problem
    inputs = body["input"]
    inputs = [inputs] if isinstance(inputs, str) else inputs
    problem = rules.check_dimensions(body["model"], body.get("dimensions"))
    if problem:
        return problem
    dims = body.get("dimensions") or rules.EMBEDDING_SIZES[body["model"]][0]
    data = []
    for i, text in enumerate(inputs):
        raw = hashlib.shake_256(text.encode()).digest(dims)
        vec = [b / 127.5 - 1 for b in raw]
        norm = sum(v * v for v in vec) ** 0.5 or 1.0
        # Floats even when base64 is asked for: DashScope only supports encoding_format "float".
        data.append({"object": "embedding", "index": i, "embedding": [round(v / norm, 6) for v in vec]})
    tokens = sum(_tokens(t) for t in inputs)
    return 200, {"object": "list", "data": data, "model": body["model"], "id": str(uuid.uuid4()),
                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def web_search(body) -> dict:
    query = str((body or {}).get("uq", "")) if isinstance(body, dict) else ""
    rows = (body or {}).get("rows", 5) if isinstance(body, dict) else 5
    rows = min(int(rows), 10) if isinstance(rows, int) and rows > 0 else 5
    docs = [{"title": f"Result {i + 1} for {query}", "url": f"https://example.com/{i + 1}?q={quote(query)}",
             "snippet": f"Snippet {i + 1} about {query}."} for i in range(rows)]
    return {"status": 0, "data": {"total": rows, "docs": docs}, "success": True}
