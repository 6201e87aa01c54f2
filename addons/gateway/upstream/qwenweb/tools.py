"""Tools by prompt emulation (qwen-web-protocol.md §1.9): the web API ignores OpenAI's `tools`, so the tools
are described in a system block and the model answers a call as a `<tool_call>{json}</tool_call>` block,
which `ToolCallParser` finds in the answer stream, tags split across frames anywhere (no I/O)."""

from __future__ import annotations

import json

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def describe(tools: list, tool_choice: object) -> str | None:
    """The system block that declares the client's function tools, or None (no tools, or `tool_choice: none`)."""
    functions: list[dict] = []
    for t in tools:
        f = t.get("function") if isinstance(t, dict) and t.get("type", "function") == "function" else None
        if isinstance(f, dict) and isinstance(f.get("name"), str):
            functions.append(f)
    if not functions or tool_choice == "none":
        return None
    lines = ["# Tools", "", "You may call the functions below. To call one, answer with a block of exactly this form "
             "(one block per call, the arguments a JSON object matching the function's parameters):",
             "", f'{OPEN}{{"name": "<function name>", "arguments": {{...}}}}{CLOSE}', "",
             "After the call(s) stop and wait: the results come back in the next message. Available functions:"]
    for f in functions:
        spec = {"name": f["name"], "description": f.get("description") or "",
                "parameters": f.get("parameters") or {"type": "object", "properties": {}}}
        lines.append(json.dumps(spec, ensure_ascii=False))
    if tool_choice == "required":
        lines += ["", "You must call at least one function in this answer."]
    elif isinstance(tool_choice, dict) and isinstance((tool_choice.get("function") or {}).get("name"), str):
        lines += ["", f"You must call the function {tool_choice['function']['name']} in this answer."]
    return "\n".join(lines)


def call_text(name: str, arguments: str) -> str:
    """An earlier tool call as the model would have written it (for the flattened history)."""
    try:
        args: object = json.loads(arguments) if arguments else {}
    except ValueError:
        args = arguments
    return f"{OPEN}{json.dumps({'name': name, 'arguments': args}, ensure_ascii=False)}{CLOSE}"


class ToolCallParser:
    """Answer text in, ("text", str) and ("call", {"name", "arguments"}) out, in order. Text that might be the
    start of a tag is held back until the next piece says; a block that is not a JSON call stays text."""

    def __init__(self) -> None:
        self.buf = ""
        self.inside = False

    def feed(self, text: str) -> list[tuple[str, object]]:
        self.buf += text
        out: list[tuple[str, object]] = []
        while True:
            if self.inside:
                end = self.buf.find(CLOSE)
                if end < 0:
                    return out
                block, self.buf, self.inside = self.buf[:end], self.buf[end + len(CLOSE):], False
                call = _call(block)
                out.append(("call", call) if call is not None else ("text", OPEN + block + CLOSE))
                continue
            start = self.buf.find(OPEN)
            if start >= 0:
                if start:
                    out.append(("text", self.buf[:start]))
                self.buf, self.inside = self.buf[start + len(OPEN):], True
                continue
            keep = _partial(self.buf, OPEN)
            if len(self.buf) > keep:
                out.append(("text", self.buf[:len(self.buf) - keep]))
                self.buf = self.buf[len(self.buf) - keep:]
            return out

    def flush(self) -> list[tuple[str, object]]:
        """The end of the answer: what is held back is text (an unclosed block included)."""
        rest = (OPEN if self.inside else "") + self.buf
        self.buf, self.inside = "", False
        return [("text", rest)] if rest else []


def _call(block: str) -> dict | None:
    try:
        data = json.loads(block.strip())
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    args = data.get("arguments", data.get("parameters", {}))
    arguments = args if isinstance(args, str) else json.dumps(args if args is not None else {}, ensure_ascii=False)
    return {"name": data["name"], "arguments": arguments}


def _partial(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
