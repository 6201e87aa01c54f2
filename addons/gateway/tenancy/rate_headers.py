"""A named key's rate limits as the real APIs announce them, on every answer and refusal of a key with rpm
or tpm (a key without them gets none):

- OpenAI: `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests`
  (and `-tokens`); the reset a duration as OpenAI writes it (`1s`, `6m0s`, `250ms`).
- Anthropic (the Messages API): `anthropic-ratelimit-requests-limit`, `-remaining`, `-reset` (and
  `tokens-`, `input-tokens-`, `output-tokens-`); the reset an RFC 3339 time. A key's one tokens-per-minute
  budget counts input and output together: each of the three token families shows it.

The reset is when the window is empty again: every request (token) it counts has left the minute."""

from __future__ import annotations

import math
import time

from .. import dialects
from .limits import RPM, TPM, Limiter
from .ring import KeyRecord

ANTHROPIC_FAMILIES = {"tokens": ("tokens", "input-tokens", "output-tokens")}


def duration(seconds: float) -> str:
    """OpenAI's (Go's) way: `250ms` under a second, else whole seconds rounded up (`59s`, `1m0s`)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def rfc3339(seconds: float, now: float | None = None) -> str:
    at = (time.time() if now is None else now) + max(seconds, 0.0)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(at)))


def headers(dialect: str, states: list[tuple[str, int, int, float]], now: float | None = None) -> dict[str, str]:
    """`states`: (what: "requests" or "tokens", limit, remaining, seconds until the window is empty)."""
    out = {}
    if dialects.of(dialect).limits_shape == dialects.ANTHROPIC_SHAPE:
        for what, limit, remaining, reset in states:
            for family in ANTHROPIC_FAMILIES.get(what, (what,)):
                out[f"anthropic-ratelimit-{family}-limit"] = str(limit)
                out[f"anthropic-ratelimit-{family}-remaining"] = str(remaining)
                out[f"anthropic-ratelimit-{family}-reset"] = rfc3339(reset, now)
    else:
        for what, limit, remaining, reset in states:
            out[f"x-ratelimit-limit-{what}"] = str(limit)
            out[f"x-ratelimit-remaining-{what}"] = str(remaining)
            out[f"x-ratelimit-reset-{what}"] = duration(reset)
    return out


def of_key(limiter: Limiter, dialect: str, rec: KeyRecord) -> dict[str, str]:
    """The headers of a key with rpm or tpm: what its limiter's last answer says is left of each."""
    states = [(what, limit, *limiter.state(rec.name, kind, limit))
              for what, kind, limit in (("requests", RPM, rec.rpm), ("tokens", TPM, rec.tpm)) if limit]
    return headers(dialect, states)
