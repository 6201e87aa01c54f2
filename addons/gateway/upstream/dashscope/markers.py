"""Where the body Qwen gets carries explicit-cache markers (`cache_control`), by Model Studio's "Context cache"
page: a marker sits on a message's content part and caches the prompt up to there (tools included); its only
type is `ephemeral`, five minutes, reset on each hit; a prefix under 1,024 tokens is not cached; of more than
four markers only the last four take effect; a request with any marker gives up the implicit cache.

The client's markers come first, where it put them: content parts with `cache_control` (the Anthropic
Messages translation keeps them on system, message and tool_result blocks) or OpenAI's
`prompt_cache_breakpoint`, a marker on a whole message (moved to its last part), on a tool (kept: it counts
toward the four). A type Qwen does not take becomes `{"type": "ephemeral"}`, noted; past four, the earliest
are dropped here (what Qwen would ignore), noted.

The lifetime: five minutes, reset on each hit, and no `ttl` taken — except on the models whose catalogue row has
`cache_ttls` (Qwen4's "Explicit cache", 2026-11-16: 5 minutes or 1 hour per request, renewed on each hit with
the request's lifetime). There a marker's `ttl: "1h"` stays on it; the request's own ask —
`prompt_cache_retention` ("24h": Qwen's longest, 1 hour; "in_memory": 5 minutes), `prompt_cache_options.ttl`
(a minimum lifetime: anything past 5 minutes is Qwen's hour) or a top-level `cache_control` (Anthropic's
automatic caching) — goes on the gateway's own markers and on the client's markers that name none; without
one, the gateway's own markers take the longest the client's markers asked. Elsewhere an hour is sent as five
minutes and `prompt_cache_retention` is not sent, each noted. Then qwen-code's own markers, while fewer than four:
the whole prompt (the next turn reads it), where the turn before's prompt ended when the messages since are more
than LOOKBACK content blocks (Qwen looks no further back from a marker: the whole prompt's would not find that
prefix), the first content part after the tools (what the next session of
the same agent shares: its tools, system prompt and opening) and the leading system prompt, each only where it
helps — a prefix of 1,024 tokens or more, the tools counted where Qwen renders them, not marked already — and none when the client asked for explicit breakpoints only
(`prompt_cache_options.mode: "explicit"`). Pure functions; only what changes is copied.
"""

from __future__ import annotations

from ... import jsonio
from ...exchange import note
from ...models import catalogue

EPHEMERAL = {"type": "ephemeral"}
FIVE, HOUR = "5m", "1h"
LIFETIME_S = {FIVE: 300, HOUR: 3600}
_RETENTION = {"24h": HOUR, "in_memory": FIVE}  # OpenAI's prompt_cache_retention, as Qwen4's lifetimes
LIMIT = 4  # markers that take effect
LOOKBACK = 20  # content blocks Qwen looks back from a marker for a stored prefix (Qwen4's "Explicit cache")
MIN_TOKENS = 1024  # a shorter prefix is not cached
CHARS_PER_TOKEN = 4  # the estimate of a prefix's tokens (text only; no tokenizer on the request's path)


def _marker(value: object, notes: list[str] | None, model: str, ttls: tuple[str, ...], asked: str | None) -> dict:
    """The marker Qwen takes for a client's `value`: its ttl kept where the model has that lifetime."""
    own = value.get("ttl") if isinstance(value, dict) else None
    ttl = asked if own is None else own
    if ttl in ttls:
        return EPHEMERAL if ttl == ttls[0] else {"type": "ephemeral", "ttl": ttl}
    if own not in (None, FIVE):  # a lifetime the request asked is said once, where it was read (_asked)
        note(notes, f"cache_control ttl {own} sent as Qwen's 5 minutes (reset on each hit): "
                    f"{model or 'this model'}'s explicit cache takes no ttl (Qwen4 models' does)")
    elif isinstance(value, dict) and value.get("type", "ephemeral") != "ephemeral":
        note(notes, f"cache_control type {value['type']} sent as ephemeral, the one Qwen takes")
    return EPHEMERAL


def _asked(out: dict, options: object, model: str, ttls: tuple[str, ...], notes: list[str] | None) -> str | None:
    """The lifetime the request itself asks (popping what Qwen does not take), or None when it asks none."""
    asked = None
    automatic = out.pop("cache_control", None)  # Anthropic's automatic caching, as the Messages translation keeps it
    if isinstance(automatic, dict):
        asked = automatic.get("ttl") or FIVE
    if isinstance(options, dict) and options.get("ttl") is not None:  # OpenAI's minimum lifetime ("30m")
        asked = FIVE if options["ttl"] == FIVE else HOUR
    retention = out.pop("prompt_cache_retention", None)
    if retention is not None:
        mapped = _RETENTION.get(str(retention))
        if HOUR not in ttls or mapped is None:
            note(notes, f"prompt_cache_retention {retention} not sent: {model or 'this model'}'s explicit cache "
                        "lasts 5 minutes (reset on each hit), it takes no lifetime")
        elif mapped == HOUR:
            note(notes, f"prompt_cache_retention {retention} sent as Qwen's longest cache lifetime, 1 hour (ttl 1h "
                        "on its markers)")
        else:
            note(notes, f"prompt_cache_retention {retention} sent as Qwen's 5 minutes (reset on each hit)")
        asked = mapped or asked
    return asked


