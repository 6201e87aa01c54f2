"""Where the body Qwen gets carries explicit-cache markers (`cache_control`), by Model Studio's "Context cache"
page: a marker sits on a message's content part and caches the prompt up to there (tools included); its only
type is `ephemeral`, five minutes, reset on each hit; a prefix under 1,024 tokens is not cached; of more than
four markers only the last four take effect; a request with any marker gives up the implicit cache.

The client's markers come first, where it put them: content parts with `cache_control` (the Anthropic
Messages translation keeps them on system, message and tool_result blocks) or OpenAI's
`prompt_cache_breakpoint`, a marker on a whole message (moved to its last part), on a tool (kept: it counts
toward the four). A `ttl` or type Qwen does not take becomes `{"type": "ephemeral"}`, noted; past four, the
earliest are dropped here (what Qwen would ignore), noted. Then qwen-code's own markers, while fewer than four:
the whole prompt (the next turn reads it) and the leading system prompt, each only where it helps — a prefix of
1,024 tokens or more, not marked already — and none when the client asked for explicit breakpoints only
(`prompt_cache_options.mode: "explicit"`). Pure functions; only what changes is copied.
"""

from __future__ import annotations

from ...exchange import note

EPHEMERAL = {"type": "ephemeral"}
LIMIT = 4  # markers that take effect
MIN_TOKENS = 1024  # a shorter prefix is not cached
CHARS_PER_TOKEN = 4  # the estimate of a prefix's tokens (text only; no tokenizer on the request's path)


def _marker(value: object, notes: list[str] | None) -> dict:
    if isinstance(value, dict) and value.get("ttl") not in (None, "5m"):
        note(notes, f"cache_control ttl {value['ttl']} sent as Qwen's 5 minutes (reset on each hit): Qwen's "
                    "explicit cache takes no ttl")
    elif isinstance(value, dict) and value.get("type", "ephemeral") != "ephemeral":
        note(notes, f"cache_control type {value['type']} sent as ephemeral, the one Qwen takes")
    return EPHEMERAL


def _parts(content: object) -> list | None:
    """A content as parts (a string is one text part); None when there is nothing to mark."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else None
    return list(content) if isinstance(content, list) and content and isinstance(content[-1], dict) else None


def _chars(content: object) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def _call_chars(calls: object) -> int:
    """The characters of a message's tool calls' arguments (they are part of the prompt's prefix)."""
    total = 0
    if isinstance(calls, list):
        for c in calls:  # a loop, not sum() over a generator: called for every message that has calls
            if isinstance(c, dict):
                total += len(str((c.get("function") or {}).get("arguments") or ""))
    return total


def place(body: dict, notes: list[str] | None = None) -> dict:
    """The body with its markers where Qwen reads them, at most four (see the module's docstring)."""
    out = dict(body)
    options = out.pop("prompt_cache_options", None)
    explicit_only = isinstance(options, dict) and options.get("mode") == "explicit"
    tools = out.get("tools")
    tools = list(tools) if isinstance(tools, list) else []
    messages = list(out.get("messages") or [])
    marks: list[tuple[int, int]] = []  # (message index, part index); (-1, tool index) for a tool
    for i, t in enumerate(tools):
        if isinstance(t, dict) and "cache_control" in t:
            tools[i] = {**t, "cache_control": _marker(t["cache_control"], notes)}
            marks.append((-1, i))
    chars, system_end = 0, None
    for j, m in enumerate(messages):
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if type(content) is str and "cache_control" not in m:  # most messages: only their length counts
            chars += len(content)
            if "tool_calls" in m:
                chars += _call_chars(m["tool_calls"])
            if system_end is None and j == 0 and m.get("role") == "system":
                system_end = chars
            continue
        if "cache_control" in m:  # on the message: Qwen reads markers on content parts only
            parts = _parts(content)
            m = {k: v for k, v in m.items() if k != "cache_control"}
            if parts is not None and not isinstance(parts[-1].get("cache_control"), dict):
                parts[-1] = {**parts[-1], "cache_control": body["messages"][j]["cache_control"]}
                content = m["content"] = parts
            messages[j] = m
        if isinstance(content, list) and any(isinstance(p, dict) and ("cache_control" in p or
                                                                     "prompt_cache_breakpoint" in p) for p in content):
            content = list(content)
            for k, p in enumerate(content):
                if isinstance(p, dict) and ("cache_control" in p or "prompt_cache_breakpoint" in p):
                    p = {key: v for key, v in p.items() if key != "prompt_cache_breakpoint"}
                    p["cache_control"] = _marker(p.get("cache_control"), notes)
                    content[k] = p
                    marks.append((j, k))
            messages[j] = {**m, "content": content}
        chars += _chars(content) + _call_chars(m.get("tool_calls"))
        if system_end is None and m.get("role") == "system" and j == 0:
            system_end = chars
    if len(marks) > LIMIT:
        dropped = marks[:len(marks) - LIMIT]
        note(notes, f"{len(dropped)} of the client's {len(marks)} cache_control markers dropped, the earliest: "
                    f"Qwen takes the last {LIMIT}")
        for where, k in dropped:
            if where < 0:
                tools[k] = {key: v for key, v in tools[k].items() if key != "cache_control"}
            else:
                content = list(messages[where]["content"])
                content[k] = {key: v for key, v in content[k].items() if key != "cache_control"}
                messages[where] = {**messages[where], "content": content}
        marks = marks[len(dropped):]
    own = [] if explicit_only else [(len(messages) - 1, chars), (0, system_end)]
    for where, size in own:
        if len(marks) >= LIMIT or size is None or size < MIN_TOKENS * CHARS_PER_TOKEN or where < 0:
            continue
        parts = _parts(messages[where].get("content"))
        if parts is None or isinstance(parts[-1].get("cache_control"), dict):
            continue
        parts[-1] = {**parts[-1], "cache_control": EPHEMERAL}
        messages[where] = {**messages[where], "content": parts}
        marks.append((where, len(parts) - 1))
    out["messages"] = messages
    if tools:
        out["tools"] = tools
    return out
