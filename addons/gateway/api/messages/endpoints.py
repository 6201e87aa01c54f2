"""/v1/messages (any query, `?beta=true` included) and POST /v1/messages/count_tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mitmproxy import http

from ... import dialects
from ...cache.diagnosis import Diagnoser
from ...settings.config import Config
from ...errors import GatewayError
from ...exchange import Exchange
from ...local_answers import json_response
from ...interfaces import Answered, Endpoint
from ...seal import Sealer
from ...tokens import estimate_request_tokens
from ..conversation import keyed
from . import diagnostics, passthrough
from .request import asks_thinking, to_chat
from .response import chat_to_message
from .stops import sequences
from .stream import MessagesStreamTranslator
from .thinking import Signer

DIALECT = dialects.ANTHROPIC.name


def messages_endpoint(sealer: Callable[[], Sealer], diagnoser: Diagnoser | None = None) -> Endpoint[Exchange]:
    """`diagnoser`: the cache doctor's, for the clients that ask for `diagnostics` (none: the field is noted)."""
    signer = Signer(sealer)

    def translate(body: dict, ex: Exchange) -> dict:
        chat = to_chat(body, ex.notes, signer.verify)
        ex.cache_ask = diagnostics.asked(body) if diagnoser is not None else None
        return chat

    def said(ex: Exchange) -> Callable[[str], dict | None] | None:
        """The stream's `message_start` diagnostics, given its message id (None: none asked)."""
        if diagnoser is None or ex.cache_ask is None:
            return None
        return lambda message_id: diagnostics.answer(diagnoser, ex, message_id)

    def then(ex: Exchange) -> Callable[[str, dict], dict | None] | None:
        """What the stream's `message_delta` adds, given Qwen's usage (None: none asked)."""
        if diagnoser is None or ex.cache_ask is None:
            return None
        return lambda message_id, usage: diagnostics.final(diagnoser, ex, message_id, usage)

    def with_diagnostics(message: dict, ex: Exchange, usage: dict | None) -> dict:
        if diagnoser is not None and ex.cache_ask is not None:
            message["diagnostics"] = diagnostics.answer(diagnoser, ex, str(message.get("id") or ""), usage)
        return message

    def from_chat(chat: dict, ex: Exchange) -> dict:
        message = dict(chat_to_message(chat, model=ex.answered_as, sign=signer.sign,
                                       thinking=asks_thinking(ex.body or {}), stops=sequences(ex.body or {})))
        return with_diagnostics(message, ex, chat.get("usage") if isinstance(chat.get("usage"), dict) else None)

    def from_own(message: dict, ex: Exchange) -> Answered:
        answer, usage = passthrough.own_answer(message, model=ex.answered_as,
                                               sign=signer.sign, explicit=passthrough.has_markers(ex.body),
                                               thinking=asks_thinking(ex.body or {}))
        return with_diagnostics(answer, ex, usage if isinstance(usage, dict) else None), usage

    def own_stream(ex: Exchange) -> tuple[passthrough.EventTap, passthrough.EventRelay]:
        return passthrough.EventTap(passthrough.has_markers(ex.body)), passthrough.EventRelay(
            model=ex.answered_as, sign=signer.sign, thinking=asks_thinking(ex.body or {}),
            diagnostics=said(ex), final=then(ex))

    return Endpoint(name="messages", to_chat=keyed(translate),
                    from_chat=from_chat, dialect=DIALECT,
                    stream_translator=lambda ex: MessagesStreamTranslator(
                        model=ex.answered_as, sign=signer.sign,
                        thinking=asks_thinking(ex.body or {}), stops=sequences(ex.body or {}),
                        input_tokens=lambda: ex.count.tokens, diagnostics=said(ex), final=then(ex)),
                    own_body=lambda body, ex: passthrough.own_body(body, ex.notes), from_own=from_own,
                    own_stream=own_stream, counted_first=True)


def count_tokens(sealer: Callable[[], Sealer]):
    """POST /v1/messages/count_tokens: the gateway's own estimate of the prompt, counted as the request line
    counts it (tokens.py; Qwen's tokenizer differs: an estimate for budgets)."""
    signer = Signer(sealer)

    async def answer(ex: Exchange, flow: http.HTTPFlow, config: Config) -> http.Response:
        body = dict(ex.body or {})
        body.setdefault("max_tokens", 1)  # count_tokens takes no max_tokens
        if not isinstance(body.get("model"), str):
            raise GatewayError(400, "model: Field required", param="model")
        chat = to_chat(body, ex.notes, signer.verify, counting=True)
        tokens, _method = await asyncio.to_thread(estimate_request_tokens, chat)
        return json_response(200, {"input_tokens": tokens})

    return answer
