"""The way in, item by item: each Responses input item into the chat conversation and the tools Qwen is
offered (`ItemReader`, used by request.translate).

Every input item type of the 2026 Responses API (and Codex's own `configuration_update`) is handled or
dropped with a note — never a 400 for an item the spec defines. A handler is the method named after the
item type (`_function_call` for "function_call"). Calls of tools Qwen is not offered (shell, apply_patch,
MCP) become function calls with their outputs, so that Qwen still reads what happened. Sealed content
comes back here: `reasoning` items the gateway sealed become the next assistant message's
`reasoning_content`; `compaction` items become the summary they stand for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import GatewayError
from ...exchange import note
from .compaction import SUMMARY_PREFIX
from .items import new_id
from .chat_messages import ChatMessages, message_content, shell_output_text, tool_output
from .tools import CUSTOM_PARAM, TOOL_SEARCH, ToolSet, qualified

# Items that record what a hosted tool (or a tool Qwen is not offered) did: Qwen cannot use them.
_DROPPED_ITEMS = ("web_search_call", "file_search_call", "computer_call", "computer_call_output",
                  "image_generation_call", "code_interpreter_call", "mcp_list_tools", "mcp_approval_request",
                  "mcp_approval_response", "program", "program_output")


# The item types with a handler below, the method named after the type (`_function_call`): a client's
# type never reaches another attribute of the reader.
ITEM_TYPES = frozenset({
    "message", "function_call", "custom_tool_call", "function_call_output", "custom_tool_call_output",
    "tool_search_call", "tool_search_output", "shell_call", "shell_call_output", "local_shell_call",
    "local_shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_call", "additional_tools",
    "configuration_update", "item_reference", "reasoning", "compaction", "compaction_summary", "compaction_trigger"})


def _call_id(item: dict) -> str:
    cid = item.get("call_id") or item.get("id")
    return str(cid) if cid else new_id("call")


def _args(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


@dataclass
class ItemReader:
    """Reads input items (`item`) into `conv` and `tools`, noting what it drops or changes."""

    tools: ToolSet
    conv: ChatMessages
    notes: list[str]
    open_sealed: Callable[[str, object], dict | None] | None
    lookup: Callable[[str], dict | None] | None
    effort: object  # the request's reasoning effort as sent; a configuration_update item may replace it
    search_ids: list[str] = field(default_factory=list)  # tool_search calls without a call_id, in order
    resolved: list[dict] = field(default_factory=list)  # this request's items, references resolved

    def item(self, item: object, where: str, referenced: bool = False) -> None:
        if not isinstance(item, dict):
            raise GatewayError(400, f"{where} must be an object.", param=where, code="invalid_type")
        kind = item.get("type", "message")
        if kind is None and "role" not in item and "id" in item:
            kind = "item_reference"  # ItemReferenceParam's type may be null
        handler = getattr(self, f"_{kind}") if kind in ITEM_TYPES else None
        if handler is None:
            if kind in _DROPPED_ITEMS or (isinstance(kind, str) and kind.startswith("mcp_")):
                if kind == "mcp_call":
                    return self._mcp_call(item, where)
                note(self.notes, f"dropped input items Qwen cannot use: {kind}")
                return
            raise GatewayError(400, f"Input item type {kind!r} is not supported.", param=f"{where}.type",
                               code="unsupported_value")
        if referenced and kind == "item_reference":
            return
        if kind != "item_reference" and not where.startswith("previous_response"):
            self.resolved.append(item)
        handler(item, where)

    # -- messages
    def _message(self, item: dict, where: str) -> None:
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise GatewayError(400, f"{where}.role must be user, assistant, system or developer.",
                               param=f"{where}.role", code="invalid_value")
        if "content" not in item:
            raise GatewayError(400, f"{where}.content is required.", param=f"{where}.content",
                               code="missing_required_parameter")
        if "internal_chat_message_metadata_passthrough" in item:
            note(self.notes, "internal_chat_message_metadata_passthrough ignored (client bookkeeping)")
        self.conv.add({"role": "system" if role == "developer" else role,
                       "content": message_content(item["content"], where, self.notes)})

    # -- tool calls and their outputs
    def _function_call(self, item: dict, where: str) -> None:
        self.conv.call(_call_id(item), qualified(item.get("namespace"), str(item.get("name") or "")),
                       _args(item.get("arguments")))

    def _custom_tool_call(self, item: dict, where: str) -> None:
        text = item.get("input") if isinstance(item.get("input"), str) else _args(item.get("input"))
        self.conv.call(_call_id(item), qualified(item.get("namespace"), str(item.get("name") or "")),
                       json.dumps({CUSTOM_PARAM: text}, ensure_ascii=False))

    def _function_call_output(self, item: dict, where: str) -> None:
        call_id = self._answered(item, where, "function call output")
        text, images = tool_output(item.get("output"), where, self.notes)
        self.conv.tool(call_id, text, images)

    def _custom_tool_call_output(self, item: dict, where: str) -> None:
        call_id = self._answered(item, where, "custom tool call output")
        text, images = tool_output(item.get("output"), where, self.notes)
        self.conv.tool(call_id, text, images)

    def _answered(self, item: dict, where: str, kind: str) -> str:
        """The call a tool output answers, which must come before it (in the input, or the previous responses'
        chain): else OpenAI's 400, where Qwen would get a tool message answering no call. A stored chain is
        taken as it was kept."""
        call_id = str(item.get("call_id") or "")
        if where.startswith("input") and not self.conv.has_call(call_id):
            raise GatewayError(400, f"No tool call found for {kind} with call_id {call_id}.", param="input")
        return call_id

    def _tool_search_call(self, item: dict, where: str) -> None:
        cid = item.get("call_id") or item.get("id") or new_id("call")
        if not item.get("call_id"):
            self.search_ids.append(str(cid))
        self.conv.call(str(cid), TOOL_SEARCH, _args(item.get("arguments")))

    def _tool_search_output(self, item: dict, where: str) -> None:
        loaded = ts if isinstance(ts := item.get("tools"), list) else []
        self.tools.add_all(loaded)
        cid = item.get("call_id") or (self.search_ids.pop(0) if self.search_ids else None)
        names = [str(t.get("name")) for t in loaded if isinstance(t, dict) and t.get("name")]
        if cid and self.conv.has_call(str(cid)):
            self.conv.tool(str(cid), "Tools now available: " + (", ".join(names) or "none found") + ".", [])

    def _shell_call(self, item: dict, where: str) -> None:
        self.conv.call(_call_id(item), "shell", _args(item.get("action")))

    def _shell_call_output(self, item: dict, where: str) -> None:
        self.conv.tool(str(item.get("call_id") or ""), shell_output_text(item.get("output")), [])

    def _local_shell_call(self, item: dict, where: str) -> None:
        self.conv.call(_call_id(item), "local_shell", _args(item.get("action")))

    def _local_shell_call_output(self, item: dict, where: str) -> None:
        out = item.get("output")
        self.conv.tool(str(item.get("call_id") or item.get("id") or ""), out if isinstance(out, str) else _args(out),
                       [])

    def _apply_patch_call(self, item: dict, where: str) -> None:
        self.conv.call(_call_id(item), "apply_patch", _args(item.get("operation")))

    def _apply_patch_call_output(self, item: dict, where: str) -> None:
        out = item.get("output")
        text = out if isinstance(out, str) and out else f"[{item.get('status') or 'completed'}]"
        self.conv.tool(str(item.get("call_id") or ""), text, [])

    def _mcp_call(self, item: dict, where: str) -> None:
        cid = _call_id(item)
        name = qualified(item.get("server_label"), str(item.get("name") or "mcp_tool"))
        self.conv.call(cid, name, _args(item.get("arguments")))
        out = item.get("output") if isinstance(item.get("output"), str) else item.get("error")
        self.conv.tool(cid, out if isinstance(out, str) else _args(out), [])

    # -- tools, settings, references
    def _additional_tools(self, item: dict, where: str) -> None:
        self.tools.add_all(item.get("tools"))

    def _configuration_update(self, item: dict, where: str) -> None:
        if where.startswith("previous_response"):
            return  # an earlier turn's setting: this request's own settings apply
        reasoning = item.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        if isinstance(effort, str):
            self.effort = effort
            note(self.notes, f"configuration_update applied: reasoning effort {effort}")
        else:
            note(self.notes, "configuration_update without a reasoning effort ignored")

    def _item_reference(self, item: dict, where: str) -> None:
        ref = item.get("id")
        found = self.lookup(ref) if self.lookup is not None and isinstance(ref, str) else None
        if found is None:
            note(self.notes, f"item_reference {ref!s:.60} dropped: no stored item with that id")
            return
        self.item(found, where, referenced=True)

    # -- sealed content
    def _reasoning(self, item: dict, where: str) -> None:
        token = item.get("encrypted_content")
        payload = self.open_sealed("reasoning", token) if self.open_sealed and token else None
        # `include` asks for sealed reasoning in the answer; what the client sends back is used either way
        if payload is not None and isinstance(payload.get("text"), str):
            self.conv.reasoning = (self.conv.reasoning + "\n" if self.conv.reasoning else "") + payload["text"]
        elif token:
            note(self.notes, "reasoning items the gateway did not seal dropped")
        else:
            note(self.notes, "reasoning summaries dropped (no sealed content to give back to Qwen)")

    def _compaction(self, item: dict, where: str) -> None:
        payload = self.open_sealed("compaction", item.get("encrypted_content")) if self.open_sealed else None
        if payload is None or not isinstance(payload.get("summary"), str):
            note(self.notes, "compaction items the gateway did not seal dropped")
            return
        self.conv.add({"role": "user", "content": SUMMARY_PREFIX + payload["summary"]})

    _compaction_summary = _compaction

    def _compaction_trigger(self, item: dict, where: str) -> None:
        note(self.notes, "compaction_trigger ignored: only a trailing one compacts")

