"""The chat request (the chat form) as the web API's two requests (qwen-web-protocol.md §1.5, §1.6): `chats/new`, then
one completion whose single user message carries the whole conversation, flattened (§1.8 strategy 1: a new chat
per request, stateless, safe under concurrency). System prompts and the tools' description come first, earlier
turns as a transcript, tool results folded back as text. Pure functions, no I/O."""

from __future__ import annotations

import time
import uuid

from collections.abc import Sequence

from ... import jsonio, request_surface
from ...errors import GatewayError
from ...models.catalogue import ROWS
from . import tools
from .live_models import pick

# The web catalogue's ids seen in 2026 (§1.10): the fallback and the offline answer when the live catalogue
# (live_models.py, GET /api/models) has not answered.
WEB_MODELS = tuple(m.id for m in ROWS.values() if m.web)  # the catalogue's `web` rows
# Knobs the web app has no field for (§1.6): dropped, each with a note on the exchange (the web column of the
# request surface).
DROPPED = tuple((k, f.what) for k, f in request_surface.fates("qwenweb").items() if f.kind == "drop")
_DROPPED_NAMES = frozenset(k for k, _ in DROPPED)
ROLES = {"user": "User", "assistant": "Assistant", "tool": "Tool result", "function": "Tool result"}
# Qwen Chat's WAF body-size rule (qwen-web-protocol.md §1.14, CNDOC U-17): a message of about 50,000 (Chinese)
# characters passed; one of 62,000 or more set off the anti-bot page at once, and a punished session stays
# punished a while (§1.13). Nothing is known in between, nor whether characters or bytes count: the gateway
# sends at most what was seen passing, counted both ways (those 50,000 characters as UTF-8).
MAX_MESSAGE_CHARS = 50_000
MAX_BODY_BYTES = 150_000
WAF_BLOCKS_CHARS = 62_000
_MAX_BYTES_PER_CHAR = 6  # a character in the JSON body: at most `\u001f`
_ENVELOPE = 4_096  # the body around the message, generously


