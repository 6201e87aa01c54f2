"""Responses API (`/v1/responses`) <-> chat completions. Pure functions over dicts.

The way in (`translate`): every input item type of the 2026 Responses API (and Codex's own
`configuration_update`) is handled or dropped with a note in `notes` — never a 400 for an item the spec
defines. Tools from `tools`, `additional_tools` items and `tool_search_output` items become chat function
tools; what Qwen sees as one function name is remembered in a `ToolRef`, so that the way out can give the
client back what it offered: a `function_call` (with its `namespace`), a `custom_tool_call` (freeform
tools, offered to Qwen as a function with one string parameter `input`) or a `tool_search_call`.

Sealed content (seal.py) comes back here: `reasoning` items the gateway sealed become the next assistant
message's `reasoning_content`; `compaction` items become the summary they stand for. A trailing
`compaction_trigger` turns the request into one summarisation call (`Translation.compaction`).

The way out (`chat_to_response`, and responses_stream for streams) builds the client's items.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ... import ids
from ...errors import GatewayError

FUNCTION = "function"
CUSTOM = "custom"
TOOL_SEARCH = "tool_search"
INCLUDE_REASONING = "reasoning.encrypted_content"
DEFAULT_NAMESPACE = "functions"  # OpenAI's own name for plain function tools: members keep their bare names
NS_SEP = "__"  # qualified name of a namespace member: namespace__name
CUSTOM_PARAM = "input"

_TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text")
_DROPPED_PARTS = ("input_file", "input_audio", "audio", "file")
# Items that record what a hosted tool (or a tool Qwen is not offered) did: Qwen cannot use them.
_DROPPED_ITEMS = ("web_search_call", "file_search_call", "computer_call", "computer_call_output",
                  "image_generation_call", "code_interpreter_call", "mcp_list_tools", "mcp_approval_request",
                  "mcp_approval_response", "program", "program_output")
_DROPPED_TOOLS_OK = ("web_search", "web_search_preview", "file_search", "computer", "computer_use_preview",
                     "code_interpreter", "image_generation", "mcp", "local_shell", "shell", "apply_patch",
                     "programmatic_tool_calling")
_CUSTOM_HINT = ("This tool takes free-form text, not JSON: put the whole text in the `input` string and "
                "nothing else.")

COMPACTION_PROMPT = (
    "You are compacting a long conversation between a user and an AI coding assistant so that the assistant "
    "can continue the work with a much shorter context. Write a handoff summary for the assistant that will "
    "continue. Keep: the user's goals and constraints (quote exact requirements), decisions made and why, "
    "the current state of the work (files created or changed, commands run and their important results, "
    "errors met and how they were solved), what remains to be done and the immediate next step. Keep exact "
    "names, paths, identifiers and values. Leave out pleasantries and anything no longer relevant. Write the "
    "summary only, in the language of the conversation.")
SUMMARY_PREFIX = "Summary of the earlier conversation (compacted):\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}_{ids.hex_id()}"


# ---- tools -------------------------------------------------------------------------------------------------


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
    fmt = tool.get("format") if isinstance(tool.get("format"), dict) else {}
    text = description or (tool.get("description") if isinstance(tool.get("description"), str) else "")
    hint = _CUSTOM_HINT
    if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        hint += (f" The text must match this {fmt.get('syntax') or 'grammar'} grammar:\n"
                 f"{fmt['definition'].strip()}")
    return {"name": name, "description": f"{text}\n\n{hint}".strip(),
            "parameters": {"type": "object", "properties": {CUSTOM_PARAM: {
                "type": "string", "description": "The tool's whole input, as raw text."}},
                "required": [CUSTOM_PARAM], "additionalProperties": False}}


class ToolSet:
    """The chat tools Qwen is offered, in order, and what each function name stands for."""

    def __init__(self) -> None:
        self.chat: list[dict] = []
        self.refs: dict[str, ToolRef] = {}
        self.dropped: list[str] = []

    def add(self, tool: object, namespace: str | None = None, ns_description: str = "") -> None:
        if not isinstance(tool, dict):
            return
        kind = tool.get("type")
        name = tool.get("name")
        if kind == "namespace" and namespace is None and isinstance(name, str) and name:
            desc = tool.get("description") if isinstance(tool.get("description"), str) else ""
            for member in tool.get("tools") if isinstance(tool.get("tools"), list) else []:
                self.add(member, name, desc)
            return
        if kind == TOOL_SEARCH and namespace is None:
            if tool.get("execution") == "server":  # Qwen cannot search; deferred tools are offered directly
                self.dropped.append("tool_search (server-executed)")
                return
            params = tool.get("parameters") if isinstance(tool.get("parameters"), dict) else {
                "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
            self._put(TOOL_SEARCH, ToolRef(TOOL_SEARCH, TOOL_SEARCH), {
                "name": TOOL_SEARCH, "parameters": params,
                "description": tool.get("description") if isinstance(tool.get("description"), str) else
                "Search for more tools to use."})
            return
        if kind not in (FUNCTION, CUSTOM) or not isinstance(name, str) or not name:
            self.dropped.append(str(kind if kind != "namespace" else "namespace (nested)"))
            return
        qname = qualified(namespace, name)
        desc = tool.get("description") if isinstance(tool.get("description"), str) else ""
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
        for t in tools if isinstance(tools, list) else []:
            self.add(t)


def dropped_tools(body: dict) -> list[str]:
    """Tool types in `tools` that Qwen cannot be offered (web_search, file_search, …)."""
    ts = ToolSet()
    ts.add_all(body.get("tools"))
    return ts.dropped


def function_tools(body: dict) -> list[dict]:
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    return [t for t in tools if isinstance(t, dict) and t.get("type") == FUNCTION and isinstance(t.get("name"), str)]


def echo_tools(body: dict) -> list[dict]:
    """The request's tools as a Response echoes them (function tools with strict/parameters present)."""
    out = []
    for t in body.get("tools") if isinstance(body.get("tools"), list) else []:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            continue
        if t.get("type") == FUNCTION:
            out.append({"strict": None, "parameters": None, **t})
        elif t.get("type") in (CUSTOM, "namespace"):
            out.append(t)
    return out