def lifetime_s(body: dict) -> int:
    """How long the body Qwen gets asks its cache to last, seconds: an hour when one of its markers says so."""
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            for p in content:
                marker = p.get("cache_control") if isinstance(p, dict) else None
                if isinstance(marker, dict) and marker.get("ttl") == HOUR:
                    return LIFETIME_S[HOUR]
    return LIFETIME_S[FIVE]


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


def _tools_chars(tools: list) -> int:
    return len(jsonio.dumps(tools))


def _own_places(messages: list, tools: list, chars: int, system_end: int | None) -> list[tuple[int, int, int]]:
    """Where the gateway's own markers may go, best first: (message, part: -1 the last, the prefix's characters).
    Qwen renders the tools after the leading system message's text (Qwen3's chat template), so they are in the
    whole prompt's prefix and in the first content part after them — the block an agent's next session shares
    (its tools, system prompt and opening reminder) — and not in the system prompt's. The tools are encoded only
    when a prefix is short without them."""
    if not messages:
        return []
    last = len(messages) - 1
    system = [(0, -1, system_end)] if system_end is not None else []
    if not tools:  # most requests: the whole prompt and the system prompt, as their text says
        bridge = _bridge(messages, chars)
        return [(last, -1, chars), *([bridge] if bridge else []), *system]
    least = MIN_TOKENS * CHARS_PER_TOKEN
    tools_chars = 0 if chars >= least else _tools_chars(tools)
    after = 1 if system_end is not None else 0  # the first message after the tools
    places = [(last, -1, chars + (tools_chars if last >= after else 0))]
    if (bridge := _bridge(messages, chars)) is not None:
        places.append((bridge[0], bridge[1], bridge[2] + tools_chars))
    first = _parts(messages[after].get("content")) if after <= last and isinstance(messages[after], dict) else None
    if first is not None and isinstance(first[0], dict) and (after < last or len(first) > 1):
        size = (system_end or 0) + _chars([first[0]])
        if size < least and not tools_chars:
            tools_chars = _tools_chars(tools)
        places.append((after, 0, size + tools_chars))
    return places + system


def _blocks(message: dict) -> int:
    """A message's content blocks as Qwen's lookback counts them: each content part, its tool calls one more."""
    content = message.get("content")
    parts = 1 if isinstance(content, str) else sum(isinstance(p, dict) for p in content) if isinstance(content, list) \
        else 0
    return parts + bool(message.get("tool_calls"))


def _bridge(messages: list, chars: int) -> tuple[int, int, int] | None:
    """Where a marker keeps the turn before's prefix within Qwen's lookback (LOOKBACK content blocks back from a
    marker), when the messages since the newest assistant message are more blocks than that — the whole prompt's
    marker would not find that prefix, which the turn before stored where its own prompt ended: the assistant
    message's last part, else the first part after it; (message, part, the prefix's characters). None: no turn
    before, or within reach."""
    blocks, tail = 0, 0
    for j in range(len(messages) - 1, 0, -1):
        m = messages[j]
        if not isinstance(m, dict):
            return None
        blocks += _blocks(m)
        if m.get("role") == "assistant":
            break
        tail += _chars(m.get("content")) + _call_chars(m.get("tool_calls"))
    else:
        return None
    if blocks <= LOOKBACK:
        return None
    if _parts(m.get("content")) is not None:
        return j, -1, chars - tail
    after = messages[j + 1] if j + 1 < len(messages) else None
    first = _parts(after.get("content")) if isinstance(after, dict) else None
    return (j + 1, 0, chars - tail + _chars([first[0]])) if first else None


def place(body: dict, notes: list[str] | None = None) -> dict:
    """The body with its markers where Qwen reads them, at most four (see the module's docstring)."""
    out = dict(body)
    options = out.pop("prompt_cache_options", None)
    explicit_only = isinstance(options, dict) and options.get("mode") == "explicit"
    model = str(out.get("model") or "")
    row = catalogue.find(model) if model else None
    ttls = row.cache_ttls if row is not None else ()
    asked = _asked(out, options, model, ttls, notes)
    longest = asked
    tools = out.get("tools")
    tools = list(tools) if isinstance(tools, list) else []
    messages = list(out.get("messages") or [])
    marks: list[tuple[int, int]] = []  # (message index, part index); (-1, tool index) for a tool
    for i, t in enumerate(tools):
        if isinstance(t, dict) and "cache_control" in t:
            tools[i] = {**t, "cache_control": _marker(t["cache_control"], notes, model, ttls, asked)}
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
                    p["cache_control"] = _marker(p.get("cache_control"), notes, model, ttls, asked)
                    if asked is None and p["cache_control"].get("ttl") == HOUR:
                        longest = HOUR  # the gateway's own markers then last as long
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
    own_marker = _marker({"ttl": longest}, None, model, ttls, None) if longest in ttls else EPHEMERAL
    if not explicit_only:
        for where, part, size in _own_places(messages, tools, chars, system_end):
            if len(marks) >= LIMIT:
                break
            parts = _parts(messages[where].get("content"))
            if size < MIN_TOKENS * CHARS_PER_TOKEN or parts is None or len(parts) <= part:
                continue
            if isinstance(parts[part].get("cache_control"), dict):
                continue  # marked already (by the client, or as the whole prompt's end)
            parts[part] = {**parts[part], "cache_control": own_marker}
            messages[where] = {**messages[where], "content": parts}
            marks.append((where, part % len(parts)))
    out["messages"] = messages
    if tools:
        out["tools"] = tools
    return out
