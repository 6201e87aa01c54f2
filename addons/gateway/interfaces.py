"""The chat form: the one internal form every client dialect and every upstream translate to and from.

The form is the OpenAI chat-completions request, its whole answer and its chunk stream — what Qwen's
compatible mode speaks. A client dialect (api/) turns its request into a chat request and a chat answer
(or normalised chunks) back into its own; an upstream (upstream/) turns a chat request into its wire
and its wire back into a chat answer or normalised chunks. Neither knows the other:

    client dialect ──to_chat──▶ chat request ──Upstream.body──▶ the upstream's wire
    client dialect ◀─from_chat / StreamTranslator── chat answer / chunks ◀─answer / ChunkSource── wire

A pair that skips the chat form (the upstream takes the dialect's own body, as DashScope's embeddings
endpoint takes OpenAI's) is declared once, by the pair, in `Pairing` (built in components.py).

The TypedDicts below are the chat form's shapes where the gateway builds them; what comes from a client or
an upstream is read as plain dicts and checked where it is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NotRequired, Protocol, TypedDict, TypeVar

from .accounts import Capability, Credential

if TYPE_CHECKING:
    from .errors import GatewayError, UpstreamError
    from .models.learned import LearnedFacts

# The exchange record (exchange.py) holds an Endpoint; an Endpoint's functions take the record. The
# record's type is a parameter here so that this module, below exchange.py, imports nothing above it.
X = TypeVar("X")


# ---- the shapes -------------------------------------------------------------------------------------

class FunctionDelta(TypedDict, total=False):
    name: str
    arguments: str


class ToolCallDelta(TypedDict):
    index: int
    id: NotRequired[str]
    type: NotRequired[str]
    function: FunctionDelta


class ChunkDelta(TypedDict, total=False):
    role: str
    content: str | None
    reasoning_content: str
    tool_calls: list[ToolCallDelta]
    refusal: Any
    function_call: Any
    annotations: list[dict[str, Any]]  # url_citation annotations of the whole text, in the choice's last delta


class ChunkChoice(TypedDict):
    index: int
    delta: ChunkDelta
    logprobs: Any
    finish_reason: str | None


class ChatChunk(TypedDict):
    """One normalised `chat.completion.chunk`: incremental deltas, reasoning in `reasoning_content`, each
    tool call with its own index and an id on its first fragment, usage last in a chunk of its own."""

    id: str
    object: str
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: NotRequired[str]
    usage: NotRequired[dict[str, Any] | None]
    search_info: NotRequired[dict[str, Any]]  # Qwen's web search sources, on the chunk they arrived with


class WebSearchOptions(TypedDict, total=False):
    """Chat's `web_search_options` as the chat form carries it: OpenAI's fields, and three of the gateway's own that
    a client dialect sets for its own search tool (a chat client's `web_search_options` never carries them).
    Its answer's sources come back as Qwen's `search_info` ({"search_results": [{"index", "title", "url", …}]})
    beside the choices, and as `url_citation` annotations on the message (or the choice's last delta)."""

    search_context_size: str
    user_location: Any
    optional: bool  # only offered (a Responses web_search tool): an upstream that cannot search drops it
    forced: bool  # the client forced the search tool: search before answering
    param: str  # the client's parameter that asked for search, for the 400 when it cannot be done


# ---- the client side --------------------------------------------------------------------------------

class StreamTranslator(Protocol):
    """A client dialect's stream encoder: normalised chat chunks in, the client's SSE bytes out."""

    def feed(self, chunk: ChatChunk) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...

    def fail(self, error: dict) -> list[bytes]: ...


@dataclass(frozen=True)
class Endpoint(Generic[X]):
    """One client API endpoint: both directions of its translation to the chat form (X: the exchange record)."""

    name: str
    to_chat: Callable[[dict, X], dict]  # client body -> chat body (validates; may add notes)
    from_chat: Callable[[dict, X], dict]  # normalised chat answer -> client answer
    stream_translator: Callable[[X], StreamTranslator | None]
    finished: Callable[[X, dict | None], None] | None = None  # the final client object, e.g. to store it
    capability: Capability = Capability.CHAT
    dialect: str = "openai"  # the format of its errors and local answers ("anthropic": api/messages/errors.py)
    # A streaming request's error as a whole stream the client acts on (None: the HTTP error stands)
    stream_failure: Callable[[X], bytes | None] | None = None
    # A whole answer that takes more than one upstream call (embeddings beyond Qwen's batch size): given the
    # engine's `open`, the client's answer, or None when one ordinary call does
    fetch: Callable[[X, Callable[[X], Awaitable[UpstreamAnswer]]], Awaitable[dict | None]] | None = None
    # A pass-through pair (Leg.passthrough): the body the upstream gets in the dialect's own form (None: the
    # body `to_chat` made is it), the client's answer from the upstream's own answer (None: `from_chat`), and
    # the stream's reader and writer in the dialect's own event format. `own_body` may say None: this request
    # cannot take the pair (a feature only the translation serves), and goes through the chat form instead
    own_body: Callable[[dict, X], dict | None] | None = None
    from_own: Callable[[dict, X], dict] | None = None
    own_stream: Callable[[X], tuple[ChunkSource, StreamTranslator]] | None = None
    # Awaited before `to_chat` (which is synchronous): state the translation reads that may have to come
    # from a shared database first (a stored Response another gateway wrote)
    prepare: Callable[[dict, X], Awaitable[None]] | None = None
    # Its stream's first event carries the gateway's prompt estimate (Anthropic's message_start usage): the
    # turn lets a count still running finish before the stream starts (turn.runner.until_counted)
    counted_first: bool = False
    # A GET that asks to upgrade to another protocol (the Responses WebSocket): handles the flow and says True,
    # or False when the request is no upgrade (it is then answered as any request of its method)
    upgrade: Callable[[Any, X], Awaitable[bool]] | None = None


@dataclass(frozen=True)
class ClientFormat(Generic[X]):
    """How a dialect's client reads what the gateway says itself: its error body, and the headers every
    answer carries (Anthropic's `request-id`). OpenAI's format is the core's default (errors.py)."""

    error_body: Callable[[GatewayError, X], bytes]
    headers: Callable[[X], dict[str, str]]
    status: Callable[[GatewayError], int] = lambda e: e.status  # the status the dialect answers the error with


# ---- the upstream side ------------------------------------------------------------------------------

class ChunkSource(Protocol):
    """An upstream's stream decoder: its parsed SSE events in, normalised chat chunks out (no I/O)."""

    @property
    def usage(self) -> dict | None: ...  # the answer's usage, once the upstream reported it

    @property
    def finish_reasons(self) -> dict[int, str]: ...  # per choice, once finished: without one, it was cut off

    @property
    def error_text(self) -> str | None: ...  # the upstream ended the answer with an error inside a chunk

    def feed(self, event: object) -> list[ChatChunk]: ...

    def fault(self, error: object) -> UpstreamError:
        """What an error inside the stream means (an error event, or `error_text`)."""
        ...


class UpstreamAnswer(Protocol):
    """The engine's answer: status and headers final, the body still arriving."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def aread(self) -> bytes: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs 5x (object.__setattr__)
class Wire:
    """One request as an upstream sends it: where, with which headers (the credential among them)."""

    url: str  # scheme://host[:port]/path
    headers: list[tuple[str, str]]
    body: dict


# One extra request an upstream makes before its main one (Upstream.prepare), sent by the engine over its
# pooled client: the answer's (status, headers, whole body). Transport failures raise GatewayError.
Fetch = Callable[[Wire], Awaitable[tuple[int, dict[str, str], bytes]]]


class Upstream(Protocol):
    """One upstream kind: the chat form over its own wire, and back. It sees the chat request and the
    account, never the client's request: it cannot tell which dialect asked."""

    name: str

    def chat_body(self, chat: dict, *, model: str, cred: Credential, notes: list[str],
                  learned: LearnedFacts | None = None) -> dict:
        """The upstream body for a chat request on this account; its "model" is the model asked (the upstream
        may move a request to another model, e.g. a vision model for images). `learned`: what the upstream's
        refusals taught about models (models/learned.py: thinking knobs; models that answer streams only, whose
        whole answers the upstream streams and `turn.whole.translated` assembles; output caps, budgets)."""
        ...

    def own_body(self, body: dict, *, model: str, capability: Capability, cred: Credential,
                 notes: list[str], learned: LearnedFacts | None = None) -> dict:
        """The upstream body for a pass-through pair: the client dialect's own body, with a model it serves."""
        ...

    def wire(self, cred: Credential, suffix: str, body: dict, *, user_agent: str, stream: bool, attempt: int,
             base: str | None = None, api_headers: tuple[tuple[str, str], ...] = (), client_agent: str = "") -> Wire:
        """The request; `base` replaces the account's API base (a pass-through leg's), `api_headers` are the
        client's API headers a pass-through forwards (anthropic-version, anthropic-beta); `user_agent` the
        gateway's configured one (qwen_user_agent), `client_agent` the client's own ("": it sent none)."""
        ...

    async def prepare(self, cred: Credential, body: dict, fetch: Fetch) -> dict | UpstreamError:
        """What must exist upstream before the request is sent (the web API's chat: `chats/new`), made with
        `fetch`; returns the body to send (DashScope: `body` as it is) or the error to recover from."""
        ...

    def opened(self, body: dict, resp: UpstreamAnswer) -> UpstreamAnswer:
        """The answer to the prepared `body` as the engine hands it on (DashScope: `resp` itself; the web API
        reads a pinned chat's answer through, and closing it ends the chat's turn)."""
        ...

    def abandoned(self, body: dict) -> None:
        """The prepared `body` was never answered (the send failed): undo what `prepare` holds."""
        ...

    def refused(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether an answer is an error to `classify` (DashScope: status >= 400; the web API: also an HTTP 200
        envelope or punish page, anything but a stream)."""
        ...

    def classify(self, status: int, body: bytes, headers: dict[str, str]) -> UpstreamError: ...

    def answer(self, data: dict, *, model: str) -> dict:
        """A whole answer (parsed JSON) as a chat completion, named `model`."""
        ...

    def chunks(self, model: str) -> ChunkSource: ...

    def continued(self, body: dict, prefix: str) -> dict | None:
        """The sent `body` asking the model to go on from `prefix`, the answer so far (Model Studio's partial
        mode); None: this model, in this mode, cannot (turn/continuation.py). An empty prefix: whether it can."""
        ...

    resendable: bool  # a stream broken before anything but its opening went out is sent again as it was (web: no)


@dataclass(frozen=True)
class Leg:
    """How one (client dialect, upstream) pair is carried: the path under the account's base, and whether
    the body goes through the chat form (translated) or as the dialect's own (a pass-through)."""

    suffix: str = "chat/completions"
    passthrough: bool = False
    # The API base this pair uses for an account, or None when the account has none (the request is then
    # translated as usual); None here: the account's own base
    base: Callable[[Credential], str | None] | None = None
    # The models the pair serves (None: every model); another model's request is translated as usual
    models: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Pairing:
    """Which upstream serves each credential kind, and the pairs that do not go through the chat form."""

    default: Upstream  # for an account of a kind not listed, and an exchange before its account is chosen
    upstreams: Mapping[str, Upstream] = field(default_factory=dict)  # credential kind -> upstream
    passthrough: Mapping[tuple[str, str], Leg] = field(default_factory=dict)  # (endpoint, upstream) -> leg

    def upstream(self, cred: Credential) -> Upstream:
        return self.upstreams.get(cred.kind, self.default)

    def leg(self, endpoint: str, upstream: Upstream, cred: Credential, model: str = "") -> tuple[Leg, str | None]:
        """How the pair is carried for this account and model, and the API base to use (None: the account's
        own)."""
        leg = self.passthrough.get((endpoint, upstream.name))
        if leg is None or leg.models is not None and not leg.models(model):
            return TRANSLATED, None
        base = leg.base(cred) if leg.base is not None else None
        if leg.base is not None and base is None:
            return TRANSLATED, None  # this account has no such base: translated
        return leg, base


TRANSLATED = Leg()