# ---- content -------------------------------------------------------------------------------------------------


def _image_part(p: dict, where: str) -> dict:
    url = p.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url:
        raise GatewayError(400, "input_image needs an image_url (file_id is not supported by Qwen).",
                           param=f"{where}.image_url", code="unsupported_value")
    detail = p.get("detail") if p.get("detail") in ("auto", "low", "high", "original") else "auto"
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def _parts(content: list, where: str, notes: list[str]) -> list[dict]:
    parts: list[dict] = []
    for j, p in enumerate(content):
        if not isinstance(p, dict):
            raise GatewayError(400, f"{where}[{j}] must be an object.", param=f"{where}[{j}]", code="invalid_type")
        kind = p.get("type")
        if kind in _TEXT_PARTS:
            text = p.get("text") if kind != "refusal" else p.get("refusal")
            parts.append({"type": "text", "text": text if isinstance(text, str) else str(text or "")})
        elif kind in ("input_image", "image"):
            parts.append(_image_part(p, f"{where}[{j}]"))
        elif kind in _DROPPED_PARTS:
            _note(notes, f"{kind} content parts dropped (Qwen reads text and images only)")
        else:
            raise GatewayError(400, f"Content part type {kind!r} is not supported by Qwen.",
                               param=f"{where}[{j}].type", code="unsupported_value")
    return parts


