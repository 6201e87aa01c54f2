"""The chat form: the one internal form every client dialect and every upstream translate to and from.

The form is the OpenAI chat-completions request, its whole answer and its chunk stream — what Qwen's
compatible mode speaks. A client dialect (api/) turns its request into a chat request and a chat answer
(or normalised chunks) back into its own; an upstream (upstream/) turns a chat request into its wire
and its wire back into a chat answer or normalised chunks. Neither knows the other:

    client dialect ──to_chat──▶ chat request ──Upstream.body──▶ the upstream's wire
    client dialect ◀─from_chat / StreamTranslator── chat answer / chunks ◀─answer / ChunkSource── wire

The upstream side — what a provider is, its `Upstream`, and the pairs that skip the chat form (the upstream takes
the dialect's own body, as DashScope's embeddings endpoint takes OpenAI's) — is providers.py's.

The TypedDicts below are the chat form's shapes where the gateway builds them; what comes from a client or
an upstream is read as plain dicts and checked where it is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NotRequired, Protocol, TypedDict, TypeVar

from .accounts import Capability

if TYPE_CHECKING:
    from .errors import GatewayError, UpstreamError

# What an endpoint answers when it reads an answer the turn does not translate: the client's answer, and its usage
# in the chat form (None: not known; the turn records it — an endpoint never writes the outcome)
Answered = tuple[dict, "dict | None"]

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
    streams: Callable[[dict], bool] | None = None  # whether a body is answered as a stream (None: its `stream: true`)
    dialect: str = "openai"  # the format of its errors and local answers ("anthropic": api/messages/errors.py)
    # A streaming request's error as a whole stream the client acts on (None: the HTTP error stands)
    stream_failure: Callable[[X], bytes | None] | None = None
    # A whole answer that takes more than one upstream call (embeddings beyond Qwen's batch size): given the
    # engine's `open`, the client's answer and its usage, or None when one ordinary call does
    fetch: Callable[[X, Callable[[X], Awaitable[UpstreamAnswer]]], Awaitable[Answered | None]] | None = None
    # A pass-through pair (Leg.passthrough): the body the upstream gets in the dialect's own form (None: the
    # body `to_chat` made is it), the client's answer from the upstream's own answer (None: `from_chat`), and
    # the stream's reader and writer in the dialect's own event format. `own_body` may say None: this request
    # cannot take the pair (a feature only the translation serves), and goes through the chat form instead
    own_body: Callable[[dict, X], dict | None] | None = None
    from_own: Callable[[dict, X], Answered] | None = None
    own_stream: Callable[[X], tuple[ChunkSource, StreamTranslator]] | None = None
    # Awaited before `to_chat` (which is synchronous): state the translation reads that may have to come
    # from a shared database first (a stored Response another gateway wrote)
    prepare: Callable[[dict, X], Awaitable[None]] | None = None
    # A body `to_chat` may walk for long (off_loop.py): it runs in a worker thread for such a body (its own
    # exchange only, no shared state written), the event loop serving others meanwhile
    off_loop: Callable[[dict], bool] | None = None
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
