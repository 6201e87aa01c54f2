"""The errors a request gets at the entrance of a gateway with client keys, in OpenAI's shape (the addon answers
them in the client's dialect: Anthropic's clients read a 429 as rate_limit_error). A missing or wrong key
says how to get one, a key where the gateway takes none (the URL, basic auth) where it goes; a rate limit
says when to retry (Retry-After, never beyond the minute); a spent budget says which budget, how much was
spent and when it resets — on OpenAI's dialects a 429 `insufficient_quota`, on the Messages API a 400 as
Anthropic answers a reached spend limit (none waits a day on a Retry-After). Every refusal no retry can fix
carries `x-should-retry: false`: the SDKs and Claude Code then give up at once (Claude Code re-sends even a 400,
with fewer features, unless told not to)."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

from .. import dialects
from ..errors import NO_RETRY, Ended, GatewayError
from ..exchange import ErrorInfo
from .budgets import DAILY_TOKENS, DAY, MONTH, MONTHLY_USD, Line, amounts
from .ring import KeyRecord
from .limits import retry_seconds
from .spend import next_midnight, next_month

REFUSAL_CODES = frozenset({"invalid_api_key", "rate_limit_exceeded", "insufficient_quota", "state_unavailable"})
UNPRICED = "model_unpriced"  # refused after the account was chosen (the price is its billing's): the gateway's own
SPEND_LIMIT = ("You have reached your specified API usage limits. You will regain access on {day} at 00:00 UTC.")


@functools.cache  # eight answers, made once
def no_key(presented: bool, named: bool, local: bool) -> GatewayError:
    """401 for a request without a key (`presented` False) or with a wrong one; how to get one, and on the
    gateway's own machine (`local`: a loopback client) where the named keys are listed."""
    first = ("Incorrect API key provided. This gateway requires one of its client keys" if presented else
             "You didn't provide an API key. This gateway requires one of its client keys")
    how = ("Ask the gateway's operator for one (they make it with `qwen-keys add NAME`)." if named else
           "Ask the gateway's operator for one (its keys file: qwen_client_keys_file or $QWEN_GATEWAY_KEYS).")
    here = (" On this machine, `qwen-keys list` shows the gateway's named keys (a key itself is printed once, by "
            "`qwen-keys add` or `qwen-keys rotate`)." if local and named else "")
    return GatewayError(401, f"{first} (Authorization: Bearer KEY or x-api-key). {how}{here}",
                        type="invalid_request_error", code="invalid_api_key",
                        headers=NO_RETRY)


@functools.cache
def key_in_url() -> GatewayError:
    """A key in the URL's query, even beside a good one in a header: URLs are kept by every hop (logs, shell
    histories, proxies), so the client is told to stop rather than served."""
    return GatewayError(401, "A client key in the URL is refused: URLs end up in logs on the way. Send it as "
                             "Authorization: Bearer KEY (or x-api-key), and ask the gateway's operator for a new "
                             "one if that URL was shared (qwen-keys rotate).", type="invalid_request_error",
                        code="invalid_api_key", headers=NO_RETRY)


@functools.cache
def basic_auth() -> GatewayError:
    return GatewayError(401, "HTTP basic auth (Authorization: Basic) is not accepted. Send the key as "
                             "Authorization: Bearer KEY (or x-api-key).", type="invalid_request_error",
                        code="invalid_api_key", headers=NO_RETRY)


def revoked(rec: KeyRecord) -> GatewayError:
    return GatewayError(401, f"The key {rec.name!r} was revoked. Ask the gateway's operator for a new one "
                             "(qwen-keys add or rotate).", type="invalid_request_error", code="invalid_api_key",
                        headers=NO_RETRY)


def refused_record(rec: KeyRecord) -> GatewayError:
    """A named key the gateway refuses: revoked, or changed in a way this gateway could not read yet."""
    if rec.revoked:
        return revoked(rec)
    return GatewayError(503, f"The key {rec.name!r} was changed (qwen-keys) and this gateway could not read the "
                             "change yet: it refuses the key until it can. Try again in a moment.",
                        code="state_unavailable", headers={"retry-after": "5"})


def ended_in_flight(name: str, change: str) -> Ended:
    """A running request of a key revoked, rotated or deleted (qwen_key_change_in_flight=end): ended at once."""
    return Ended(401, f"The key {name!r} was {change} while this request ran: the gateway ended its answer "
                      "(qwen-keys). Ask the gateway's operator for a new one.", type="invalid_request_error",
                 code="invalid_api_key", headers=NO_RETRY)


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
                        headers=NO_RETRY)