def _content(content, where: str, notes: list[str]) -> str | list:
    """A message's content in chat form: a string, or parts when there are images."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise GatewayError(400, f"{where}.content must be a string or an array of content parts.",
                           param=f"{where}.content", code="invalid_type")
    parts = _parts(content, f"{where}.content", notes)
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: object, where: str, notes: list[str]) -> tuple[str, list[dict]]:
    """A tool output as (text for the tool message, image parts for the vision model)."""
    if isinstance(output, str):
        return output, []
    if isinstance(output, list):
        parts = _parts(output, f"{where}.output", notes)
        text = "\n".join(p["text"] for p in parts if p["type"] == "text")
        return text, [p for p in parts if p["type"] == "image_url"]
    if output is None:
        return "", []
    return json.dumps(output, ensure_ascii=False), []


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def _shell_output_text(output: object) -> str:
    """shell_call_output's [{stdout, stderr, outcome}] as text."""
    if isinstance(output, str):
        return output
    chunks = []
    for o in output if isinstance(output, list) else []:
        if not isinstance(o, dict):
            continue
        for key in ("stdout", "stderr"):
            if isinstance(o.get(key), str) and o[key]:
                chunks.append(o[key] if key == "stdout" else f"[stderr]\n{o[key]}")
        outcome = o.get("outcome")
        if isinstance(outcome, dict):
            chunks.append(f"[{outcome.get('type', 'exit')}"
                          + (f" {outcome['exit_code']}" if "exit_code" in outcome else "") + "]")
    return "\n".join(chunks)


# ---- the way in ---------------------------------------------------------------------------------------------


@dataclass
class Translation:
    chat: dict
    tools: dict[str, ToolRef]
    items: list[dict]  # the conversation as items (history first, references resolved): what a later turn continues
    compaction: bool = False  # a trailing compaction_trigger: the answer is one `compaction` item
    effort: str | None = None


