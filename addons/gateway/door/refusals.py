"""The errors a named key's request gets, in OpenAI's shape (the addon answers them in the client's dialect:
Anthropic's clients read a 429 as rate_limit_error). A rate limit says when to retry (Retry-After); a
budget says which budget, how much was spent and when it resets, and that retrying sooner is pointless
(`x-should-retry: false`, which the OpenAI and Anthropic SDKs obey instead of retrying a 429)."""

from __future__ import annotations

import time

from ..errors import GatewayError
from .keyring import KeyRecord
from .limits import retry_seconds
from .spend import next_midnight, next_month

REFUSAL_CODES = frozenset({"invalid_api_key", "rate_limit_exceeded", "insufficient_quota", "state_unavailable"})


def revoked(rec: KeyRecord) -> GatewayError:
    return GatewayError(401, f"The key {rec.name!r} was revoked. Ask the gateway's operator for a new one "
                             "(qwen-keys add or rotate).", type="invalid_request_error", code="invalid_api_key")


def rate_limited(rec: KeyRecord, kind: str, seconds: float) -> GatewayError:
    wait = retry_seconds(seconds)
    what = f"{rec.rpm} request{'s' if rec.rpm != 1 else ''}" if kind == "rpm" else f"{rec.tpm:,} tokens"
    return GatewayError(429, f"Rate limit reached for key {rec.name!r}: {what} per minute (qwen-keys --{kind}). "
                             f"Try again in {wait}s.", type="requests" if kind == "rpm" else "tokens",
                        code="rate_limit_exceeded", headers={"retry-after": str(wait)})


def too_large(rec: KeyRecord, tokens: int) -> GatewayError:
    return GatewayError(429, f"This request (about {tokens:,} tokens) is larger than key {rec.name!r}'s limit of "
                             f"{rec.tpm:,} tokens per minute (qwen-keys --tpm): it can never be admitted. Send a "
                             "shorter prompt or raise the limit.", type="tokens", code="rate_limit_exceeded",
                        headers={"x-should-retry": "false"})


def _until(seconds: float) -> str:
    minutes = max(1, int(seconds // 60))
    days, rest = divmod(minutes, 1440)
    return " ".join(p for p in (f"{days} d" if days else "", f"{rest // 60} h" if rest >= 60 else "",
                                f"{rest % 60} min") if p)


def over_daily(rec: KeyRecord, spent: int, now: float | None = None) -> GatewayError:
    now = time.time() if now is None else now
    reset = next_midnight(now)
    return _budget(f"Key {rec.name!r} has used its daily budget: {spent:,} of {rec.daily_tokens:,} tokens today "
                   f"(qwen-keys --daily-tokens). It resets at 00:00 UTC, in {_until(reset - now)}.", reset - now)


def over_monthly(rec: KeyRecord, spent: float, now: float | None = None) -> GatewayError:
    now = time.time() if now is None else now
    reset = next_month(now)
    day = time.strftime("%Y-%m-%d", time.gmtime(reset))
    return _budget(f"Key {rec.name!r} has spent its monthly budget: ${spent:,.2f} of ${rec.monthly_usd:,.2f} this "
                   f"month (qwen-keys --monthly-usd). It resets on {day} at 00:00 UTC, in {_until(reset - now)}.",
                   reset - now)


def _budget(message: str, seconds: float) -> GatewayError:
    return GatewayError(429, message, type="insufficient_quota", code="insufficient_quota",
                        headers={"retry-after": str(retry_seconds(seconds)), "x-should-retry": "false"})


def keys_unread() -> GatewayError:
    return GatewayError(503, "The gateway could not read its client keys from its shared database "
                             "(qwen_state_url) yet. Try again in a moment; if this lasts, check that the "
                             "database is reachable.", code="state_unavailable", headers={"retry-after": "5"})


def counts_unreachable(rec: KeyRecord) -> GatewayError:
    return GatewayError(503, f"The gateway could not reach its shared database (qwen_state_url) to count key "
                             f"{rec.name!r}'s requests against its limits. Try again in a moment.",
                        code="state_unavailable", headers={"retry-after": "5"})
