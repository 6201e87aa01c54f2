"""The OpenAI endpoints the gateway serves, each mapped onto Qwen chat completions or passed through."""

from __future__ import annotations

from collections.abc import Callable

from . import embeddings
from .completions import CompletionsStreamTranslator, chat_to_completion, completions_to_chat
from .errors import GatewayError
from .legacy_exchange import CHAT, Endpoint, Exchange
from .response_store import ResponseStore
from .responses import chat_to_response, dropped_tools, new_id, response_history, responses_to_chat
from .responses_stream import ResponsesStreamTranslator


def responses_endpoint(store: Callable[[], ResponseStore]) -> Endpoint:
    def to_chat(body: dict, ex: Exchange) -> dict:
        history = None
        prev = body.get("previous_response_id")
        if prev is not None:
            history = store().history(prev) if isinstance(prev, str) else None
            if history is None:
                raise GatewayError(400, f"Previous response with id '{prev}' not found.",
                                   param="previous_response_id", code="previous_response_not_found")
        dropped = dropped_tools(body)
        if dropped:
            ex.notes.append("dropped tools Qwen cannot run: " + ", ".join(sorted(set(dropped))))
        ex.extra["response_id"] = new_id("resp")
        return responses_to_chat(body, history)

    def from_chat(chat: dict, ex: Exchange) -> dict:
        return chat_to_response(chat, ex.client_body, response_id=ex.extra["response_id"], created_at=ex.created)

    def finished(ex: Exchange, response: dict | None) -> None:
        if response is not None and ex.client_body.get("store") is not False:
            store().put(response, response_history(ex.chat_body, response))

    return Endpoint(
        name="responses", upstream_suffix="chat/completions", to_chat=to_chat, from_chat=from_chat,
        stream_translator=lambda ex: ResponsesStreamTranslator(ex.client_body, response_id=ex.extra["response_id"],
                                                               created_at=ex.created),
        finished=finished)


COMPLETIONS = Endpoint(
    name="completions", upstream_suffix="chat/completions",
    to_chat=lambda body, ex: completions_to_chat(body),
    from_chat=lambda chat, ex: chat_to_completion(chat, ex.client_body),
    stream_translator=lambda ex: CompletionsStreamTranslator(ex.client_body))


def _embeddings_in(body: dict, ex: Exchange) -> dict:
    if not isinstance(body.get("input"), (str, list)) or not body.get("input"):
        raise GatewayError(400, "'input' is required: a string or an array of strings.", param="input",
                           code="missing_required_parameter")
    ex.stream = False
    return embeddings.to_upstream(body, notes=ex.notes)  # strings only (token ids decoded), floats asked


EMBEDDINGS = Endpoint(
    name="embeddings", upstream_suffix="embeddings", to_chat=_embeddings_in,
    from_chat=lambda answer, ex: embeddings.to_client(answer, ex.client_body, ex.requested_model or None),
    stream_translator=lambda ex: None, translated=False, needs_embeddings=True)


def endpoints(store: Callable[[], ResponseStore]) -> dict[str, Endpoint]:
    """Paths (after /v1) -> endpoint."""
    return {"/chat/completions": CHAT, "/responses": responses_endpoint(store), "/completions": COMPLETIONS,
            "/embeddings": EMBEDDINGS}