def _until(seconds: float) -> str:
    minutes = max(1, int(seconds // 60))
    days, rest = divmod(minutes, 1440)
    return " ".join(p for p in (f"{days} d" if days else "", f"{rest // 60} h" if rest >= 60 else "",
                                f"{rest % 60} min") if p)


def spent_budget(line: Line, key: str, spent: float, dialect: str = "", now: float | None = None) -> GatewayError:
    """A budget reached (`spent` of its limit), in the words its declaration gives (tenancy/budgets.py): when it
    resets, on OpenAI's dialects as a 429, on the Messages API as Anthropic's spend limit."""
    now = time.time() if now is None else now
    budget = line.budget
    reset = next_midnight(now) if budget.period == DAY else next_month(now)
    said, limit = amounts(line, spent)
    if dialects.of(dialect).budget_shape == dialects.ANTHROPIC_SHAPE:
        return _spend_limit(reset, budget.anthropic.format(key=key, model=line.model, spent=said, limit=limit))
    when = (f"on {time.strftime('%Y-%m-%d', time.gmtime(reset))} " if budget.period == MONTH else "") + \
        f"at 00:00 UTC, in {_until(reset - now)}"
    return _budget(budget.openai.format(key=key, model=line.model, spent=said, limit=limit, reset=when))


def over_daily(rec: KeyRecord, spent: int, dialect: str = "", now: float | None = None) -> GatewayError:
    return spent_budget(Line(DAILY_TOKENS, "", rec.daily_tokens), rec.name, spent, dialect, now)


def over_monthly(rec: KeyRecord, spent: float, dialect: str = "", now: float | None = None) -> GatewayError:
    return spent_budget(Line(MONTHLY_USD, "", rec.monthly_usd), rec.name, spent, dialect, now)


def _budget(message: str) -> GatewayError:
    """No Retry-After: the wait is hours or days, beyond any rate-limit window a client would wait out."""
    return GatewayError(429, message, type="insufficient_quota", code="insufficient_quota",
                        headers=NO_RETRY)


def _spend_limit(reset: float, which: str) -> GatewayError:
    """Anthropic's answer to a reached spend limit, word for word, then which budget of which key."""
    day = time.strftime("%Y-%m-%d", time.gmtime(reset))
    return GatewayError(400, f"{SPEND_LIMIT.format(day=day)} ({which})", type="invalid_request_error",
                        code="insufficient_quota", headers=NO_RETRY)  # Claude Code re-sends a 400 otherwise


def unpriced(name: str, model: str, line: Line) -> GatewayError:
    """A key with a USD budget (`line`'s) asked a model its account has no price for: what it cost could not be
    counted."""
    budget = line.budget
    return GatewayError(400, f"Key {name!r} has {budget.what(line.model)} (qwen-keys --{budget.flag}), and {model} has "
                             "no price on this gateway's account, so what it costs could not count against the budget. "
                             f"Ask the gateway's operator to give {model} a price in the prices file "
                             "(qwen_prices_file) or count it at a priced model's (qwen_unpriced_as), or to give the "
                             f"key a token budget instead of a USD one (qwen-keys set NAME {budget.option(line.model, '0')}"
                             " --daily-tokens N).", type="invalid_request_error", code=UNPRICED, param="model",
                        headers=NO_RETRY)


def refused(error: ErrorInfo | None, answered_by: object) -> bool:
    """Whether the gateway refused a key's request itself (before any account was asked, or for no price)."""
    if error is None:
        return False
    return error.code == UNPRICED or (answered_by is None and error.code in REFUSAL_CODES)


def keys_unread(why: str = "") -> GatewayError:
    """`why`: what the database's failure said (a password refused, an unknown host, down)."""
    return GatewayError(503, f"The gateway has not read its named client keys: {unread(why)} and it has no copy "
                             "of them yet. Every request is refused until it can read them; try again in a moment, "
                             "and if this lasts, check that the database is reachable.", code="state_unavailable",
                        headers={"retry-after": "5"})


def unread(why: str) -> str:
    """Why the shared keys are not read: the database's failure, or none so far (their first read still runs)."""
    if why:
        return f"its shared database (qwen_state_url) cannot be used ({why})"
    return "their first read from its shared database (qwen_state_url) has not finished yet (no failure so far)"


def counts_unreachable(rec: KeyRecord) -> GatewayError:
    return GatewayError(503, f"The gateway could not reach its shared database (qwen_state_url) to count key "
                             f"{rec.name!r}'s requests against its limits and budgets (it refuses rather than "
                             "count alone). Try again in a moment.",
                        code="state_unavailable", headers={"retry-after": "5"})


def over_budget(dialect: str, key: str, lines: Sequence[Line], counted: Sequence[float]) -> None:
    """Raises the refusal of the first budget that what the key spent (and holds) reached."""
    for line, spent in zip(lines, counted):
        if spent >= line.limit:
            raise spent_budget(line, key, spent, dialect)