class _Conversation:
    """Chat messages built item by item, keeping what OpenAI's chat format needs: tool calls grouped in one
    assistant message, tool messages right after it, images a tool returned in a user message after them,
    and reasoning the gateway sealed on the assistant message it belongs to."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.images: list[dict] = []  # image parts from tool outputs, waiting for the tool messages to end
        self.reasoning: str | None = None

    def add(self, msg: dict) -> None:
        if msg["role"] != "tool":
            self.flush_images()
        if msg["role"] == "assistant" and self.reasoning is not None:
            msg["reasoning_content"], self.reasoning = self.reasoning, None
        self.messages.append(msg)

    def call(self, call_id: str, name: str, arguments: str) -> None:
        call = {"id": call_id, "type": FUNCTION, "function": {"name": name, "arguments": arguments}}
        last = self.messages[-1] if self.messages else None
        if last and last["role"] == "assistant" and not self.images and (
                last.get("tool_calls") or not last.get("content")):
            last.setdefault("tool_calls", []).append(call)
            if self.reasoning is not None and not last.get("reasoning_content"):
                last["reasoning_content"], self.reasoning = self.reasoning, None
        else:
            self.add({"role": "assistant", "content": None, "tool_calls": [call]})

    def tool(self, call_id: str, text: str, images: list[dict]) -> None:
        self.add({"role": "tool", "tool_call_id": call_id,
                  "content": text or ("(the tool returned the image below)" if images else "")})
        self.images += images

    def flush_images(self) -> None:
        if self.images:
            images, self.images = self.images, []
            self.messages.append({"role": "user", "content": [
                {"type": "text", "text": "The tool call above returned "
                                         + ("this image:" if len(images) == 1 else f"these {len(images)} images:")},
                *images]})


def _call_id(item: dict) -> str:
    cid = item.get("call_id") or item.get("id")
    return str(cid) if cid else new_id("call")


def _args(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


def responses_to_chat(body: dict, history: list[dict] | None = None, **kw) -> dict:
    """The chat-completions body for a Responses request (see `translate`)."""
    return translate(body, history, **kw).chat


def translate(body: dict, history: list[dict] | None = None, *, chat_history: list[dict] | None = None,
              notes: list[str] | None = None, open_sealed: Callable[[str, object], dict | None] | None = None,
              lookup: Callable[[str], dict | None] | None = None) -> Translation:
    """A Responses request in chat form.

    `history`: the items a `previous_response_id` continues (every earlier input item, additional_tools and
    developer messages included, and the earlier answers; see `history_items`); `chat_history`: chat messages
    stored by an older gateway, put first; `open_sealed(kind, token)`: the gateway's sealer (seal.Sealer.open);
    `lookup(item_id)`: a stored item for an `item_reference`; `notes` collects what was dropped or changed."""
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    notes = notes if notes is not None else []
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
    compaction = bool(items) and isinstance(items[-1], dict) and items[-1].get("type") == "compaction_trigger"
    if compaction:
        items.pop()
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    include = body.get("include") if isinstance(body.get("include"), list) else []
    state = _State(ToolSet(), _Conversation(), notes, open_sealed, lookup, True, effort)
    state.conv.messages += [m for m in chat_history or [] if isinstance(m, dict)]
    state.tools.add_all(body.get("tools"))
    for i, item in enumerate(history or []):  # the gateway's own record: its reasoning always goes back
        state.item(item, f"previous_response[{i}]")
    state.want_reasoning = INCLUDE_REASONING in include
    for i, item in enumerate(items):
        state.item(item, f"input[{i}]")
    state.conv.flush_images()
    if state.tools.dropped:
        _note(notes, "dropped tools Qwen cannot run: " + ", ".join(sorted(set(state.tools.dropped))))
    conversation = state.conv.messages
    messages: list[dict] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages += conversation
    if not messages:
        raise GatewayError(400, "'input' must contain at least one message.", param="input", code="invalid_value")
    effort = state.effort
    record = [*(history or []), *state.resolved]
    if compaction:
        chat = compaction_chat(body, messages)
        return Translation(chat, {}, record, compaction=True, effort=effort)
    chat: dict = {"model": body.get("model") or "", "messages": messages, "stream": bool(body.get("stream"))}
    if state.tools.chat:
        chat["tools"] = state.tools.chat
        choice = body.get("tool_choice")
        if choice in ("auto", "none", "required"):
            chat["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") in (FUNCTION, CUSTOM) and choice.get("name"):
            chat["tool_choice"] = {"type": FUNCTION, "function": {
                "name": qualified(choice.get("namespace"), str(choice["name"]))}}
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    for src, dst in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                     ("user", "user"), ("prompt_cache_key", "prompt_cache_key")):  # the key names the session
        if body.get(src) is not None:
            chat[dst] = body[src]
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    return Translation(chat, dict(state.tools.refs), record, effort=effort)


@dataclass
class _State:
    tools: ToolSet
    conv: _Conversation
    notes: list[str]
    open_sealed: Callable[[str, object], dict | None] | None
    lookup: Callable[[str], dict | None] | None
    want_reasoning: bool
    effort: object
    search_ids: list[str] = field(default_factory=list)  # tool_search calls without a call_id, in order
    resolved: list[dict] = field(default_factory=list)  # this request's items, references resolved

    def item(self, item: object, where: str, referenced: bool = False) -> None:
        if not isinstance(item, dict):
            raise GatewayError(400, f"{where} must be an object.", param=where, code="invalid_type")
        kind = item.get("type", "message")
        if kind is None and "role" not in item and "id" in item:
            kind = "item_reference"  # ItemReferenceParam's type may be null
        handler = getattr(self, f"_{kind}", None) if isinstance(kind, str) else None
        if handler is None:
            if kind in _DROPPED_ITEMS or (isinstance(kind, str) and kind.startswith("mcp_")):
                if kind == "mcp_call":
                    return self._mcp_call(item, where)
                _note(self.notes, f"dropped input items Qwen cannot use: {kind}")
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
            _note(self.notes, "internal_chat_message_metadata_passthrough ignored (client bookkeeping)")
        self.conv.add({"role": "system" if role == "developer" else role,
                       "content": _content(item["content"], where, self.notes)})

    # -- tool calls and their outputs
    def _function_call(self, item: dict, where: str) -> None:
        self.conv.call(_call_id(item), qualified(item.get("namespace"), str(item.get("name") or "")),
                       _args(item.get("arguments")))

    def _custom_tool_call(self, item: dict, where: str) -> None:
        text = item.get("input") if isinstance(item.get("input"), str) else _args(item.get("input"))
        self.conv.call(_call_id(item), qualified(item.get("namespace"), str(item.get("name") or "")),
                       json.dumps({CUSTOM_PARAM: text}, ensure_ascii=False))

    def _function_call_output(self, item: dict, where: str) -> None:
        text, images = _output_text(item.get("output"), where, self.notes)
        self.conv.tool(str(item.get("call_id") or ""), text, images)

    _custom_tool_call_output = _function_call_output

    def _tool_search_call(self, item: dict, where: str) -> None:
        cid = item.get("call_id") or item.get("id") or new_id("call")
        if not item.get("call_id"):
            self.search_ids.append(str(cid))
        self.conv.call(str(cid), TOOL_SEARCH, _args(item.get("arguments")))

    def _tool_search_output(self, item: dict, where: str) -> None:
        loaded = item.get("tools") if isinstance(item.get("tools"), list) else []
        self.tools.add_all(loaded)
        cid = item.get("call_id") or (self.search_ids.pop(0) if self.search_ids else None)
        names = [str(t.get("name")) for t in loaded if isinstance(t, dict) and t.get("name")]
        if cid and self._has_call(str(cid)):
            self.conv.tool(str(cid), "Tools now available: " + (", ".join(names) or "none found") + ".", [])

    def _has_call(self, call_id: str) -> bool:
        return any(c.get("id") == call_id for m in self.conv.messages if m["role"] == "assistant"
                   for c in m.get("tool_calls") or [])

    def _shell_call(self, item: dict, where: str) -> None:
        self.conv.call(_call_id(item), "shell", _args(item.get("action")))

    def _shell_call_output(self, item: dict, where: str) -> None:
        self.conv.tool(str(item.get("call_id") or ""), _shell_output_text(item.get("output")), [])

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
            _note(self.notes, f"configuration_update applied: reasoning effort {effort}")
        else:
            _note(self.notes, "configuration_update without a reasoning effort ignored")

    def _item_reference(self, item: dict, where: str) -> None:
        ref = item.get("id")
        found = self.lookup(ref) if self.lookup is not None and isinstance(ref, str) else None
        if found is None:
            _note(self.notes, f"item_reference {ref!s:.60} dropped: no stored item with that id")
            return
        self.item(found, where, referenced=True)

    # -- sealed content
    def _reasoning(self, item: dict, where: str) -> None:
        token = item.get("encrypted_content")
        payload = self.open_sealed("reasoning", token) if self.open_sealed and token else None
        if payload is not None and self.want_reasoning and isinstance(payload.get("text"), str):
            self.conv.reasoning = (self.conv.reasoning + "\n" if self.conv.reasoning else "") + payload["text"]
        elif payload is not None:
            _note(self.notes, "reasoning items dropped: include did not ask for reasoning.encrypted_content")
        elif token:
            _note(self.notes, "reasoning items the gateway did not seal dropped")
        else:
            _note(self.notes, "reasoning summaries dropped (no sealed content to give back to Qwen)")

    def _compaction(self, item: dict, where: str) -> None:
        payload = self.open_sealed("compaction", item.get("encrypted_content")) if self.open_sealed else None
        if payload is None or not isinstance(payload.get("summary"), str):
            _note(self.notes, "compaction items the gateway did not seal dropped")
            return
        self.conv.add({"role": "user", "content": SUMMARY_PREFIX + payload["summary"]})

    _compaction_summary = _compaction

    def _compaction_trigger(self, item: dict, where: str) -> None:
        _note(self.notes, "compaction_trigger ignored: only a trailing one compacts")


# ---- compaction ------------------------------------------------------------------------------------------------


# What of a long piece the summariser reads (head, tail): the summarisation call must fit the context that is
# being compacted, and command outputs and file dumps are what fills it. User messages are kept whole.
TRANSCRIPT_CUTS = {"tool": (2000, 1000), "assistant": (4000, 2000), "arguments": (1500, 500)}


def _cut(text: str, kind: str) -> str:
    head, tail = TRANSCRIPT_CUTS[kind]
    if len(text) <= head + tail + 200:
        return text
    return f"{text[:head]}\n[… {len(text) - head - tail:,} characters left out …]\n{text[-tail:]}"


def transcript(messages: list[dict]) -> str:
    """The conversation as plain text for the summarisation call (no tool-call structure to break): user
    messages whole, long tool results, answers and arguments cut to their beginning and end; system and
    developer messages left out (the client keeps sending them after a compaction)."""
    lines = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") if p.get("type") == "text" else "[image]" for p in content
                                if isinstance(p, dict))
        text = content if isinstance(content, str) else ""
        if role == "tool":
            lines.append(f"[tool result {m.get('tool_call_id', '')}]\n{_cut(text, 'tool')}")
            continue
        if text:
            lines.append(f"[{role}]\n{_cut(text, 'assistant') if role == 'assistant' else text}")
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            lines.append(f"[{role} called {fn.get('name')} ({c.get('id')})]\n"
                         f"{_cut(str(fn.get('arguments', '')), 'arguments')}")
    return "\n\n".join(lines)


def compaction_chat(body: dict, messages: list[dict]) -> dict:
    """The one upstream call that summarises the conversation (no tools: Qwen writes text)."""
    chat = {"model": body.get("model") or "", "stream": bool(body.get("stream")), "messages": [
        {"role": "system", "content": COMPACTION_PROMPT},
        {"role": "user", "content": "The conversation to summarise:\n\n" + transcript(messages)
                                    + "\n\nWrite the handoff summary now."}]}
    if body.get("prompt_cache_key") is not None:
        chat["prompt_cache_key"] = body["prompt_cache_key"]
    return chat


def compaction_item(summary: str, seal: Callable[[str, dict], str], model: str = "") -> dict:
    return {"type": "compaction", "id": new_id("cmp"),
            "encrypted_content": seal("compaction", {"summary": summary, "model": model})}


# ---- the way out -------------------------------------------------------------------------------------------------


def usage_to_responses(usage: dict | None) -> dict | None:
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    reasoning = int(((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(usage.get("total_tokens") or prompt + completion)}


def response_object(request: dict, *, response_id: str, created_at: int, status: str, output: list[dict],
                    usage: dict | None = None, error: dict | None = None, incomplete: str | None = None) -> dict:
    """A Response with every field OpenAI's schema requires, echoing the request."""
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions") if isinstance(request.get("instructions"), str) else None,
        "max_output_tokens": request.get("max_output_tokens"), "model": request.get("model") or "",
        "output": output, "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") if isinstance(request.get("reasoning"), dict) else None,
        "store": request.get("store", True) is not False,
        "temperature": request.get("temperature"), "top_p": request.get("top_p"),
        "text": request.get("text") if isinstance(request.get("text"), dict) else {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice") if request.get("tool_choice") in ("auto", "none", "required")
        else "auto",
        "tools": echo_tools(request),
        "truncation": "disabled",
        **({"usage": usage_to_responses(usage)} if usage else {}),
        "metadata": request.get("metadata") if isinstance(request.get("metadata"), dict) else {},
        **({"user": request["user"]} if isinstance(request.get("user"), str) else {}),
    }


