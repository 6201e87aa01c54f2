"""What the Responses endpoint keeps on an exchange between its steps (`Exchange.endpoint_state`): its own, typed
here, read by nothing outside api/responses/."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from ...exchange import Exchange
    from .request import Translation
    from .stream import ResponsesStreamTranslator


@dataclass(slots=True)
class ResponsesState:
    response_id: str = ""  # the Response's id, made when the request is translated
    tools: Any = None  # what Qwen is offered under each function name, for the way back
    items: list[dict] = field(default_factory=list)  # the request's input items, for the stored history
    compaction: bool = False  # a compaction request: one summarising upstream call
    summary: str | None = None  # a compaction's summary (whole answers; a stream's translator keeps its own)
    reasoning: dict[str, str] | None = None  # reasoning item id -> its text (whole answers)
    history: list[dict] | None = None  # a WebSocket's own recent response this turn continues from
    evicted: bool = False  # a WebSocket's failed continuation evicted the response this turn continues from
    translation: Translation | None = None  # the request translated off the event loop (a large one)
    socket: bool = False  # a turn of the Responses WebSocket
    warm_up: bool = False  # a WebSocket's `generate: false`: answered by the endpoint itself, nothing sent to Qwen
    chain: dict | None = None  # where Model Studio's own Responses API holds the continued conversation (native.py)
    history_messages: int = 0  # the chat messages the continued history made
    upstream_id: str | None = None  # Model Studio's id of this answer, when its own Responses API gave it
    source: Any = None  # the native stream's reader (native_answer.EventSource)
    diagnose: Any = None  # the Response's prompt_cache_diagnostics, when a comparison was asked (diagnostics.py)


def state(ex: Exchange) -> ResponsesState:
    """The exchange's Responses state, made at first use."""
    st = ex.endpoint_state
    if not isinstance(st, ResponsesState):
        st = ex.endpoint_state = ResponsesState()
    return st


def overflow_failure(ex: Exchange, code: str | None, message: str,
                     translator: Callable[[], ResponsesStreamTranslator]) -> list[bytes] | None:
    """A context overflow on a turn of a Response (HTTP stream or WebSocket): `response.failed` events, which Codex
    acts on (it compacts and sends again; the turn says the stream broken). None for any other error: the dialect's
    own."""
    if code != "context_length_exceeded" or not state(ex).response_id:
        return None
    return translator().fail({"message": message, "code": code, "type": "invalid_request_error"})
