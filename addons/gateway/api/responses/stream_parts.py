"""The pieces a Responses stream (stream.py) is made of: the text item being streamed, a chat tool call on its
way to being one, the SSE encoding of an event, and the code a failed Response's `error` carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ... import sse
from .shapes import MessageItem, ReasoningItem
from .stream_call import StreamedCall


def sse_event(payload: dict) -> bytes:
    return sse.encode(payload, event=payload["type"])


@dataclass(slots=True, eq=False)
class OpenText:
    """The reasoning or message being streamed."""

    kind: Literal["reasoning", "message"]
    item: ReasoningItem | MessageItem
    index: int = 0  # set by _open
    text: str = ""
    annotations: list[dict] = field(default_factory=list)  # a message's web search citations


@dataclass(slots=True, eq=False)
class ChatCall:
    """A chat tool call (by its index in the chunks): collected until its name is known, then streamed."""

    id: str
    name: str = ""
    args: str = ""  # arguments that came before the call was opened
    state: StreamedCall | None = None  # once opened


def error_code(error: dict) -> str:
    """The code a Response's `error` carries: OpenAI's for rate limits and context overflow (what clients such
    as Codex act on), else invalid_prompt for a refused request and server_error for the rest."""
    if error.get("code") in ("rate_limit_exceeded", "context_length_exceeded"):
        return str(error["code"])
    return "invalid_prompt" if error.get("type") == "invalid_request_error" else "server_error"