def reasoning_item(item_id: str, text: str, encrypted: str | None = None) -> dict:
    item = {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}]}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def message_item(item_id: str, text: str, status: str = "completed") -> dict:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed",
              namespace: str | None = None) -> dict:
    item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}
    if namespace:
        item["namespace"] = namespace
    return item


def custom_call_item(item_id: str, call_id: str, name: str, text: str, status: str = "completed",
                     namespace: str | None = None) -> dict:
    item = {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": name, "input": text,
            "status": status}
    if namespace:
        item["namespace"] = namespace
    return item


def search_call_item(item_id: str, call_id: str, arguments: str, status: str = "completed") -> dict:
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
              status: str = "completed") -> dict:
    """The client's item for a call Qwen made to the function `qname`."""
    if ref is None:
        return call_item(item_id, call_id, qname, arguments, status)
    if ref.kind == CUSTOM:
        return custom_call_item(item_id, call_id, ref.name, custom_input(arguments), status, ref.namespace)
    if ref.kind == TOOL_SEARCH:
        return search_call_item(item_id, call_id, arguments, status)
    return call_item(item_id, call_id, ref.name, arguments, status, ref.namespace)


def wants_sealed_reasoning(request: dict) -> bool:
    include = request.get("include")
    return isinstance(include, list) and INCLUDE_REASONING in include


