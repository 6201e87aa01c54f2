"""What an observer is: a plain object the gateway calls at named points of an exchange; and the small
pure helpers observers share to read what an exchange was.

Observers are not mitmproxy addons: they declare no options (settings/config.py does), see only the flows the
gateway claims, and read the gateway's typed `Exchange`. The gateway calls each one inside its own
try/except: a failing observer is logged and never changes the flow or stops the next observer.
Only the methods a class overrides are called (the gateway looks them up once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cache_usage import read as read_cache  # the ledger, metrics and the request line call it themselves

if TYPE_CHECKING:
    from mitmproxy import http

    from .settings.config import Config
    from .exchange import Exchange

# The named points, in the order an exchange passes them.
POINTS = ("client_request", "upstream_request", "stream_started", "finished")


class Observer:
    # Whether `finished` should wait (a few seconds at most) for a prompt estimate still being counted:
    # only observers that print or store the estimate do.
    waits_for_estimate = False
    # Whether `finished` runs in the `response` hook itself, before mitmproxy sends and shows the answer: for
    # observers that change the flow (its comment, its marker, mitmweb's list) and in-memory bookkeeping the
    # next request reads (a named key's spend). Every other observer's `finished` runs off the request's
    # path, after the answer was handed to the client's connection, in batches (dispatch.py).
    at_once = False
    # Whether `finished` is also told of a batch's bill (api/batches/bills.py), an exchange of its own with no flow
    # (`flow` None): the observers that count what was spent and say it (the request line, metrics, a key's
    # spend). The ledger wrote the bill's row before.
    counts_bills = False
    # False while an opt-in observer is off (traces without an endpoint): none of its points is called; looked at
    # again after every `configure`.
    active = True

    def configure(self, config: Config) -> None:
        """The options changed (also called once before the first flow)."""

    def running(self) -> None:
        """mitmproxy is running (its event loop exists; mitmweb's view is loaded)."""

    def client_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The client's request was read and classified (`ex.client`, `ex.route`, `ex.body`)."""

    def upstream_request(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The request is about to go to Qwen (`ex.attempt.body`, `ex.attempt.url`, `ex.account`)."""

    def stream_started(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """A streamed answer began (`ex.turn.rewriter` set)."""

    def finished(self, ex: Exchange, flow: http.HTTPFlow) -> None:
        """The client has its whole answer, or the exchange ended in an error (`ex.result.status`, `ex.result.error`).
        Unless `at_once`, runs once the answer is on its way, with the other exchanges finished within
        dispatch.BATCH_S; with `waits_for_estimate`, after the prompt estimate if one was still being counted
        (a few seconds at most)."""

    def done(self) -> None:
        """mitmproxy is shutting down: write what is buffered."""


def overrides(observer: Observer, point: str) -> bool:
    return getattr(type(observer), point, None) is not getattr(Observer, point)

# The gateway's endpoint names (an exchange's route is one of these, or a local route such as "models").
ENDPOINTS = frozenset({"chat.completions", "responses", "completions", "embeddings", "messages"})
# Endpoints whose body carries a prompt worth estimating (embeddings' input counts too).
PROMPT_ENDPOINTS = ENDPOINTS


def endpoint_name(ex: Exchange) -> str | None:
    """The endpoint an exchange was for, also when the gateway refused it before forwarding."""
    if ex.endpoint is not None:
        return ex.endpoint.name
    return ex.route if ex.route in ENDPOINTS else None


def label(ex: Exchange) -> str:
    """What one exchange is called in the ledger, metrics and mitmweb: its endpoint, else its route."""
    return endpoint_name(ex) or ex.route or "unknown"


def own_api(ex: Exchange) -> str | None:
    """The API an option sent the request in, its client's own rather than translated: `responses`
    (qwen_responses_native), `v1/messages` (qwen_messages_passthrough); None when translated, or for a pair that
    always passes through (embeddings: no option, no base of its own)."""
    leg = ex.attempt.leg
    return leg.suffix if leg.passthrough and leg.base is not None and ex.attempt.body is not None else None


def status_of(ex: Exchange) -> int | None:
    """The status the client got (an error's status when the gateway set only that)."""
    if ex.result.status is not None:
        return ex.result.status
    return ex.result.error.status if ex.result.error is not None else None


def error_code(ex: Exchange) -> str | None:
    """The code of the error that ended the exchange: its refusal's, else the error event its stream ended with."""
    return ex.result.error.code if ex.result.error is not None else ex.result.stream_error_code


def error_text(ex: Exchange) -> str | None:
    """The message that ended the exchange: a broken stream's, else the error's."""
    if ex.result.stream_error:
        return ex.result.stream_error
    return ex.result.error.message if ex.result.error is not None else None


def failed(ex: Exchange) -> bool:
    status = status_of(ex)
    return ex.result.error is not None or bool(ex.result.stream_error) or status is None or status >= 400


def cached_tokens(usage: dict | None) -> int | None:
    """Cached prompt tokens (cache_usage.py)."""
    return read_cache(usage)[0]


def cache_write_tokens(usage: dict | None) -> int | None:
    """Prompt tokens Qwen stored in its explicit cache (cache_usage.py); None when the usage says nothing of it."""
    return read_cache(usage)[1]


def usage_int(usage: dict | None, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
