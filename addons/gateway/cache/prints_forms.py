"""The bodies that pass through in their client's own form (prints.py reads the chat form): a Messages
body for a plan's Anthropic-compatible base (`qwen_messages_passthrough`) and a Responses body for Model
Studio's own Responses API (`qwen_responses_native`), read into the same blocks; and where each block is in a
request, named for mitmweb's view only when a change is shown."""

from __future__ import annotations

from .prints import SYSTEM_ROLES, Blocks, Print, asks_hour, settings_of
from .prints_chat import of_chat, system_parts

CHAT, MESSAGES, RESPONSES = "chat", "v1/messages", "responses"  # a body's form: the pass-through leg's suffix


def of_body(body: dict, form: str = CHAT) -> Print:
    if form == MESSAGES:
        return of_messages(body)
    if form == RESPONSES:
        return of_responses(body)
    return of_chat(body)


def of_messages(body: dict) -> Print:
    """A Messages body: `system` (a string, or text blocks), the tools, each message."""
    b = Blocks(body.get("model"))
    b.hour = asks_hour(body)  # automatic caching: a marker on the request itself
    if body.get("system") is not None:
        system_parts(b, body.get("system"))
    b.add_tools(body.get("tools"))
    messages = body.get("messages")
    b.add_messages(messages if isinstance(messages, list) else [])
    return b.done(settings_of(body))


def of_responses(body: dict) -> Print:
    """A Responses body: `instructions` and the leading system and developer items, the tools, each item."""
    b = Blocks(body.get("model"))
    if isinstance(body.get("instructions"), str):
        system_parts(b, body["instructions"])
    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items if isinstance(items, list) else []
    lead = 0
    while lead < len(items) and items[lead].__class__ is dict and items[lead].get("role") in SYSTEM_ROLES:
        system_parts(b, items[lead].get("content"))
        lead += 1
    b.add_tools(body.get("tools"))
    b.add_messages(items[lead:])
    return b.done(settings_of(body))


def places(body: dict, form: str = CHAT) -> list[str]:
    """Where each block of `of_body(body, form)` is in the request ("model", "messages[0].content[1]",
    "tools[3] Bash", "messages[7] user"): named only when a change is shown, never kept."""
    out = ["model"]
    if form == MESSAGES:
        out += _parts("system", body.get("system")) if body.get("system") is not None else []
        return out + _tools(body) + _messages("messages", body.get("messages"), 0)
    if form == RESPONSES:
        out += ["instructions"] if isinstance(body.get("instructions"), str) else []
        items = body.get("input")
        items = [{"role": "user"}] if isinstance(items, str) else items if isinstance(items, list) else []
        lead = _leading(items)
        for i in range(lead):
            out += _parts(f"input[{i}].content", items[i].get("content"))
        return out + _tools(body) + _messages("input", items, lead)
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    lead = _leading(messages)
    for i in range(lead):
        out += _parts(f"messages[{i}].content", messages[i].get("content"))
    return out + _tools(body) + _messages("messages", messages, lead)


def _leading(items: list) -> int:
    lead = 0
    while lead < len(items) and isinstance(items[lead], dict) and items[lead].get("role") in SYSTEM_ROLES:
        lead += 1
    return lead


def _parts(where: str, content: object) -> list[str]:
    return [f"{where}[{j}]" for j in range(len(content))] if isinstance(content, list) else [where.removesuffix(".content")]


def _tools(body: dict) -> list[str]:
    tools = body.get("tools")
    out = []
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = (fn if isinstance(fn, dict) else tool if isinstance(tool, dict) else {}).get("name")
        out.append(f"tools[{i}] {name}" if isinstance(name, str) else f"tools[{i}]")
    return out


def _messages(where: str, items: object, lead: int) -> list[str]:
    items = items if isinstance(items, list) else []
    return [f"{where}[{i}] {items[i].get('role') or items[i].get('type')}" for i in range(lead, len(items))
            if isinstance(items[i], dict)]


__all__ = ["CHAT", "MESSAGES", "RESPONSES", "of_body", "of_chat", "of_messages", "of_responses", "places"]
