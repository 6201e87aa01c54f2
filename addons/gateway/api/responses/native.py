"""The Responses request as Model Studio's own Responses API takes it (`qwen_responses_native`: the pass-through
pair of components.pairing), built from the translation: what the model sees is what the translated request
would show it (the gateway's tools, sealed reasoning, item references and stored history all resolved by the
translation first), said in Model Studio's Responses items.

A turn that continues a conversation whose previous answer came from Model Studio's API on the same account,
stored there (`chain`, kept with the gateway's stored response), sends only its new items with Model Studio's
own `previous_response_id`: its session cache then reads the conversation instead of the whole history being
billed again. A conversation's first turn goes there whole (`opening`: it starts the chain). Any other turn
(a conversation Qwen does not hold: another account, an older chain, a client that resends its whole history)
is translated: the session cache would read nothing of it, and the chat path's cache markers do.

`own_body` says None for a request that needs what only the translation serves: a background run, a request
not stored (`store: false`, as Codex sends every turn: Qwen keeps nothing to continue, and its implicit cache
costs more than the translation's explicit cache markers: docs/performance.md), a WebSocket turn, a compaction, web search on a model that searches, structured output, a non-text part (images, files),
values Model Studio's Responses API refuses that chat takes (tool_choice "required" with other than one tool,
an output cap under 16, temperature 2). Such a request is translated, as without the option.
"""

from __future__ import annotations

from typing import Any

from ...models import catalogue

# chat fields of the translation that only the translated request serves
_TRANSLATED_ONLY = ("response_format",)
MIN_OUTPUT = 16  # Model Studio's Responses API: max_output_tokens >= 16
# Model Studio keeps a response 7 days ("the current response id is valid for 7 days"): continued there for 6
CHAIN_S = 6 * 86400


def chain_of(chain: object, *, account: str, history_messages: int, now: float) -> str | None:
    """Model Studio's id of the previous answer when this turn can continue it there: it came from the same
    account, within the days Model Studio keeps a response, and holds the conversation's `history_messages`
    chat messages (the translation's count of what the earlier turns made); else None."""
    if not isinstance(chain, dict) or chain.get("account") != account or not isinstance(chain.get("id"), str):
        return None
    at = chain.get("at")
    if not isinstance(at, (int, float)) or not 0 <= now - at < CHAIN_S:
        return None
    return chain["id"] if history_messages > 0 and chain.get("messages") == history_messages else None


def translated_only(chat: dict, body: dict, *, model: str = "") -> str | None:
    """What the request needs that only the translated path serves (see the module's docstring), or None.
    Web search only offered (a Responses `web_search` tool) to a `model` that does not search is dropped, as
    the translated path drops it; else it is the translation's."""
    if body.get("background") is True:
        return "a background run"
    if body.get("store") is False:  # Qwen keeps nothing to continue: its implicit cache would cost more
        return "store false (no session cache to continue; the chat path's cache markers cost less)"
    search = chat.get("web_search_options")
    if search is not None and not (isinstance(search, dict) and search.get("optional") and not searches(model)):
        return "web search"
    found = next((k for k in _TRANSLATED_ONLY if k in chat), None)
    if found is not None:
        return found
    tools = chat.get("tools") or []
    if chat.get("tool_choice") == "required" and len(tools) != 1:
        return "tool_choice required with other than one tool"
    cap, t, p = chat.get("max_completion_tokens"), chat.get("temperature"), chat.get("top_p")
    if isinstance(cap, int) and cap < MIN_OUTPUT or isinstance(t, (int, float)) and not 0 <= t < 2 or \
            isinstance(p, (int, float)) and not 0 < p <= 1:
        return "a value Model Studio's Responses API refuses"
    if any(isinstance(m.get("content"), list) and any(not isinstance(part, dict) or part.get("type") != "text"
                                                      for part in m["content"]) for m in chat["messages"]):
        return "a part other than text"
    return None


def opening(chat: dict, history_messages: int) -> bool:
    """A conversation's first turn (no earlier turn, no answer or tool output in its input): the one turn
    besides a continuation that Qwen's session cache serves well — it starts what later turns continue. A
    client that resends its whole conversation instead of continuing it would have every later turn written to
    the session cache again and none read (Model Studio's page: the cache is read by a continuation)."""
    return history_messages == 0 and not any(m.get("role") in ("assistant", "tool") for m in chat["messages"])


def searches(model: str) -> bool:
    row = catalogue.find(model)
    return row is not None and row.search


def own_body(chat: dict, body: dict, *, previous: str | None, history_messages: int) -> dict:
    """Model Studio's Responses body for the translated `chat` (`body`: the client's request): every message,
    or, continuing `previous` (Model Studio's id), those after the conversation's first `history_messages`."""
    messages = list(chat["messages"])
    out: dict[str, Any] = {"model": chat.get("model") or ""}
    if isinstance(body.get("instructions"), str) and body["instructions"] and messages and \
            messages[0].get("role") == "system":
        out["instructions"] = text(messages.pop(0).get("content"))
    if previous is not None and history_messages < len(messages) and messages[history_messages].get(
            "role") != "assistant":
        out["previous_response_id"] = previous
        messages = messages[history_messages:]
    out["input"] = [item for m in messages for item in items(m)]
    out["stream"] = chat.get("stream") is True
    out["store"] = body.get("store") is not False
    tools = [_tool(t) for t in chat.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if tools:
        out["tools"] = tools
        choice = chat.get("tool_choice")
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            out["tool_choice"] = {"type": "function", "name": choice["function"].get("name")}
        elif choice in ("auto", "none", "required"):
            out["tool_choice"] = choice
        if isinstance(chat.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = chat["parallel_tool_calls"]
    for src, dst in (("max_completion_tokens", "max_output_tokens"), ("temperature", "temperature"),
                     ("top_p", "top_p"), ("enable_thinking", "enable_thinking")):
        if chat.get(src) is not None:
            out[dst] = chat[src]
    if isinstance(chat.get("reasoning_effort"), str):
        out["reasoning"] = {"effort": chat["reasoning_effort"]}
    if chat.get("verbosity") is not None:  # the upstream says it as the translation would: a system hint
        out["verbosity"] = chat["verbosity"]
    return out


def text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def items(m: dict) -> list[dict]:
    """One chat message as Responses input items: a message, an assistant's function calls, a tool's output."""
    role = m.get("role")
    if role == "tool":
        return [{"type": "function_call_output", "call_id": m.get("tool_call_id"), "output": text(m.get("content"))}]
    if role == "assistant":
        out: list[dict] = []
        said = text(m.get("content"))
        if said:
            out.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": said}]})
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            out.append({"type": "function_call", "call_id": call.get("id"), "name": fn.get("name"),
                        "arguments": fn.get("arguments") or ""})
        return out
    content = m.get("content")
    parts = content if isinstance(content, str) else [{"type": "input_text", "text": text([p])} for p in content or []]
    return [{"type": "message", "role": "system" if role in ("system", "developer") else "user", "content": parts}]


def _tool(t: dict) -> dict:
    fn = t["function"]
    return {"type": "function", **{k: fn[k] for k in ("name", "description", "parameters", "strict") if k in fn}}


def held_messages(chat: dict, body: dict) -> int:
    """The conversation's chat messages Model Studio holds after this turn's answer (instructions apart): what
    a continuation's translation must count before its new items (`chain_of`)."""
    instructions = isinstance(body.get("instructions"), str) and bool(body["instructions"])
    return len(chat["messages"]) - (1 if instructions else 0) + 1
