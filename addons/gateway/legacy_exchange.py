"""One client request's journey through the gateway, and the endpoints it can take.

The gateway leaves a JSON-safe record of each exchange in `flow.metadata["qwen"]` (saved by
`-w`, filterable with `~meta qwen`); the flow view, usage ledger, metrics and request log read
only that record. Keys (all optional until the exchange ends):

    client          {"method", "url"} as the client sent them (before rerouting)
    endpoint        "chat.completions" | "responses" | "completions" | "embeddings"
    model           the model name the client asked for
    upstream_model  the Qwen model that answered
    account         the account that answered; accounts_tried: every account used, in order
    retries         how many times the gateway re-sent the request (401 refresh, quota rotation, throttling)
    stream          whether the client asked for a stream
    notes           human-readable remarks (rotations, dropped tools, ...)
    started_at      epoch seconds; duration_ms: from request to the end of the answer
    ttfb_ms         streams: time to the first byte sent to the client
    usage           OpenAI usage dict (prompt_tokens, completion_tokens, total_tokens,
                    prompt_tokens_details.cached_tokens) when Qwen reported it
    status          the HTTP status the client got
    stream_error    the error message that ended a stream early
    error           {"status", "code", "message"} when the gateway answered with an error
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from qwen_gateway.auth.base import Credential

from .chat import validate_chat_request, wants_usage
from .chat_stream import ChatStreamTranslator
from .streaming import StreamRewriter, StreamTranslator


@dataclass
class Exchange:
    endpoint: "Endpoint"
    client_body: dict
    chat_body: dict  # the request in OpenAI chat-completions form
    requested_model: str
    stream: bool
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    upstream_model: str = ""
    cred: Credential | None = None
    tried: list[str] = field(default_factory=list)  # accounts, in order
    retries: int = 0
    notes: list[str] = field(default_factory=list)
    rewriter: StreamRewriter | None = None
    upstream_body: dict | None = None
    extra: dict = field(default_factory=dict)  # endpoint-specific state (e.g. stored history)

    @property
    def account(self) -> str:
        return self.cred.account if self.cred else ""


@dataclass(frozen=True)
class Endpoint:
    """How one OpenAI endpoint maps onto Qwen chat completions (or passes through)."""

    name: str
    upstream_suffix: str
    to_chat: Callable[[dict, Exchange], dict]  # client body -> chat body (validates; may add notes)
    from_chat: Callable[[dict, Exchange], dict]  # normalised chat answer -> client answer
    stream_translator: Callable[[Exchange], StreamTranslator]
    translated: bool = True  # False: the body goes upstream as is (embeddings)
    finished: Callable[[Exchange, dict | None], None] | None = None  # the final client object, e.g. to store it
    needs_embeddings: bool = False  # only accounts whose upstream serves /embeddings


def _chat_in(body: dict, _ex: Exchange) -> dict:
    return validate_chat_request(body)


def _chat_out(answer: dict, _ex: Exchange) -> dict:
    return answer


CHAT = Endpoint(
    name="chat.completions",
    upstream_suffix="chat/completions",
    to_chat=_chat_in,
    from_chat=_chat_out,
    stream_translator=lambda ex: ChatStreamTranslator(wants_usage(ex.client_body)),
)
