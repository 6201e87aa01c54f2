"""What a request's prompt is made of, for its estimate (tokens.py): its texts, images, token ids, message count and
tools, walked out of any dialect's body; a long list's walk can be told to stop (`Prompt.stop`)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

_TEXT_KEYS = ("content", "text", "input", "prompt", "instructions", "arguments", "output", "refusal",
              "reasoning_content", "summary")
_IMAGE_TYPES = ("image_url", "input_image", "image")

WALK_SLICE = 4096  # a list's items walked between two looks at `Prompt.stop`


class Stopped(Exception):
    """The walk was told to stop (`Prompt.stop`): its count is no longer wanted."""


@dataclass
class Prompt:
    texts: list[str]
    images: int = 0
    token_ids: int = 0  # legacy completions may send token ids instead of text
    messages: int = 0
    tools: str = ""
    # set: a long list's walk stops (Stopped) — a stopping gateway waits for its counting thread at exit, and
    # 400,000 input items took it past 15 s on a busy machine
    stop: threading.Event | None = None


def _walk(node, p: Prompt) -> None:
    if isinstance(node, str):
        p.texts.append(node)
    elif isinstance(node, list):
        if node and all(isinstance(x, int) and not isinstance(x, bool) for x in node):
            p.token_ids += len(node)
            return
        if p.stop is not None and len(node) > WALK_SLICE:
            for at in range(0, len(node), WALK_SLICE):
                if p.stop.is_set():
                    raise Stopped
                for x in node[at:at + WALK_SLICE]:
                    _walk(x, p)
            return
        for x in node:
            _walk(x, p)
    elif isinstance(node, dict):
        if node.get("type") in _IMAGE_TYPES:
            p.images += 1
            return
        for key in _TEXT_KEYS:
            if key in node:
                _walk(node[key], p)
        for call in node.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                _walk(call["function"].get("name"), p)
                _walk(call["function"].get("arguments"), p)


def prompt_of(body: dict, stop: threading.Event | None = None) -> Prompt:
    """Text parts of messages / input / prompt / instructions / a Messages request's `system`, images, and tool
    definitions; `stop`: see Prompt."""
    p = Prompt(texts=[], stop=stop)
    for key in ("instructions", "system", "messages", "input", "prompt"):
        if key in body:
            _walk(body[key], p)
    if isinstance(body.get("messages"), list):
        p.messages = len(body["messages"])
    if body.get("tools"):
        # compact, non-ASCII kept: never longer than what the client sent (see the guard's byte bound)
        p.tools = json.dumps(body["tools"], ensure_ascii=False, separators=(",", ":"))
    return p
