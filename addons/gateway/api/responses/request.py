"""Responses API (`/v1/responses`) -> chat completions: the way in. Pure functions over dicts.

`translate`: every input item type of the 2026 Responses API (and Codex's own `configuration_update`) is
handled or dropped with a note in `notes` (items_in.py) — never a 400 for an item the spec defines. Tools
from `tools`, `additional_tools` items and `tool_search_output` items become chat function tools
(tools.py); what Qwen sees as one function name is remembered in a `ToolRef`, so that the way out can give
the client back what it offered: a `function_call` (with its `namespace`), a `custom_tool_call` (freeform
tools, offered to Qwen as a function with one string parameter `input`) or a `tool_search_call`.

Sealed content (seal.py) comes back here: `reasoning` items the gateway sealed become the next assistant
message's `reasoning_content`; `compaction` items become the summary they stand for. A trailing
`compaction_trigger` turns the request into one summarisation call (`Translation.compaction`,
compaction.py).

The way out builds the client's items (items.py): `output.chat_to_response` for a whole answer,
`stream.ResponsesStreamTranslator` for a stream; history.py keeps what a later request continues from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ... import request_surface
from ...errors import GatewayError
from ...exchange import note
from .. import request_schema
from ..websearch import responses_options
from .compaction import compaction_chat
from .fields import limit_tools, max_tool_calls, refuse_unhonoured
from .items_in import ItemReader
from .chat_messages import ChatMessages
from .tools import CUSTOM, FUNCTION, ToolRef, ToolSet, qualified

# Input items one request may send: each is walked, translated and stored (a few µs of the gateway's time each,
# with the event loop's share bounded by doing it in a worker thread: endpoints.py); far more than a real
# conversation holds before it reaches a model's context (Codex compacts long before), and refused in OpenAI's
# words above it before any is walked.
MAX_INPUT_ITEMS = 10_000


@dataclass
class Translation:
    chat: dict
    tools: dict[str, ToolRef]
    items: list[dict]  # the conversation as items (history first, references resolved): what a later turn continues
    compaction: bool = False  # a trailing compaction_trigger: the answer is one `compaction` item
    effort: object = None  # the reasoning effort as the request (or a configuration_update) gave it
    history_messages: int = 0  # the chat messages the continued history made (before this request's input)


def check_request(body: object) -> dict:
    """Refuse what OpenAI refuses (its published CreateResponse schema, request_schema.py; fields it does not
    define included), with the param OpenAI would name: the body, when it is taken."""
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    limit_input(body)
    return request_schema.check(request_schema.RESPONSES, body)


def limit_input(body: dict) -> None:
    """More than MAX_INPUT_ITEMS input items: refused as OpenAI refuses an array over its maximum length."""
    items = body.get("input")
    if isinstance(items, list) and len(items) > MAX_INPUT_ITEMS:
        raise GatewayError(400, f"Invalid 'input': array too long. Expected an array with maximum length "
                                f"{MAX_INPUT_ITEMS}, but got an array with length {len(items)} instead.",
                           param="input", code="array_above_max_length")


def require_model(body: dict) -> None:
    """POST /v1/responses/compact's one required field (the spec's CompactResponseMethodPublicBody), refused in
    OpenAI's words when absent or null; /v1/responses itself requires none (the gateway's default model applies)."""
    if body.get("model") is None:
        raise GatewayError(400, "Missing required parameter: 'model'.", param="model",
                           code="missing_required_parameter")


def responses_to_chat(body: dict, history: list[dict] | None = None, **kw: Any) -> dict:
    """The chat-completions body for a Responses request (see `translate`)."""
    return translate(body, history, **kw).chat


def translate(body: dict, history: list[dict] | None = None, *, chat_history: list[dict] | None = None,
              notes: list[str] | None = None, open_sealed: Callable[[str, object], dict | None] | None = None,
              lookup: Callable[[str], dict | None] | None = None, warm_up: bool = False) -> Translation:
    """A Responses request in chat form (`warm_up`: a WebSocket's `generate: false`, which may hold no message).

    `history`: the items a `previous_response_id` continues (every earlier input item, additional_tools and
    developer messages included, and the earlier answers; see `history_items`); `chat_history`: chat messages
    stored by an older gateway, put first; `open_sealed(kind, token)`: the gateway's sealer (seal.Sealer.open);
    `lookup(item_id)`: a stored item for an `item_reference`; `notes` collects what was dropped or changed."""
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    notes = notes if notes is not None else []
    refuse_unhonoured(body)
    request_surface.ignored("responses", body, notes)
    max_tool_calls(body)
    raw = body.get("input")
    if isinstance(raw, str):
        items: list = [{"type": "message", "role": "user", "content": raw}]
    elif isinstance(raw, list):
        items = list(raw)
    else:
        raise GatewayError(400, "'input' is required and must be a string or an array of items.", param="input",
                           code="missing_required_parameter" if raw is None else "invalid_type")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise GatewayError(400, "'tools' must be an array.", param="tools", code="invalid_type")
    if "model" in body and not isinstance(body["model"], str):
        raise GatewayError(400, "'model' must be a string.", param="model", code="invalid_type")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise GatewayError(400, "Invalid type for 'stream_options': expected an object or null.",
                           param="stream_options", code="invalid_type")  # as chat and completions (the spec)
    compaction = bool(items) and isinstance(items[-1], dict) and items[-1].get("type") == "compaction_trigger"
    if compaction:
        items.pop()
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    reader = ItemReader(ToolSet(), ChatMessages(), notes, open_sealed, lookup, effort)
    reader.conv.adopt([m for m in chat_history or [] if isinstance(m, dict)])
    reader.tools.add_all(body.get("tools"))
    for i, item in enumerate(history or []):  # the gateway's own record: its reasoning always goes back
        reader.item(item, f"previous_response[{i}]")
    held = len(reader.conv.messages)
    for i, item in enumerate(items):
        reader.item(item, f"input[{i}]")
    reader.conv.flush_images()
    if reader.tools.dropped:
        note(notes, "dropped tools Qwen cannot run: " + ", ".join(sorted(set(reader.tools.dropped))))
    conversation = reader.conv.messages
    messages: list[dict] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages += conversation
    if not messages and not warm_up:
        raise GatewayError(400, "'input' must contain at least one message.", param="input", code="invalid_value")
    effort = reader.effort
    record = [*(history or []), *reader.resolved]
    if compaction:
        return Translation(compaction_chat(body, messages), {}, record, compaction=True, effort=effort)
    chat: dict = {"model": body.get("model") or "", "messages": messages, "stream": bool(body.get("stream"))}
    if reader.tools.chat:
        chat["tools"] = reader.tools.chat
        choice = body.get("tool_choice")
        if choice in ("auto", "none", "required"):
            chat["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") in (FUNCTION, CUSTOM) and choice.get("name"):
            chat["tool_choice"] = {"type": FUNCTION, "function": {
                "name": qualified(choice.get("namespace"), str(choice["name"]))}}
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
        limit_tools(chat, body, notes)
    request_surface.carry("responses", body, chat)  # the scalar knobs, each under its chat name
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    elif isinstance(body.get("reasoning"), dict) and body["reasoning"].get("summary"):
        chat["enable_thinking"] = True  # a summary asked for is reasoning asked for, at the model's own effort
    search = responses_options(body, reader.tools.search, bool(reader.tools.chat), notes)
    if search is not None:
        chat["web_search_options"] = search
    return Translation(chat, dict(reader.tools.refs), record, effort=effort, history_messages=held)

