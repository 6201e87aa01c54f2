"""Request fields the gateway either honours in its own way or refuses: never an answer that pretends.

Refused with OpenAI's 400 `unsupported_value` naming the field (`refuse_unhonoured`): `conversation` (the
gateway keeps no Conversations API objects), `prompt` (no stored prompt templates), `top_logprobs` above 0
and `include: ["message.output_text.logprobs"]` (Qwen's compatible mode gives no logprobs to give back).

Honoured here, on the chat request (`limit_tools`):
- `tool_choice: {"type": "allowed_tools", "mode": ..., "tools": [...]}`: only the listed tools are offered
  to Qwen; `mode` becomes the chat `tool_choice` (`auto` / `required`);
- `max_tool_calls`: 0 sends `tool_choice: "none"`, 1 turns parallel calls off; the answer keeps the first
  `max_tool_calls` calls Qwen made (`cap_calls`: whole answers and streams alike).
"""

from __future__ import annotations

from ...errors import GatewayError
from ...exchange import note
from .tools import CUSTOM, FUNCTION, NS_SEP, TOOL_SEARCH, qualified

LOGPROBS_INCLUDE = "message.output_text.logprobs"
_MODES = ("auto", "required")


def _unsupported(param: str, message: str) -> GatewayError:
    return GatewayError(400, message, param=param, code="unsupported_value")


def refuse_unhonoured(body: dict) -> None:
    """A 400 naming the first field the gateway cannot honour."""
    if body.get("conversation") is not None:
        raise _unsupported("conversation", "The gateway keeps no Conversations API objects: 'conversation' is "
                                           "not supported. Continue with previous_response_id instead.")
    if body.get("prompt") is not None:
        raise _unsupported("prompt", "The gateway has no stored prompt templates: 'prompt' is not supported. "
                                     "Send the instructions and input themselves.")
    top = body.get("top_logprobs")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top != 0):
        raise _unsupported("top_logprobs", "Qwen gives no log probabilities through the gateway: "
                                           "'top_logprobs' is not supported (0 or null only).")
    include = body.get("include")
    if isinstance(include, list) and LOGPROBS_INCLUDE in include:
        raise _unsupported("include", f"Qwen gives no log probabilities through the gateway: "
                                      f"include '{LOGPROBS_INCLUDE}' is not supported.")


def max_tool_calls(body: dict) -> int | None:
    """The request's `max_tool_calls` (None: no limit); a 400 when it is not a non-negative integer."""
    cap = body.get("max_tool_calls")
    if cap is None:
        return None
    if not isinstance(cap, int) or isinstance(cap, bool):
        raise GatewayError(400, "'max_tool_calls' must be an integer.", param="max_tool_calls", code="invalid_type")
    if cap < 0:
        raise GatewayError(400, "'max_tool_calls' must be 0 or more.", param="max_tool_calls", code="invalid_value")
    return cap


def _allowed_names(listed: list, offered: list[str]) -> set[str]:
    """The function names Qwen is offered that the allowed_tools list names."""
    names: set[str] = set()
    for t in listed:
        if not isinstance(t, dict):
            continue
        kind, name = t.get("type"), t.get("name")
        if kind in (FUNCTION, CUSTOM) and isinstance(name, str) and name:
            names.add(qualified(t.get("namespace"), name))
        elif kind == "namespace" and isinstance(name, str) and name:  # every member of a namespace
            names.update(n for n in offered if n.startswith(name + NS_SEP))
        elif kind == TOOL_SEARCH:
            names.add(TOOL_SEARCH)
    return names


def limit_tools(chat: dict, body: dict, notes: list[str]) -> None:
    """`allowed_tools` and `max_tool_calls` applied to the chat request (its `tools` already offered)."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        mode, listed = choice.get("mode"), choice.get("tools")
        if mode not in _MODES:
            raise GatewayError(400, "tool_choice.mode must be auto or required.", param="tool_choice.mode",
                               code="invalid_value")
        if not isinstance(listed, list):
            raise GatewayError(400, "tool_choice.tools must be an array.", param="tool_choice.tools",
                               code="invalid_type")
        tools = chat.get("tools") or []
        allowed = _allowed_names(listed, [t["function"]["name"] for t in tools])
        kept = [t for t in tools if t["function"]["name"] in allowed]
        if mode == "required" and not kept:
            raise GatewayError(400, "tool_choice.tools names none of the request's tools that Qwen can call.",
                               param="tool_choice.tools", code="invalid_value")
        if len(kept) < len(tools):
            note(notes, f"allowed_tools: {len(kept)} of {len(tools)} tools offered")
        chat.pop("tool_choice", None)
        if kept:
            chat["tools"], chat["tool_choice"] = kept, mode
        else:
            chat.pop("tools", None)
            chat.pop("parallel_tool_calls", None)
    cap = max_tool_calls(body)
    if cap is not None and chat.get("tools"):
        if cap == 0:
            chat["tool_choice"] = "none"
        elif cap == 1:
            chat["parallel_tool_calls"] = False


def cap_calls(body: dict) -> int | None:
    """How many tool calls the answer keeps (None: all)."""
    cap = body.get("max_tool_calls")
    return cap if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0 else None
