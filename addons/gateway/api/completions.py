"""Legacy completions (`/v1/completions`) <-> chat completions: a prompt becomes one user message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import ids, request_surface, sse
from ..errors import GatewayError
from ..interfaces import ChatChunk, Endpoint
from . import request_schema

if TYPE_CHECKING:
    from ..exchange import Exchange


def completions_to_chat(body: dict, notes: list[str] | None = None) -> dict:
    request_schema.check(request_schema.COMPLETIONS, body)  # what OpenAI refuses, with the param it names
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list):
        raise GatewayError(400, "Qwen takes one text prompt per request (token arrays and prompt batches are not "
                                "supported).", param="prompt", code="unsupported_value")
    if not isinstance(prompt, str):
        raise GatewayError(400, "'prompt' is required and must be a string.", param="prompt",
                           code="missing_required_parameter" if prompt is None else "invalid_type")
    for field, bad in (("suffix", lambda v: v is not None), ("echo", lambda v: bool(v)),
                       ("logprobs", lambda v: v is not None), ("best_of", lambda v: v not in (None, 1))):
        if bad(body.get(field)):
            raise GatewayError(400, f"'{field}' is not supported by Qwen.", param=field, code="unsupported_value")
    request_surface.ignored("completions", body, notes)
    chat = {"model": body.get("model") or "", "messages": [{"role": "user", "content": prompt}]}
    return request_surface.carry("completions", body, chat)  # the output cap, sampling, stream: their chat names


def chat_to_completion(chat: dict, request: dict) -> dict:
    return {
        "id": "cmpl-" + ids.hex_id(), "object": "text_completion", "created": chat.get("created") or 0,
        "model": request.get("model") or chat.get("model") or "",
        "choices": [{"text": (c.get("message") or {}).get("content") or "", "index": c.get("index", i),
                     "logprobs": None, "finish_reason": c.get("finish_reason") or "stop"}
                    for i, c in enumerate(chat.get("choices") or [])],
        **({"usage": chat["usage"]} if isinstance(chat.get("usage"), dict) else {}),
    }


class CompletionsStreamTranslator:
    def __init__(self, request: dict) -> None:
        opts = request.get("stream_options")
        self.include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        self.model = request.get("model") or ""
        self.id = "cmpl-" + ids.hex_id()

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        """A normalised chunk as a `text_completion` chunk: its content as text; usage only if asked."""
        base = {"id": self.id, "object": "text_completion", "created": chunk.get("created") or 0, "model": self.model}
        usage = chunk.get("usage")
        if chunk.get("choices") == [] and isinstance(usage, dict):
            return [sse.encode({**base, "choices": [], "usage": usage})] if self.include_usage else []
        choices = []
        for c in chunk.get("choices") or []:
            text = c["delta"].get("content") or ""
            if text or c.get("finish_reason"):
                choices.append({"text": text, "index": c.get("index", 0), "logprobs": None,
                                "finish_reason": c.get("finish_reason")})
        return [sse.encode({**base, "choices": choices})] if choices else []

    def finish(self) -> list[bytes]:
        return [sse.DONE]

    def fail(self, error: dict) -> list[bytes]:
        return [sse.encode({"error": error}), sse.DONE]  # as chat's: the error, then the stream's end


COMPLETIONS: Endpoint[Exchange] = Endpoint(
    name="completions",
    to_chat=lambda body, ex: completions_to_chat(body, ex.notes),
    from_chat=lambda chat, ex: chat_to_completion(chat, ex.body or {}),
    stream_translator=lambda ex: CompletionsStreamTranslator(ex.body or {}))
