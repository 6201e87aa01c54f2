"""/v1/chat/completions: the pivot's own form, so the dialect only validates the request and encodes the
normalised chunks for the client (usage only when it asked for it). Pure functions and a stateless
encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import sse
from ..errors import GatewayError
from ..pivot import ChatChunk, Endpoint
from . import chat_answer, chat_params, websearch

if TYPE_CHECKING:
    from ..exchange import Exchange

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def validate_chat_request(body: object) -> dict:
    """Reject what no upstream could answer, with the param OpenAI would name."""
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_request_body")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "'messages' is required and must be a non-empty array.", param="messages",
                           code="missing_required_parameter" if messages is None else "invalid_type")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise GatewayError(400, f"messages[{i}] must be an object with a valid 'role'.",
                               param=f"messages[{i}].role", code="invalid_value")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise GatewayError(400, f"messages[{i}].content must be a string or an array of content parts.",
                               param=f"messages[{i}].content", code="invalid_type")
    if "model" in body and not isinstance(body["model"], str):
        raise GatewayError(400, "'model' must be a string.", param="model", code="invalid_type")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise GatewayError(400, "'stream' must be a boolean.", param="stream", code="invalid_type")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise GatewayError(400, "'tools' must be an array.", param="tools", code="invalid_type")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise GatewayError(400, "'n' must be a positive integer.", param="n", code="invalid_value")
    return body


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
        # openai-python raises APIError(error.message) on a data event that carries "error".
        return [sse.encode({"error": error})]


CHAT: Endpoint[Exchange] = Endpoint(
    name="chat.completions",
    to_chat=lambda body, ex: websearch.chat_request(chat_params.translate(validate_chat_request(body), ex.notes)),
    from_chat=lambda answer, ex: chat_answer.to_client(answer, ex.body or {}),
    stream_translator=lambda ex: ChatStreamTranslator(wants_usage(ex.body or {}), ex.body or {}))
