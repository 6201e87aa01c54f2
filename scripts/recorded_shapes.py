"""The recorded client sessions the benches replay: each turn's body as the client sent it to the gateway, its texts
replaced by filler of the same sizes, and Qwen's answer with the usage that turn was answered with.
scripts/record_claude_shapes.py made FILE (Claude Code, Messages), scripts/record_codex_shapes.py CODEX (Codex,
Responses). A file names its dialect (`"dialect"`: "messages" when absent)."""

from __future__ import annotations

import json
from pathlib import Path

FILE = Path(__file__).resolve().parent / "data" / "claude_code_shapes.json"
CODEX = FILE.with_name("codex_shapes.json")
PATHS = {"messages": "/v1/messages?beta=true", "responses": "/v1/responses"}  # where each client sends them
ITEMS = {"messages": "messages", "responses": "input"}  # a body's list of the conversation's items
POOLED = ("system", "tools", "instructions")  # a body's parts kept in the pool whole (as its items are, each)
PATH = PATHS["messages"]


def turns(path: str | Path = FILE) -> list[dict]:
    """The turns of a shape file, in the session's order: each a body, its answer's usage and its dialect (the file
    holds each system, tool list and conversation item once, in its pool)."""
    data = json.loads(Path(path).read_text())
    pool = data.get("pool", [])
    dialect = data.get("dialect", "messages")

    def take(value: object) -> object:
        return pool[value["$pool"]] if isinstance(value, dict) and list(value) == ["$pool"] else value

    for turn in data["turns"]:
        body = turn["body"] = {k: take(v) for k, v in turn["body"].items()}
        body[ITEMS[dialect]] = [take(m) for m in body[ITEMS[dialect]]]
        turn["dialect"] = dialect
    return data["turns"]


def path(turn: dict) -> str:
    return PATHS[turn.get("dialect", "messages")]


def request(turn: dict) -> bytes:
    """A recorded turn's body as sent here: whole (`stream` false: a stream goes through the gateway's relay, sockets
    the in-process harness of bench_hooks.py has none of)."""
    return json.dumps({**turn["body"], "stream": False}, ensure_ascii=False).encode()


def prompt_of(usage: dict) -> tuple[int, int, int]:
    """(prompt, read from the cache, written to it) in Qwen's terms, from the usage the client was answered with:
    Anthropic's (the prompt is the input plus what the explicit cache read and wrote) or OpenAI's Responses'."""
    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
        read, written = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0)
        return usage.get("input_tokens", 0) + read + written, read, written
    read = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
    return usage.get("input_tokens", 0), read, 0


def answer(usage: dict) -> bytes:
    """Qwen's whole chat answer (its JSON), its usage the recorded turn's."""
    prompt, read, written = prompt_of(usage)
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
