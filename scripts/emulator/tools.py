"""When the emulator calls a tool, and with which arguments.

A real model answers in words unless the prompt calls for a tool, and fills a tool's required arguments with
values that fit its schema. The emulator does the same, deterministically, so that an agent client (Codex,
Claude Code) pointed at it shows what it will show with Qwen: `claude -p "hello"` prints an answer, not a
tool error.

- `tool_calls` switch `"asked"` (the default): a call only when the request forces one (`tool_choice`
  `required` or a named function) or the last user message names an offered tool, exactly as spelt
  (`use Bash to list the files`, `call get_weather`). The client's own wrappers around the prompt
  (Claude Code's `<system-reminder>`, Codex's `<environment_context>` blocks) are not read. A prompt that
  forbids tools ("Do NOT call any tools. … Do NOT use Read, Bash, …": Claude Code's request for a summary
  when it compacts) is answered in words, whatever tools it names.
- `"always"`: whenever tools are offered, the one the prompt names, else the first one (then the next, with
  `tool_calls_count`): the emulator's old behaviour, for tests that want a call without naming a tool.
- `"never"`: never, even when forced (a model that ignores the request).

The echo (`Echo: <prompt>`) repeats the user's own words, without those wrapper blocks either.

Arguments: the `tool_arguments` switch when set, else every required field of the tool's JSON schema filled
with a plausible value (`command`: `echo hello`, `path`: `hello.txt`, an enum's first value, …), plus
`location: "Paris"` when the tool has that field (the classic weather example).
"""

from __future__ import annotations

import re

MODES = ("asked", "always", "never")
WRAPPER = re.compile(r"<([A-Za-z_-]+)>.*?</\1>", re.S)  # a client's context block around the prompt
NO_TOOLS = re.compile(r"\bdo not (?:call|use) any tools?\b", re.I)
MAX_DEPTH = 6

# plausible strings by a word of the field's name (file_path, filePath: "file", "path"), first match wins
STRINGS = (
    ("command", "echo hello"), ("cmd", "echo hello"), ("script", "echo hello"),
    ("path", "hello.txt"), ("file", "hello.txt"), ("filename", "hello.txt"),
    ("url", "https://example.com/"), ("uri", "https://example.com/"), ("location", "Paris"), ("city", "Paris"),
    ("description", "Say hello"), ("language", "en"),
)


def prompt_text(text: str) -> str:
    """The user's own words: the message without the context blocks clients wrap around them."""
    return WRAPPER.sub("", text).strip()


def wanted(tools: list[dict], choice, prompt: str, mode: str) -> list[dict]:
    """The functions to call, in order of preference (empty: answer in words). `tools` are the request's
    `function` objects; `choice` its tool_choice; `prompt` the last user message's text."""
    if not tools or mode == "never" or choice == "none":
        return []
    forced = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if forced:
        named = [f for f in tools if f.get("name") == forced]
        return named or tools
    told_not_to = NO_TOOLS.search(prompt)  # tools named only to forbid them
    words = set() if told_not_to else set(re.findall(r"[A-Za-z0-9_.-]+", prompt_text(prompt)))
    named = [f for f in tools if f.get("name") in words]
    if named:
        return named
    return tools if mode == "always" or choice == "required" else []


def arguments(fn: dict) -> dict:
    """A value for every required field of the function's parameters (and `location` when it has one)."""
    params = fn.get("parameters") or {}
    args = fill(params, "", 0)
    args = args if isinstance(args, dict) else {}
    props = params.get("properties") or {}
    if "location" in props and "location" not in args:
        args["location"] = "Paris"
    return args


def fill(schema, name: str, depth: int):
    """A plausible value for a JSON schema (the required fields of objects only)."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return "hello"
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or () if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return fill(options[0], name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: fill(props.get(k, {}), k, depth + 1) for k in schema.get("required") or () if isinstance(k, str)}
    if kind == "array":
        item = fill(schema.get("items") or {"type": "string"}, name, depth + 1)
        if item == "echo hello" and isinstance(schema.get("items"), dict):
            return ["echo", "hello"]  # a command as its words (Codex's `shell`)
        return [item] * max(1, int(schema.get("minItems") or 1))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(1, int(low) + (1 if "exclusiveMinimum" in schema else 0))
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(name, schema)


def _string(name: str, schema: dict) -> str:
    words = {w.lower() for w in re.findall(r"[a-z0-9]+|[A-Z][a-z0-9]*", name)}
    value = next((v for word, v in STRINGS if word in words), "hello")
    low = schema.get("minLength")
    if isinstance(low, int) and len(value) < low:
        value = value + "!" * (low - len(value))
    return value
