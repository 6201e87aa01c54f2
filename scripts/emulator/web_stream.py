"""A web completion's SSE frames (qwen-web-protocol.md §1.7), as pure data: `response.created` first, then the
thinking phase (`thinking_summary` or `think`), then `answer` frames with cumulative usage, and the end at
`phase=answer` + `status=finished`. No `[DONE]`. Answers are deterministic: "Echo: <the user message>"."""

from __future__ import annotations

import json
from collections.abc import Iterator

from .cache import text_of, tokens
from .chat import pieces

TOOL_PIECE = 7  # a <tool_call> block goes out in 7-character pieces: its tags never arrive whole


def prompt_of(node: dict) -> str:
    """The text of a message node: a string, or its `{type: text, text}` parts."""
    return text_of(node.get("content"))


def answer(prompt: str, sw: dict) -> list[str]:
    """The answer's content pieces: the `tool_call` switch's block, the `reply` switch, or the echo."""
    call = sw.get("tool_call")
    if isinstance(call, dict):
        block = {"name": call.get("name", "tool"), "arguments": call.get("arguments", {})}
        text = "<tool_call>" + json.dumps(block, ensure_ascii=False) + "</tool_call>"
        return [text[i:i + TOOL_PIECE] for i in range(0, len(text), TOOL_PIECE)]
    text = str(sw["reply"]) if sw.get("reply") is not None else "Echo: " + prompt
    return pieces(text, int(sw.get("chunk_count") or 0))


def plan(body: dict, prompt: str, thinking: str | None, sw: dict) -> dict:
    """What to stream. `thinking`: "summary", "detail" or None (off, or a model that cannot think)."""
    fc = body.get("feature_config") if isinstance(body.get("feature_config"), dict) else {}
    return {"thinking": thinking, "phases": fc.get("output_schema") == "phase",
            "incremental": body.get("incremental_output") is True, "prompt": prompt,
            "input_tokens": tokens(prompt), "answer": answer(prompt, sw)}


def thoughts(prompt: str) -> list[str]:
    return [f"Reading the question: {prompt[:60]}", "Working out the answer.", "Writing it down."]


def frames(p: dict, created: dict) -> Iterator[dict]:
    """The frames after `created` ({chat_id, parent_id, response_id, response_index})."""
    rid = created["response_id"]
    yield {"response.created": created}

    def frame(content: str, phase: str, status: str = "typing", usage: dict | None = None, **more) -> dict:
        delta = {"role": "assistant", "content": content, "phase": phase, "status": status, **more}
        if not p["phases"]:  # without output_schema "phase" the upstream sends no phase (§1.6)
            del delta["phase"]
        out: dict = {"choices": [{"delta": delta}], "response_id": rid}
        if usage:
            out["usage"] = usage
        return out

    spent = ""  # all output so far, thinking included: what output_tokens counts
    if p["thinking"] == "summary":
        # content is always empty; the text is an array in extra that grows (§1.7)
        said = thoughts(p["prompt"])
        for i in range(1, len(said) + 1):
            yield frame("", "thinking_summary", extra={"summary_title": {"content": ["Thinking"]},
                                                       "summary_thought": {"content": said[:i]}})
        spent += "".join(said)
        yield frame("", "thinking_summary", "finished", extra={"summary_title": {"content": ["Thinking"]},
                                                               "summary_thought": {"content": said}})
    elif p["thinking"] == "detail":
        so_far = ""
        for piece in pieces(f"Thinking about: {p['prompt'][:200]}", 0):
            so_far += piece
            yield frame(piece if p["incremental"] else so_far, "think")
        spent += so_far
        yield frame("", "think", "finished")
    so_far = ""
    for piece in p["answer"]:
        so_far += piece
        out = tokens(spent + so_far)
        usage = {"input_tokens": p["input_tokens"], "output_tokens": out, "total_tokens": p["input_tokens"] + out,
                 "characters": 0, "input_tokens_details": {"cached_tokens": 0}}
        yield frame(piece if p["incremental"] else so_far, "answer", usage=usage)
    yield {"choices": [{"delta": end_delta(p["phases"])}], "response_id": rid}


def end_delta(phases: bool = True) -> dict:
    delta = {"content": "", "role": "assistant", "status": "finished", "phase": "answer"}
    if not phases:
        del delta["phase"]
    return delta
