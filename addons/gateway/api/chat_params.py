"""Chat-completions request fields Qwen has no equivalent for, in the chat form's terms: what has one is
translated (legacy `functions`, `allowed_tools`, `custom` tools), what has none is refused with OpenAI's
400 naming it, never dropped into an answer that pretends. Pure functions; the answer's way back (legacy
`function_call`, `custom` tool calls) is chat_answer.py's."""

from __future__ import annotations

from ..errors import GatewayError
from ..exchange import note
from .responses.tools import custom_function

LEGACY_ID = "call_fn_{}"  # the tool-call id a legacy function_call gets (its result names none)
_UNSUPPORTED_PARTS = ("input_audio", "file")


def unsupported(message: str, param: str, code: str = "unsupported_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def refuse_unsupported(body: dict) -> dict:
    """Audio in or out, predicted outputs, files and token biases: Qwen's chat models have none of them."""
    modalities = body.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        raise unsupported("Audio output is not supported: Qwen's chat models answer text only "
                          "(send modalities [\"text\"]).", "modalities")
    for key, what in (("audio", "Audio output"), ("prediction", "Predicted outputs")):
        if body.get(key) is not None:
            raise unsupported(f"{what} ('{key}') is not supported by Qwen's chat models.", key)
    if body.get("logit_bias"):
        raise unsupported("'logit_bias' is not supported by Qwen's chat models.", "logit_bias",
                          "unsupported_parameter")
    for i, m in enumerate(body.get("messages") or []):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue  # text: no parts to look at
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _UNSUPPORTED_PARTS:
                raise unsupported(f"'{kind}' content parts are not supported: Qwen's chat models read text and "
                                  "images.", f"messages[{i}].content[{j}].type")
    out = dict(body)
    out.pop("logit_bias", None)  # empty: nothing asked
    return out


# ---- legacy functions --------------------------------------------------------------------------------


def is_legacy(body: dict) -> bool:
    """The client speaks the deprecated `functions` API and reads only `function_call` answers."""
    return isinstance(body.get("functions"), list) and not body.get("tools")


def legacy_functions(body: dict, notes: list[str] | None = None) -> dict:
    """`functions`/`function_call` as `tools`/`tool_choice` (one call at a time, as the legacy API answers),
    and the conversation's legacy calls and results as tool calls and tool messages."""
    out = dict(body)
    if isinstance(body.get("functions"), list):
        if body.get("tools"):
            raise unsupported("Send either 'functions' or 'tools', not both.", "functions", "invalid_value")
        out["tools"] = [{"type": "function", "function": f} for f in body["functions"]]
        out["parallel_tool_calls"] = False
        choice = body.get("function_call")
        if isinstance(choice, dict):
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif choice in ("none", "auto"):
            out["tool_choice"] = choice
        note(notes, "legacy functions sent as tools (answered as function_call)")
    out.pop("functions", None)
    out.pop("function_call", None)
    if any(isinstance(m, dict) and (m.get("role") == "function" or m.get("function_call"))
           for m in body.get("messages") or []):
        out["messages"] = legacy_messages(body["messages"])
    return out


def legacy_messages(messages: list) -> list:
    """Assistant `function_call`s as tool calls with ids, `function` messages as the `tool` messages answering
    the latest call of that name."""
    out = []
    open_calls: dict[str, str] = {}  # function name -> the id of its latest call
    for i, m in enumerate(messages):
        if isinstance(m, dict) and isinstance(m.get("function_call"), dict) and not m.get("tool_calls"):
            fc = m["function_call"]
            call_id = LEGACY_ID.format(i)
            open_calls[str(fc.get("name"))] = call_id
            m = {k: v for k, v in m.items() if k != "function_call"}
            m["tool_calls"] = [{"id": call_id, "type": "function",
                                "function": {"name": fc.get("name"), "arguments": fc.get("arguments") or "{}"}}]
        elif isinstance(m, dict) and m.get("role") == "function":
            name = str(m.get("name"))
            m = {"role": "tool", "tool_call_id": open_calls.pop(name, LEGACY_ID.format(f"{i}_{name}")),
                 "content": m.get("content") or ""}
        out.append(m)
    return out


# ---- allowed_tools -------------------------------------------------------------------------------------


def _tool_name(tool: object) -> str | None:
    if not isinstance(tool, dict):
        return None
    inner = tool.get(str(tool.get("type")))
    name = inner.get("name") if isinstance(inner, dict) else tool.get("name")
    return name if isinstance(name, str) else None


def allowed_tools(body: dict, notes: list[str] | None = None) -> dict:
    """`tool_choice: {"type": "allowed_tools", …}`: only the listed tools are offered, its mode is the choice."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return body
    spec = c if isinstance(c := choice.get("allowed_tools"), dict) else {}
    mode = spec.get("mode")
    if mode not in ("auto", "required"):
        raise unsupported("tool_choice.allowed_tools.mode must be 'auto' or 'required'.",
                          "tool_choice.allowed_tools.mode", "invalid_value")
    names = {_tool_name(t) for t in spec.get("tools") or []}
    tools = [t for t in body.get("tools") or [] if _tool_name(t) in names]
    if not tools:
        raise unsupported("tool_choice.allowed_tools names none of the request's tools.",
                          "tool_choice.allowed_tools.tools", "invalid_value")
    note(notes, f"allowed_tools: {len(tools)} of {len(body.get('tools') or [])} tools offered, tool_choice {mode}")
    return {**body, "tools": tools, "tool_choice": mode}


# ---- custom (freeform) tools ------------------------------------------------------------------------------


def custom_names(body: dict) -> set[str]:
    """The names of the request's custom tools: their calls go back as `custom` tool calls."""
    return {n for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "custom"
            and (n := _tool_name(t))}


def custom_tools(body: dict, notes: list[str] | None = None) -> dict:
    """A custom tool offered as a function taking one string (`input`), its grammar in the description, as
    the Responses API offers Codex's; a choice naming one names that function."""
    if not custom_names(body):
        return body
    tools = []
    for i, t in enumerate(body["tools"]):
        if isinstance(t, dict) and t.get("type") == "custom":
            spec = c if isinstance(c := t.get("custom"), dict) else {}
            name = _tool_name(t)
            if not name:
                raise unsupported("A custom tool needs a name.", f"tools[{i}].custom.name", "invalid_value")
            fmt = f if isinstance(f := spec.get("format"), dict) else {}
            grammar = g if isinstance(g := fmt.get("grammar"), dict) else {}
            flat = {"description": spec.get("description"), "format": {
                "type": fmt.get("type"), "definition": grammar.get("definition"), "syntax": grammar.get("syntax")}}
            t = {"type": "function", "function": custom_function(flat, name)}
        tools.append(t)
    out = {**body, "tools": tools}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "custom":
        out["tool_choice"] = {"type": "function", "function": {"name": _tool_name(choice)}}
    note(notes, "custom tools offered as functions taking one string (answered as custom tool calls)")
    return out


def translate(body: dict, notes: list[str] | None = None) -> dict:
    """The client's chat body in the chat form's terms (validated first by chat.validate_chat_request)."""
    out = refuse_unsupported(body)
    out = legacy_functions(out, notes)
    out = custom_tools(out, notes)  # before allowed_tools: a choice may list custom tools by name
    return allowed_tools(out, notes)
