"""Web search in the client dialects: their search tools as the chat form's `web_search_options`, and the answer's
sources (`search_info`, and `url_citation` annotations on the chat message; interfaces.WebSearchOptions) in each
client's citation shape. Pure functions.

A search is either demanded — chat's `web_search_options`, a Responses `tool_choice` forcing the web_search
tool, Anthropic's `tool_choice` naming its web_search tool — and refused (400) by an upstream that cannot
search, or only offered — a Responses `web_search` tool among others (Codex sends one on every request), an
Anthropic web_search tool the model may use — and then dropped with a note where search is impossible.
"""

from __future__ import annotations

import base64
import json
from typing import Literal, NotRequired, TypedDict

from .. import ids
from ..errors import GatewayError
from ..exchange import note

RESPONSES_TOOLS = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")
INCLUDE_SOURCES = "web_search_call.action.sources"
_SIZES = ("low", "medium", "high")
_CITED_TEXT = 150  # Anthropic's cited_text is at most 150 characters


class SearchAction(TypedDict):
    type: Literal["search"]
    sources: NotRequired[list[dict]]


class WebSearchCallItem(TypedDict):
    type: Literal["web_search_call"]
    id: str
    status: Literal["in_progress", "searching", "completed", "failed"]
    action: SearchAction


# ---- requests ----------------------------------------------------------------------------------------------


def _context_size(value: object, param: str) -> str | None:
    if value is None:
        return None
    if value not in _SIZES:
        raise GatewayError(400, f"'{param}' must be one of low, medium, high.", param=param, code="invalid_value")
    return str(value)


def chat_request(body: dict) -> dict:
    """Chat's own `web_search_options` checked; only OpenAI's fields kept, so a chat client's search is always
    a demand named `web_search_options`."""
    opts = body.get("web_search_options")
    if opts is None:
        return body
    if not isinstance(opts, dict):
        raise GatewayError(400, "'web_search_options' must be an object.", param="web_search_options",
                           code="invalid_type")
    _context_size(opts.get("search_context_size"), "web_search_options.search_context_size")
    return {**body, "web_search_options": {k: opts[k] for k in ("search_context_size", "user_location") if k in opts}}


def is_responses_tool(tool: object) -> bool:
    return isinstance(tool, dict) and tool.get("type") in RESPONSES_TOOLS


def responses_options(body: dict, tool: dict | None, has_functions: bool, notes: list[str]) -> dict | None:
    """The chat form's `web_search_options` for a Responses request's web_search tool (None: no search). Forced by
    `tool_choice: {"type": "web_search…"}`, or by "required" when it is the only tool; else only offered."""
    choice = body.get("tool_choice")
    named = choice.get("type") if isinstance(choice, dict) and choice.get("type") in RESPONSES_TOOLS else None
    if tool is None:
        if named:
            raise GatewayError(400, f"Tool choice '{named}' not found in 'tools' parameter.",
                               param="tool_choice", code="invalid_value")
        return None
    forced = bool(named) or (choice == "required" and not has_functions)
    opts: dict = {"optional": not forced, "param": "tool_choice" if forced else "tools"}
    if forced:
        opts["forced"] = True
    size = _context_size(tool.get("search_context_size"), "tools.search_context_size")
    if size:
        opts["search_context_size"] = size
    if tool.get("user_location"):
        opts["user_location"] = tool["user_location"]
    if isinstance(tool.get("filters"), dict) and tool["filters"].get("allowed_domains"):
        note(notes, "web_search filters.allowed_domains: accepted, Qwen's search takes no domain filter")
    return opts


def is_anthropic_tool(tool: object) -> bool:
    """Anthropic's server web search tool (`web_search_20250305` and later versions)."""
    return isinstance(tool, dict) and str(tool.get("type") or "").startswith("web_search_")


