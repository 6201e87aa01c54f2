"""The output items the gateway gives a Responses client, built one way for whole answers (output.py) and
streams (stream.py): reasoning, an assistant message, and the item for each call Qwen made — a
`function_call` (with its `namespace`), a `custom_tool_call` (its freeform text decoded out of the JSON
Qwen wrote) or a `tool_search_call`, as the `ToolRef` of the function's name says.
"""

from __future__ import annotations

import json

from ... import ids
from .shapes import (
    CallItem,
    CustomToolCallItem,
    FunctionCallItem,
    ItemStatus,
    MessageItem,
    ReasoningItem,
    ToolSearchCallItem,
)
from .tools import CUSTOM, CUSTOM_PARAM, TOOL_SEARCH, ToolRef

INCLUDE_REASONING = "reasoning.encrypted_content"


def new_id(prefix: str) -> str:
    return f"{prefix}_{ids.hex_id()}"


def wants_sealed_reasoning(request: dict) -> bool:
    include = request.get("include")
    return isinstance(include, list) and INCLUDE_REASONING in include


def wants_summary(request: dict) -> bool:
    """`reasoning.summary` asked (auto, concise, detailed): only then does a reasoning item carry its text, as
    OpenAI answers (without it: `summary: []`, the text only sealed, for a client that asked for that)."""
    reasoning = request.get("reasoning")
    return isinstance(reasoning, dict) and reasoning.get("summary") in ("auto", "concise", "detailed")


def reasoning_item(item_id: str, text: str, encrypted: str | None = None, summary: bool = True) -> ReasoningItem:
    item: ReasoningItem = {"type": "reasoning", "id": item_id,
                           "summary": [{"type": "summary_text", "text": text}] if summary else []}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def message_item(item_id: str, text: str, status: ItemStatus = "completed") -> MessageItem:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: ItemStatus = "completed",
              namespace: str | None = None) -> FunctionCallItem:
    item: FunctionCallItem = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                              "arguments": arguments, "status": status}
    if namespace:
        item["namespace"] = namespace
    return item


def custom_call_item(item_id: str, call_id: str, name: str, text: str, status: ItemStatus = "completed",
                     namespace: str | None = None) -> CustomToolCallItem:
    item: CustomToolCallItem = {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": name,
                                "input": text, "status": status}
    if namespace:
        item["namespace"] = namespace
    return item


def search_call_item(item_id: str, call_id: str, arguments: str, status: ItemStatus = "completed"
                     ) -> ToolSearchCallItem:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        args = {"query": arguments}
    return {"type": "tool_search_call", "id": item_id, "call_id": call_id, "execution": "client",
            "arguments": args, "status": status}


def custom_input(arguments: str) -> str:
    """The freeform text out of the arguments Qwen wrote for a custom tool: {"input": text} (or any one
    string property); anything that is not such an object is taken as the text itself."""
    try:
        value = json.loads(arguments, strict=False)
    except ValueError:
        return arguments
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if isinstance(value.get(CUSTOM_PARAM), str):
            return value[CUSTOM_PARAM]
        strings = [v for v in value.values() if isinstance(v, str)]
        if len(value) == 1 and strings:
            return strings[0]
    return arguments


def tool_item(ref: ToolRef | None, qname: str, item_id: str, call_id: str, arguments: str,
              status: ItemStatus = "completed") -> CallItem:
    """The client's item for a call Qwen made to the function `qname`."""
    if ref is None:
        return call_item(item_id, call_id, qname, arguments, status)
    if ref.kind == CUSTOM:
        return custom_call_item(item_id, call_id, ref.name, custom_input(arguments), status, ref.namespace)
    if ref.kind == TOOL_SEARCH:
        return search_call_item(item_id, call_id, arguments, status)
    return call_item(item_id, call_id, ref.name, arguments, status, ref.namespace)
