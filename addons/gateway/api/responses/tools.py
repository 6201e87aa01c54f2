"""The client's tools as the chat functions Qwen is offered, and what each function name stands for.

Tools come from the request's `tools`, `additional_tools` items and `tool_search_output` items. Qwen sees
plain functions only: a namespace member is offered as `namespace__name`, a freeform (custom) tool as a
function with one string parameter `input`, a client-executed tool_search as a function `tool_search`.
What each name stands for is kept in a `ToolRef`, so that the way out (items.tool_item) gives the client
back what it offered. A web_search tool is kept aside (`ToolSet.search`: Qwen's own search, websearch.py);
other hosted tools (file_search, …) cannot be offered: they are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..websearch import is_responses_tool

FUNCTION = "function"
CUSTOM = "custom"
TOOL_SEARCH = "tool_search"
DEFAULT_NAMESPACE = "functions"  # OpenAI's own name for plain function tools: members keep their bare names
NS_SEP = "__"  # qualified name of a namespace member: namespace__name
CUSTOM_PARAM = "input"

_DROPPED_TOOLS_OK = ("file_search", "computer", "computer_use_preview",
                     "code_interpreter", "image_generation", "mcp", "local_shell", "shell", "apply_patch",
                     "programmatic_tool_calling")
_CUSTOM_HINT = ("This tool takes free-form text, not JSON: put the whole text in the `input` string and "
                "nothing else.")


@dataclass(frozen=True)
class ToolRef:
    """What the client offered under the function name Qwen sees."""

    kind: str  # "function" | "custom" | "tool_search"
    name: str  # the client's name (a namespace member's own name)
    namespace: str | None = None


def qualified(namespace: object, name: str) -> str:
    """The function name Qwen sees for a (namespace, name)."""
    if not isinstance(namespace, str) or not namespace or namespace == DEFAULT_NAMESPACE:
        return name
    return f"{namespace}{NS_SEP}{name}"


def custom_function(tool: dict, name: str, description: str = "") -> dict:
    """A freeform (custom) tool as a chat function with one string parameter."""
    fmt = f if isinstance(f := tool.get("format"), dict) else {}
    text = description or (d if isinstance(d := tool.get("description"), str) else "")
    hint = _CUSTOM_HINT
    if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        hint += (f" The text must match this {fmt.get('syntax') or 'grammar'} grammar:\n"
                 f"{fmt['definition'].strip()}")
    return {"name": name, "description": f"{text}\n\n{hint}".strip(),
            "parameters": {"type": "object", "properties": {CUSTOM_PARAM: {
                "type": "string", "description": "The tool's whole input, as raw text."}},
                "required": [CUSTOM_PARAM], "additionalProperties": False}}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


class ToolSet:
    """The chat tools Qwen is offered, in order, and what each function name stands for."""

    def __init__(self) -> None:
        self.chat: list[dict] = []
        self.refs: dict[str, ToolRef] = {}
        self.dropped: list[str] = []
        self.search: dict | None = None  # a web_search tool: Qwen searches itself (websearch.py)

    def add(self, tool: object, namespace: str | None = None, ns_description: str = "") -> None:
        if not isinstance(tool, dict):
            return
        kind = tool.get("type")
        name = tool.get("name")
        if is_responses_tool(tool) and namespace is None:
            self.search = self.search or tool
            return
        if kind == "namespace" and namespace is None and isinstance(name, str) and name:
            desc = _str(tool.get("description"))
            for member in _list(tool.get("tools")):
                self.add(member, name, desc)
            return
        if kind == TOOL_SEARCH and namespace is None:
            if tool.get("execution") == "server":  # Qwen cannot search; deferred tools are offered directly
                self.dropped.append("tool_search (server-executed)")
                return
            params = p if isinstance(p := tool.get("parameters"), dict) else {
                "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
            self._put(TOOL_SEARCH, ToolRef(TOOL_SEARCH, TOOL_SEARCH), {
                "name": TOOL_SEARCH, "parameters": params,
                "description": d if isinstance(d := tool.get("description"), str) else
                "Search for more tools to use."})
            return
        if kind not in (FUNCTION, CUSTOM) or not isinstance(name, str) or not name:
            self.dropped.append(str(kind if kind != "namespace" else "namespace (nested)"))
            return
        qname = qualified(namespace, name)
        desc = _str(tool.get("description"))
        if ns_description and namespace != DEFAULT_NAMESPACE:
            desc = f"[{namespace}: {ns_description}]\n{desc}".strip()
        if kind == CUSTOM:
            fn = custom_function(tool, qname, desc)
        else:
            fn = {"name": qname, **({"description": desc} if desc else {}),
                  **{k: tool[k] for k in ("parameters", "strict") if tool.get(k) is not None}}
        self._put(qname, ToolRef(kind, name, namespace), fn)

    def _put(self, qname: str, ref: ToolRef, fn: dict) -> None:
        if qname in self.refs:
            return  # the same tool offered twice (tools and additional_tools): the first wins
        self.refs[qname] = ref
        self.chat.append({"type": FUNCTION, "function": fn})

    def add_all(self, tools: object) -> None:
        for t in _list(tools):
            self.add(t)


def echo_function(tool: dict) -> dict:
    """A function tool as a Response echoes it: `strict` and `parameters` always there (the spec requires them).
    A `strict` not sent is `false`, not OpenAI's default `true`: `true` promises arguments that match the
    schema, and for such a tool the gateway passes Qwen no strict flag and checks none of its arguments."""
    return {**tool, "strict": s if isinstance(s := tool.get("strict"), bool) else False,
            "parameters": tool.get("parameters")}


def echo_tools(body: dict) -> list[dict]:
    """The request's tools as a Response echoes them (function tools with strict/parameters present)."""
    out = []
    for t in _list(body.get("tools")):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            continue
        if t.get("type") == FUNCTION:
            out.append(echo_function(t))
        elif t.get("type") in (CUSTOM, "namespace"):
            out.append(t)
    return out