def chat_to_response(chat: dict, request: dict, *, response_id: str, created_at: int,
                     tools: dict[str, ToolRef] | None = None, seal: Callable[[str, dict], str] | None = None,
                     compaction: bool = False) -> dict:
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict] = []
    if compaction:
        summary = message.get("content") if isinstance(message.get("content"), str) else ""
        if not summary.strip() or seal is None:
            raise GatewayError(502, "Qwen returned no summary to compact the conversation with.",
                               code="compaction_failed")
        output.append(compaction_item(summary.strip(), seal, str(request.get("model") or "")))
        return response_object(request, response_id=response_id, created_at=created_at, status="completed",
                               output=output, usage=chat.get("usage"))
    if message.get("reasoning_content"):
        text = message["reasoning_content"]
        sealed = seal("reasoning", {"text": text}) if seal and wants_sealed_reasoning(request) else None
        output.append(reasoning_item(new_id("rs"), text, sealed))
    if message.get("content"):
        output.append(message_item(new_id("msg"), message["content"]))
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function") or {}
        name = fn.get("name") or ""
        output.append(tool_item((tools or {}).get(name), name, new_id("fc"), tc.get("id") or new_id("call"),
                                fn.get("arguments") or ""))
    incomplete = incomplete_reason(choice.get("finish_reason"))
    return response_object(request, response_id=response_id, created_at=created_at,
                           status="incomplete" if incomplete else "completed", output=output, usage=chat.get("usage"),
                           incomplete=incomplete)