def messages_search(body: dict, chat: dict, notes: list[str]) -> None:
    """An Anthropic web_search tool as the chat request's `web_search_options` (in place): forced when
    `tool_choice` names it (or is "any" with no other tool), else offered to the model."""
    tools = [t for t in body.get("tools") or [] if is_anthropic_tool(t)]
    if not tools:
        return
    tool = tools[0]
    raw = body.get("tool_choice")
    choice: dict = raw if isinstance(raw, dict) else {}
    named = choice.get("type") == "tool" and choice.get("name") == tool.get("name")
    forced = named or (choice.get("type") == "any" and not chat.get("tools"))
    if named or forced:
        chat.pop("tool_choice", None)  # the search is Qwen's own: no function to name
    chat["web_search_options"] = {"optional": not forced, "param": "tool_choice" if forced else "tools",
                                  **({"forced": True} if forced else {})}
    if tool.get("user_location"):
        chat["web_search_options"]["user_location"] = tool["user_location"]
    ignored = [k for k in ("max_uses", "allowed_domains", "blocked_domains") if tool.get(k)]
    if ignored:
        note(notes, f"web_search {', '.join(ignored)}: accepted, Qwen's search has no such limit")


# ---- answers -----------------------------------------------------------------------------------------------


def searched(search_info: object) -> bool:
    """Whether the answer came with search results (the model did search)."""
    return isinstance(search_info, dict) and bool(search_info.get("search_results"))


def search_call_item(search_info: object, request: dict,
                     status: Literal["in_progress", "completed"] = "completed") -> WebSearchCallItem | None:
    """The Responses `web_search_call` item for an answer that searched; its sources only when `include` asks
    (as OpenAI gives them). Qwen does not say what it searched for: no query."""
    if not searched(search_info):
        return None
    action: SearchAction = {"type": "search"}
    raw = request.get("include")
    include: list = raw if isinstance(raw, list) else []
    if INCLUDE_SOURCES in include:
        assert isinstance(search_info, dict)
        action["sources"] = [{"type": "url", "url": r["url"]} for r in search_info["search_results"]
                             if isinstance(r, dict) and isinstance(r.get("url"), str)]
    return {"type": "web_search_call", "id": "ws_" + ids.hex_id(24), "status": status, "action": action}


def responses_annotations(annotations: object) -> list[dict]:
    """Chat's url_citation annotations in the Responses shape (flat)."""
    out = []
    for a in annotations if isinstance(annotations, list) else []:
        cite = a.get("url_citation") if isinstance(a, dict) and a.get("type") == "url_citation" else None
        if isinstance(cite, dict):
            out.append({"type": "url_citation", "start_index": cite.get("start_index", 0),
                        "end_index": cite.get("end_index", 0), "url": cite.get("url", ""),
                        "title": cite.get("title", "")})
    return out


def anthropic_citations(text: str, annotations: object) -> list[dict]:
    """Chat's url_citation annotations as Anthropic `web_search_result_location` citations of one text block.
    `cited_text` is the answer's own text the marker closes (Qwen does not quote its sources)."""
    out = []
    previous = 0
    for a in annotations if isinstance(annotations, list) else []:
        cite = a.get("url_citation") if isinstance(a, dict) else None
        if not isinstance(cite, dict):
            continue
        start = s if isinstance(s := cite.get("start_index"), int) else 0
        cited = text[previous:start].strip()[-_CITED_TEXT:]
        previous = e if isinstance(e := cite.get("end_index"), int) else start
        index = base64.urlsafe_b64encode(json.dumps([cite.get("url"), start]).encode()).decode()
        out.append({"type": "web_search_result_location", "url": cite.get("url", ""), "title": cite.get("title"),
                    "cited_text": cited, "encrypted_index": index})
    return out


def server_tool_use(search_info: object) -> dict | None:
    """Anthropic's usage.server_tool_use for an answer that searched (Qwen searches once per answer)."""
    return {"web_search_requests": 1, "web_fetch_requests": 0} if searched(search_info) else None
