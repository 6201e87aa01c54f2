"""/v1/chat/completions: the chat form itself, so the dialect only validates the request and encodes the
normalised chunks for the client (usage only when it asked for it). Pure functions and a stateless
encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import off_loop, sse
from ..errors import GatewayError
from ..interfaces import ChatChunk, Endpoint
from . import chat_answer, chat_params, function_schema, request_schema, websearch
from .conversation import keyed

if TYPE_CHECKING:
    from ..exchange import Exchange


def validate_chat_request(body: object) -> dict:
    """Refuse what OpenAI refuses (its published schema: request_schema.py; a function's `parameters` that is no
    JSON Schema: function_schema.py), with the param OpenAI would name."""
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    return function_schema.function_parameters(request_schema.check(request_schema.CHAT, body))


def wants_usage(body: dict) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and bool(opts.get("include_usage"))


class ChatStreamTranslator:
    """Normalised chunks -> the SSE bytes a /v1/chat/completions client gets (tool calls in the form its
    request offered the tools: chat_answer.py)."""

    def __init__(self, include_usage: bool, body: dict | None = None) -> None:
        self.include_usage = include_usage
        self.calls = chat_answer.CallRewriter(body or {})

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        rewritten = self.calls.rewrite(chunk)
        if rewritten is None:
            return []
        chunk = rewritten
        if chunk.get("choices") == [] and chunk.get("usage"):
            return [sse.encode(chunk)] if self.include_usage else []
        if self.include_usage:
            chunk = {**chunk, "usage": None}
        return [sse.encode(chunk)]

    def finish(self) -> list[bytes]:
        return [sse.DONE]

    def fail(self, error: dict) -> list[bytes]:
        # openai-python raises APIError(error.message) on a data event that carries "error"; [DONE] still ends the
        # stream, so that a client reading to the end sees it end (never a close that looks like a whole answer)
        return [sse.encode({"error": error}), sse.DONE]


CHAT: Endpoint[Exchange] = Endpoint(
    name="chat.completions",
    to_chat=keyed(lambda body, ex: websearch.chat_request(chat_params.translate(validate_chat_request(body), ex.notes))),
    from_chat=lambda answer, ex: chat_answer.to_client(answer, ex.body or {}),
    stream_translator=lambda ex: ChatStreamTranslator(wants_usage(ex.body or {}), ex.body or {}),
    off_loop=off_loop.many_messages)