def incomplete_reason(finish_reason: object) -> str | None:
    """A chat finish_reason that leaves a Response incomplete, as the Responses API names it."""
    return {"length": "max_output_tokens", "content_filter": "content_filter"}.get(finish_reason)  # type: ignore


def history_items(items: list[dict], response: dict, seal: Callable[[str, dict], str] | None = None,
                  summary: str | None = None) -> list[dict]:
    """What a later `previous_response_id` continues from: every item so far (`Translation.items`: earlier
    turns, every input item — developer messages and additional_tools included — references resolved) and
    this answer's output, its reasoning sealed so that it goes back to Qwen. A compaction answer (`summary`)
    keeps the user's (and system and developer) messages and the summary instead of the conversation."""
    if summary is not None:  # the summary leaves out system and developer messages: they are kept
        kept = [i for i in items if i.get("type", "message") == "message" and not _is_summary(i)
                and i.get("role") in ("user", "system", "developer")]
        return kept + [{"type": "message", "role": "user", "content": SUMMARY_PREFIX + summary}]
    out = [{k: v for k, v in i.items() if k != "internal_chat_message_metadata_passthrough"} for i in items]
    for item in response.get("output") or []:
        if item.get("type") == "reasoning" and not item.get("encrypted_content") and seal is not None:
            text = "".join(p.get("text", "") for p in item.get("summary") or [])
            item = {**item, "encrypted_content": seal("reasoning", {"text": text})} if text else item
        out.append(item)
    return out


def _is_summary(item: dict) -> bool:
    content = item.get("content")
    return isinstance(content, str) and content.startswith(SUMMARY_PREFIX)


def input_items(body: dict) -> list[dict]:
    """The request's input as stored items (each with an id), for GET /v1/responses/{id}/input_items."""
    raw = body.get("input")
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}] \
        if isinstance(raw, str) else [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []
    out = []
    for item in items:
        item = {k: v for k, v in item.items() if k != "internal_chat_message_metadata_passthrough"}
        kind = item.setdefault("type", "message")
        if kind == "message" and isinstance(item.get("content"), str):
            item["content"] = [{"type": "input_text", "text": item["content"]}]
        if kind == "message":
            item.setdefault("status", "completed")
        if not item.get("id"):
            prefixes = {"message": "msg", "function_call_output": "fco", "custom_tool_call_output": "ctco"}
            item["id"] = new_id(prefixes.get(kind, "item"))
        out.append(item)
    return out

