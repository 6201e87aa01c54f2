"""The OpenAI endpoints the gateway forwards to Qwen, each owning both directions of its translation.

An `Endpoint` turns the client's body into an OpenAI chat-completions body (`to_chat`, which validates
and notes what it changes), and Qwen's answer back into the client's format (`from_chat` for a whole
answer, `stream_translator` for a stream). `qwen_body` then shapes the chat body for the account that
serves it (model, qwen-code's fields). The translation modules (chat, responses, completions) are pure
functions; this module only wires them per endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .api import embeddings
from .api.chat import chat_to_qwen, validate_chat_request, wants_usage
from .api.chat_stream import ChatStreamTranslator
from .api.completions import CompletionsStreamTranslator, chat_to_completion, completions_to_chat
from .api.responses.request import chat_to_response, history_items, input_items, new_id, translate, usage_to_responses
from .api.responses.store import ResponseStore
from .api.responses.stream import ResponsesStreamTranslator, sse_event
from .auth.base import OAUTH, Capability, Credential
from .errors import GatewayError
from .exchange import Exchange
from .models import ModelMap
from .streaming import StreamTranslator


@dataclass(frozen=True)
class Endpoint:
    name: str
    upstream_suffix: str
    to_chat: Callable[[dict, Exchange], dict]  # client body -> chat body (validates; may add notes)
    from_chat: Callable[[dict, Exchange], dict]  # normalised chat answer -> client answer
    stream_translator: Callable[[Exchange], StreamTranslator | None]
    translated: bool = True  # False: the body goes upstream as is (embeddings)
    finished: Callable[[Exchange, dict | None], None] | None = None  # the final client object, e.g. to store it
    capability: Capability = Capability.CHAT
    # A streaming request's error as a whole stream the client acts on (None: the HTTP error stands)
    stream_failure: Callable[[Exchange], bytes | None] | None = None


def qwen_body(ex: Exchange, cred: Credential, models: ModelMap, learned_thinking=None) -> dict:
    """The body the account `cred` gets for this exchange (the model is resolved per account)."""
    assert ex.endpoint is not None
    ex.upstream_model = models.resolve(ex.requested_model, cred)
    if not ex.endpoint.translated:
        if ex.endpoint.capability is Capability.EMBEDDINGS and not ex.upstream_model.startswith("text-embedding"):
            ex.upstream_model = "text-embedding-v4"
        return {**ex.chat_body, "model": ex.upstream_model}
    body = chat_to_qwen(ex.chat_body, model=ex.upstream_model, oauth=cred.kind == OAUTH, notes=ex.notes,
                        default_model=cred.default_model, learned_thinking=learned_thinking)
    ex.upstream_model = body["model"]  # images may have moved the request to a vision model
    return body


CHAT = Endpoint(
    name="chat.completions", upstream_suffix="chat/completions",
    to_chat=lambda body, ex: validate_chat_request(body),
    from_chat=lambda answer, ex: answer,
    stream_translator=lambda ex: ChatStreamTranslator(wants_usage(ex.body or {})))


def responses_endpoint(store: Callable[[], ResponseStore]) -> Endpoint:
    """/v1/responses: the request translated with the gateway's stored responses (previous_response_id,
    item_reference) and sealed content (reasoning, compaction); what Qwen is offered under each function
    name is kept in `ex.extra["tools"]` for the way back."""

    def to_chat(body: dict, ex: Exchange) -> dict:
        st = store()
        # a WebSocket continues from its own recent responses (ex.extra["history"]), else from the store
        cont = {"history": ex.extra.pop("history")} if "history" in ex.extra else st.continuation(body)
        t = translate(body, **cont, notes=ex.notes, open_sealed=st.sealer.open, lookup=st.item)
        ex.extra["response_id"] = new_id("resp")
        ex.extra["tools"] = t.tools
        ex.extra["items"] = t.items
        if t.compaction:
            ex.extra["compaction"] = True
            ex.notes.append("compaction: the conversation summarised by one upstream call")
        return t.chat

    def from_chat(chat: dict, ex: Exchange) -> dict:
        compaction = bool(ex.extra.get("compaction"))
        response = chat_to_response(chat, ex.body or {}, response_id=ex.extra["response_id"], created_at=ex.created,
                                    tools=ex.extra.get("tools"), seal=store().sealer.seal, compaction=compaction)
        if compaction:
            message = ((chat.get("choices") or [{}])[0].get("message") or {})
            ex.extra["summary"] = str(message.get("content") or "").strip()
        return response

    def translator(ex: Exchange, encode=sse_event) -> ResponsesStreamTranslator:
        return ResponsesStreamTranslator(ex.body or {}, response_id=ex.extra["response_id"], created_at=ex.created,
                                         tools=ex.extra.get("tools"), seal=store().sealer.seal,
                                         compaction=bool(ex.extra.get("compaction")), encode=encode)

    def finished(ex: Exchange, response: dict | None) -> None:
        body = ex.body or {}
        if response is None or body.get("store") is False:
            return
        store().put(response, {"items": history_of(ex, response)}, input_items(body))

    def history_of(ex: Exchange, response: dict) -> list[dict]:
        summary = ex.extra.get("summary")
        if summary is None and ex.rewriter is not None:
            summary = getattr(ex.rewriter.translator, "summary", None)
        return history_items(ex.extra.get("items") or [], response, store().sealer.seal,
                             summary=summary if ex.extra.get("compaction") else None)

    def stream_failure(ex: Exchange) -> bytes | None:
        err = ex.error
        if err is None or err.code != "context_length_exceeded" or "response_id" not in ex.extra:
            return None
        ex.stream_error = err.message
        return b"".join(translator(ex).fail({"message": err.message, "code": err.code,
                                             "type": "invalid_request_error"}))

    return Endpoint(
        name="responses", upstream_suffix="chat/completions", to_chat=to_chat, from_chat=from_chat,
        stream_translator=translator, finished=finished, stream_failure=stream_failure)


def compact_endpoint(store: Callable[[], ResponseStore]) -> Endpoint:
    """/v1/responses/compact: one summarisation call; the answer keeps the user's messages and adds one
    sealed `compaction` item (what a later request carries back instead of the conversation)."""

    def to_chat(body: dict, ex: Exchange) -> dict:
        items: list = body["input"] if isinstance(body.get("input"), list) else (
            [] if body.get("input") is None else [body.get("input")])
        request = {**body, "stream": False, "input": [*items, {"type": "compaction_trigger"}]}
        if isinstance(body.get("input"), str):
            request["input"] = [{"type": "message", "role": "user", "content": body["input"]},
                                {"type": "compaction_trigger"}]
        ex.stream = False
        st = store()
        return translate(request, **st.continuation(body), notes=ex.notes, open_sealed=st.sealer.open,
                         lookup=st.item).chat

    def from_chat(chat: dict, ex: Exchange) -> dict:
        body = ex.body or {}
        response = chat_to_response(chat, body, response_id=new_id("resp"), created_at=ex.created,
                                    seal=store().sealer.seal, compaction=True)
        kept = [i for i in input_items(body) if i.get("type") == "message" and i.get("role") == "user"]
        return {"id": response["id"], "object": "response.compaction", "output": kept + response["output"],
                "created_at": ex.created, "usage": response.get("usage") or usage_to_responses({})}

    return Endpoint(name="responses.compact", upstream_suffix="chat/completions", to_chat=to_chat,
                    from_chat=from_chat, stream_translator=lambda ex: None)


COMPLETIONS = Endpoint(
    name="completions", upstream_suffix="chat/completions",
    to_chat=lambda body, ex: completions_to_chat(body),
    from_chat=lambda chat, ex: chat_to_completion(chat, ex.body or {}),
    stream_translator=lambda ex: CompletionsStreamTranslator(ex.body or {}))


def _embeddings_in(body: dict, ex: Exchange) -> dict:
    if not isinstance(body.get("input"), (str, list)) or not body.get("input"):
        raise GatewayError(400, "'input' is required: a string or an array of strings.", param="input",
                           code="missing_required_parameter")
    ex.stream = False
    return embeddings.to_upstream(body, notes=ex.notes)  # strings only (token ids decoded), floats asked


EMBEDDINGS = Endpoint(
    name="embeddings", upstream_suffix="embeddings", to_chat=_embeddings_in,
    from_chat=lambda answer, ex: embeddings.to_client(answer, ex.body or {}, ex.requested_model or None),
    stream_translator=lambda ex: None, translated=False, capability=Capability.EMBEDDINGS)


def endpoints(store: Callable[[], ResponseStore]) -> dict[str, Endpoint]:
    """Client paths (after /v1) -> endpoint."""
    return {"/chat/completions": CHAT, "/responses": responses_endpoint(store),
            "/responses/compact": compact_endpoint(store), "/completions": COMPLETIONS, "/embeddings": EMBEDDINGS}
