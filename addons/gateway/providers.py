"""What a provider is: the side of the chat form that speaks to a model server (interfaces.py is the other).

A provider is one package under upstream/ (dashscope/, qwenweb/, selfhosted/) that exports a `Provider`: its
name — the name its accounts carry (`Credential.provider`), written in its package only —, the `Upstream` that
carries the chat form over its wire and back, the pairs of a client dialect with it that skip the chat form (`Leg`),
and what the accounts, the pool, the model map and the commands know of it (provider_registry.py): the kinds of
account that are its own, whether the catalogue describes its models, its keyed plans. The engine, the retry
policy, the pool, the turn and the composition know a provider only through these types: what a body is, what a
refusal teaches (`Lesson`), how long a body asks the server's cache to keep it. Adding a provider is one package,
the catalogue's rows of its models and one line in provider_list.py's `PROVIDER_PACKAGES` (its package's name).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .accounts import Capability, Credential
from .provider_registry import KeyPlans
from .interfaces import ChunkSource, UpstreamAnswer
from .models.catalogue import Thinking

if TYPE_CHECKING:
    from .errors import UpstreamError
    from .models.learned import LearnedFacts


@dataclass(frozen=True, slots=True)
class Lesson:
    """What one refusal taught, read from the provider's own words: a range (`fact` and its `bound`, for the
    parameter `param`), a relation (`param` must stay above `below`), a thinking switch (`thinking`), that the
    model answers streams only, or that its chat template takes system text only at the beginning."""

    text: str  # the words it was read from (the message, without the provider's error-class prefix)
    param: str = ""
    fact: str | None = None
    bound: int | None = None
    below: str | None = None  # a relation: the parameter that must stay below `param`
    thinking: Thinking | None = None
    stream_only: bool = False
    system_first: bool = False  # the model's chat template takes system text only as the first message


class Prompt(NamedTuple):
    """What is known of a request's prompt size when its body is built, for an upstream whose prompt and answer
    share one window (`Upstream.fits_window`): the gateway's count (tiktoken), or the server's own (`exact`, read
    from its refusal, with the window it named)."""

    tokens: int
    exact: bool = False
    window: int | None = None


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
                  learned: LearnedFacts | None = None, prompt: Prompt | None = None, tenant: str = "") -> dict:
        """The upstream body for a chat request on this account; its "model" is the model asked (the upstream
        may move a request to another model, e.g. a vision model for images). `learned`: what the upstream's
        refusals taught about models (models/learned.py: thinking knobs; models that answer streams only, whose
        whole answers the upstream streams and `turn.whole.translated` assembles; output caps, budgets).
        `prompt`: the prompt's size, given to an upstream that `fits_window` (None: not known). `tenant`: the named
        client key the request came with ("": none), for a server whose caches keep tenants apart."""
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

    def lesson(self, message: str) -> Lesson | None:
        """What a refusal's message teaches about its model, when all of it is this provider's own words."""
        ...

    def words_known(self, message: str) -> bool:
        """Whether a refusal is in words this provider is known to use (a new wording is counted and shown)."""
        ...

    def unlearnable(self, lesson: Lesson, sent: dict, model: str, carried: str) -> str | None:
        """Why `lesson` may not be learned from the request `sent` (its body; `carried`: its URL and headers as
        sent); None: it may."""
        ...

    def cache_lifetime_s(self, body: dict) -> float:
        """How long the body asks the server's prompt cache to keep its prefix (the account keeps the
        conversation that long)."""
        ...

    resendable: bool  # a stream broken before anything but its opening went out is sent again as it was (web: no)
    # the prompt and the answer share one window (a self-hosted server's max_model_len): the body is built with
    # the prompt counted (`chat_body`'s `prompt`)
    fits_window: bool


class OneRequest:
    """What an upstream whose attempt is one request answers for the two-request hooks (`Upstream.prepare`,
    `opened`, `abandoned`), and its refusals: any status of 400 or more (DashScope, a self-hosted server; the web
    API has its own)."""

    async def prepare(self, cred: Credential, body: dict, fetch: Fetch) -> dict | UpstreamError:
        return body  # nothing to make first

    def opened(self, body: dict, resp: UpstreamAnswer) -> UpstreamAnswer:
        return resp

    def abandoned(self, body: dict) -> None:
        pass

    def refused(self, status: int, headers: Mapping[str, str]) -> bool:
        return status >= 400


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
    """Which upstream serves each provider's accounts, and the pairs that do not go through the chat form."""

    default: Upstream  # an exchange before its account is chosen (the pool hands out no other provider's)
    upstreams: Mapping[str, Upstream] = field(default_factory=dict)  # provider name -> upstream
    passthrough: Mapping[tuple[str, str], Leg] = field(default_factory=dict)  # (endpoint, upstream) -> leg

    def upstream(self, cred: Credential) -> Upstream:
        return self.upstreams.get(cred.provider, self.default)

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


@dataclass(frozen=True)
class Provider:
    """One provider as the composition sees it (components.PROVIDERS): the upstream for the gateway's options,
    and its pairs that skip the chat form (endpoint name -> leg) under those options."""

    name: str  # what its accounts' `provider` says
    upstream: Callable[[Any], Upstream]  # the gateway's Config -> its Upstream
    legs: Callable[[Any], Mapping[str, Leg]] = field(default=lambda config: {})  # endpoint name -> leg
    # Its Files and Batch APIs' calls, given (the pool, a named key's USD budget check): None, it has none
    batch_calls: Callable[[Callable[[], Any], Callable[[Any], None]], Any] | None = None
    # Its accounts' own model lists joined to /v1/models, given (Config, the pool, the pool's status rows)
    account_models: Callable[[Any, Any, list[dict]], None] | None = None
    # `qwen-auth check`: (an httpx.Client, a Credential, a drift_report.Report, deep=, model=, cache_probe=) -> None
    drift: Callable[..., None] | None = None
    # The kinds of account (accounts.Kind) that are its own unless they name another provider
    kinds: frozenset[str] = frozenset()
    catalogued: bool = False  # the catalogue (models/catalogue.toml) describes its models; else its own list does
    plans: KeyPlans | None = None  # its keyed plans: presets, prices' billing, a key's fit (provider_registry.py)
    keys: bool = True  # a key account may name it (`qwen-auth add-key --provider`)
