"""Opt-in fixes of what makes a conversation's prompt differ from turn to turn without meaning anything
(`qwen_cache_fixes`; docs/configuration.md#cache-fixes). Qwen's prompt cache reads a prompt's prefix up to its
first differing byte, so noise early in a prompt turns a turn's cache reads into full-price input. A step of the
turn before the route (wiring.py's checks), on the translated chat request, so that the upstream body, the cache
doctor's fingerprints and the record all see the fixed request. One fix:

    tool-order   the tools sorted by name. Agents that gather tools from MCP servers list them in the order the
                 servers answered (a hash map's, a reconnect's): the same tools in another order change every
                 byte after the first moved tool. A model finds a tool by its name, not its place; clients
                 sort their own for this reason (openai/codex#2611, openclaw#58037, langchain deepagents#2497).

What would change what the model reads — a date in the system prompt, a system message mid-conversation, an
earlier message edited, an image re-encoded — is never rewritten: the cache doctor names it
(observe/cache_doctor.py). Claude Code's billing line, the one noise that is not prompt at all, is dropped by
the Messages translation whatever this option says (api/messages/request.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..exchange import Exchange

OFF, TOOL_ORDER = "off", "tool-order"
CHOICES = (OFF, TOOL_ORDER)
SORTED_NOTE = f"tools sorted by name for Qwen's prompt cache (qwen_cache_fixes={TOOL_ORDER})"


def apply(ex: Exchange, fixes: str) -> None:
    """The fixes `fixes` names, made on `ex.chat_body` in place."""
    if fixes == TOOL_ORDER:
        _sort_tools(ex)


def _sort_tools(ex: Exchange) -> None:
    body = ex.chat_body
    tools = body.get("tools") if isinstance(body, dict) else None
    if not isinstance(tools, list) or len(tools) < 2:
        return
    named = [_name(t) for t in tools]
    names = [n for n in named if n is not None]
    if len(names) < len(named):  # a tool the model could only find by its place: the order stays the client's
        return
    order = sorted(range(len(tools)), key=names.__getitem__)  # stable: tools of one name keep their order
    if order != list(range(len(tools))):
        body["tools"] = [tools[i] for i in order]
        ex.notes.append(SORTED_NOTE)
        ex.fixed.append(TOOL_ORDER)  # the request line and /metrics say so (observe/)


def _name(tool: object) -> str | None:
    function = tool.get("function") if isinstance(tool, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) and name else None