def new_chat_body(model: str, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    return {"title": "New Chat", "models": [model], "chat_mode": "normal", "chat_type": "t2t",
            "timestamp": int(now * 1000), "project_id": ""}


def completion_body(chat: dict, *, model: str, notes: list[str], models: Sequence[str] = WEB_MODELS,
                    default: str | None = None, now: float | None = None) -> dict:
    """The completion body for a chat request, its `chat_id` still None (the chat is made just before).
    `models`: the catalogue (live, or the fallback); `default`: the account's default model."""
    now = time.time() if now is None else now
    refuse_unsupported(chat)
    if not _DROPPED_NAMES.isdisjoint(chat):
        notes += [f"{k}: {why}: dropped" for k, why in DROPPED if chat.get(k) is not None]
    if isinstance(chat.get("web_search_options"), dict):
        notes.append("web search: not available on Qwen Chat web accounts: the offered search tool was dropped")
    model = pick(model, models, default, notes)
    text = flatten(chat)
    thinking = _thinking(chat)
    node = {"id": None, "fid": str(uuid.uuid4()), "parentId": None, "childrenIds": [], "role": "user",
            "content": text, "user_action": "chat", "files": [], "timestamp": int(now), "models": [model],
            "model": "", "chat_type": "t2t", "sub_chat_type": "t2t", "extra": {"meta": {"subChatType": "t2t"}},
            "feature_config": {"thinking_enabled": thinking, "output_schema": "phase"}}
    return {"stream": True, "version": "2.1", "incremental_output": True, "chat_id": None, "chatId": None,
            "chat_mode": "normal", "model": model, "parent_id": None, "parentId": None, "messages": [node],
            "timestamp": int(now),
            "feature_config": {"thinking_enabled": thinking, "thinking_format": "detail", "output_schema": "phase",
                               "research_mode": "normal", "auto_search": False}}


def refuse_unsupported(chat: dict) -> None:
    """What a web account cannot give at all: several choices, log probabilities."""
    n = chat.get("n")
    if isinstance(n, int) and n > 1:
        raise GatewayError(400, "Qwen Chat web accounts answer one choice: n must be 1.", param="n",
                           code="unsupported_value")
    if chat.get("logprobs") or chat.get("top_logprobs"):
        raise GatewayError(400, "Qwen Chat web accounts do not return log probabilities.", param="logprobs",
                           code="unsupported_value")
    search = chat.get("web_search_options")
    if isinstance(search, dict) and not search.get("optional"):  # an offered search tool is dropped instead
        raise GatewayError(400, "Web search is not available on Qwen Chat web accounts.",
                           param=str(search.get("param") or "web_search_options"), code="unsupported_value")


def check_size(body: dict) -> None:
    """Refuse, before anything is sent, a completion whose message is over what Qwen Chat was seen taking."""
    text = body["messages"][0]["content"]
    chars = len(text) if isinstance(text, str) else 0
    if chars <= MAX_MESSAGE_CHARS and chars * _MAX_BYTES_PER_CHAR + _ENVELOPE <= MAX_BODY_BYTES:
        return  # the usual case: nothing serialised to know
    size = len(jsonio.dumps({k: v for k, v in body.items() if not k.startswith("_")}))
    if chars <= MAX_MESSAGE_CHARS and size <= MAX_BODY_BYTES:
        return
    raise GatewayError(
        400, f"prompt is too long for a Qwen Chat web account: the conversation goes to Qwen Chat as one message of "
             f"{chars:,} characters ({size:,} bytes), and Qwen Chat's firewall blocks a message of about "
             f"{WAF_BLOCKS_CHARS:,} characters and more (then the session itself, for a while). The gateway sends at "
             f"most {MAX_MESSAGE_CHARS:,} characters ({MAX_BODY_BYTES:,} bytes): shorten or compact the "
             "conversation, or serve long contexts with an API-key account.",
        type="invalid_request_error", code="context_length_exceeded")


def with_chat(body: dict, chat_id: str) -> dict:
    return {**body, "chat_id": chat_id, "chatId": chat_id}


def continued(body: dict, chat_id: str, parent_id: str, content: str) -> dict:
    """The body as a later turn of a pinned chat (§1.8 strategy 2): only the new message, its parent the chat's
    last response."""
    node = {**body["messages"][0], "content": content, "parentId": parent_id}
    return {**with_chat(body, chat_id), "parent_id": parent_id, "parentId": parent_id, "messages": [node]}


def follow_up_text(messages: list[dict], first: int) -> str:
    """The new messages of a pinned turn as one user message: a lone user message as it is, tool results (and
    what follows them) as lines; `first`: the index of the first one in the request (for errors)."""
    if len(messages) == 1 and messages[0].get("role") == "user":
        return _text(messages[0], first)
    return "\n\n".join(line for line in (_turn(m, first + i) for i, m in enumerate(messages)) if line)


def _thinking(chat: dict) -> bool:
    """Thinking unless the client turned it off (Qwen's `enable_thinking: false`, `reasoning_effort: none`)."""
    return chat.get("enable_thinking") is not False and chat.get("reasoning_effort") not in ("none", "minimal")


def flatten(chat: dict) -> str:
    """The conversation as one user message: the system block, then the turns; a lone user turn as it is."""
    messages = [m for m in chat.get("messages") or [] if isinstance(m, dict)]
    system = [_text(m, i) for i, m in enumerate(messages) if m.get("role") in ("system", "developer")]
    turns = [(i, m) for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")]
    tool_block = tools.describe(chat.get("tools") or [], chat.get("tool_choice"))
    head = [s for s in [*system, tool_block or ""] if s]
    if len(turns) == 1 and turns[0][1].get("role") == "user":
        body = _text(turns[0][1], turns[0][0])
    else:
        lines = [_turn(m, i) for i, m in turns]
        body = "Conversation so far:\n\n" + "\n\n".join(line for line in lines if line)
        body += "\n\nContinue as the Assistant: answer the last message."
    return "\n\n".join([*head, body]) if head else body


def _turn(m: dict, i: int) -> str:
    role = str(m.get("role"))
    text = _text(m, i)
    if role == "assistant":
        calls = [tools.call_text(str((c.get("function") or {}).get("name")), str((c.get("function") or {})
                                 .get("arguments") or "")) for c in m.get("tool_calls") or [] if isinstance(c, dict)]
        text = "\n".join(part for part in [text, *calls] if part)
    elif role in ("tool", "function"):
        ref = m.get("tool_call_id") or m.get("name")
        return f"{ROLES[role]}{f' ({ref})' if ref else ''}: {text}"
    return f"{ROLES.get(role, role.title())}: {text}" if text else ""


def _text(m: dict, i: int) -> str:
    content = m.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content if isinstance(content, list) else []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text", "output_text"):
            parts.append(str(part.get("text") or ""))
        elif kind is not None:
            raise GatewayError(400, f"Qwen Chat web accounts take text only: messages[{i}] has a {kind} part "
                                    "(images and files are not supported on web accounts).",
                               param=f"messages[{i}].content", code="unsupported_value")
    return "\n".join(parts)
