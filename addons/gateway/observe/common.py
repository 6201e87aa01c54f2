"""Small pure helpers the observers share: what an exchange was, read from the typed `Exchange`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..exchange import Exchange

# The gateway's endpoint names (an exchange's route is one of these, or a local route such as "models").
ENDPOINTS = frozenset({"chat.completions", "responses", "completions", "embeddings"})
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


def status_of(ex: Exchange) -> int | None:
    """The status the client got (an error's status when the gateway set only that)."""
    if ex.status is not None:
        return ex.status
    return ex.error.status if ex.error is not None else None


def error_code(ex: Exchange) -> str | None:
    return ex.error.code if ex.error is not None else None


def error_text(ex: Exchange) -> str | None:
    """The message that ended the exchange: a broken stream's, else the error's."""
    if ex.stream_error:
        return ex.stream_error
    return ex.error.message if ex.error is not None else None


def failed(ex: Exchange) -> bool:
    status = status_of(ex)
    return ex.error is not None or bool(ex.stream_error) or status is None or status >= 400


def cached_tokens(usage: dict | None) -> int | None:
    """Cached prompt tokens: OpenAI's prompt_tokens_details.cached_tokens (or a top-level cached_tokens)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    if value is None:
        value = usage.get("cached_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_int(usage: dict | None, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
