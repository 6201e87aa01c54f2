"""The recorded Claude Code requests the benches replay (scripts/record_claude_shapes.py made the file): each turn's
Messages body as sent to the gateway here, and Qwen's answer with the usage that turn was answered with."""

from __future__ import annotations

import json
from pathlib import Path

FILE = Path(__file__).resolve().parent / "data" / "claude_code_shapes.json"
PATH = "/v1/messages?beta=true"  # where Claude Code sends them


def turns(path: str | Path = FILE) -> list[dict]:
    """The turns of a shape file, in the session's order: each a Messages body and its answer's usage (the file
    holds each system, tool list and message once, in its pool)."""
    data = json.loads(Path(path).read_text())
    pool = data.get("pool", [])

    def take(value: object) -> object:
        return pool[value["$pool"]] if isinstance(value, dict) and list(value) == ["$pool"] else value

    for turn in data["turns"]:
        body = turn["body"] = {k: take(v) for k, v in turn["body"].items()}
        body["messages"] = [take(m) for m in body["messages"]]
    return data["turns"]


def request(turn: dict) -> bytes:
    """A recorded turn's body as sent here: whole (`stream` false: a stream goes through the gateway's relay, sockets
    the in-process harness of bench_hooks.py has none of)."""
    return json.dumps({**turn["body"], "stream": False}, ensure_ascii=False).encode()


def answer(usage: dict) -> bytes:
    """Qwen's whole chat answer (its JSON), its usage the recorded turn's: Anthropic's counts back in Qwen's (the
    prompt is the input plus what the explicit cache read and wrote)."""
    read, written = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0)
    prompt = usage.get("input_tokens", 0) + read + written
    details: dict = {"cached_tokens": read}
    if written or read:
        details.update(cache_creation={"ephemeral_5m_input_tokens": written}, cache_creation_input_tokens=written,
                       cache_type="ephemeral")
    out = usage.get("output_tokens", 8)
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1795503429, "model": "coder-model",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "Echo: ping"},
                                    "finish_reason": "stop", "logprobs": None}],
                       "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
                                 "prompt_tokens_details": details}}).encode()
