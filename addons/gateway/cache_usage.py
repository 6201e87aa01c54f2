"""What a usage says of Qwen's prompt cache, read in one place for every reader: the ledger's row, the request
line, metrics and the cache doctor (observe/), the dialects' diagnostics and mitmweb (observer.py's two counts), the
price (pricing/prices.py), the usage a resumed stream sums (turn/answer_so_far.py) and the drift check's probe.

- read: `prompt_tokens_details.cached_tokens` (a top-level `cached_tokens` where the details have none);
- written: Qwen's own `cache_creation_input_tokens`, else OpenAI's `cache_write_tokens` (the same count, which
  the gateway adds beside Qwen's for OpenAI's clients: upstream/dashscope/answer.py);
- of those, written for an hour: `cache_creation.ephemeral_1h_input_tokens` (the rest for 5 minutes);
- kind: "explicit" when the request used the explicit cache (markers): `cache_type` "ephemeral", a write, or
  Qwen's creation count said at all (0 included) — what it wrote stays for its lifetime, and its reads are priced
  apart; "implicit" for reads without it; None for neither.

A count that is not a whole number of tokens (absent, null, negative, a boolean) is unknown: None, never 0."""

from __future__ import annotations


EXPLICIT, IMPLICIT = "explicit", "implicit"


def read(usage: object) -> tuple[int | None, int | None, int, str | None]:
    """(read, written, written for an hour, kind) of a usage; unknown counts None, the hour's 0."""
    if not isinstance(usage, dict):
        return None, None, 0, None
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, dict):
        cached = _count(usage.get("cached_tokens"))
        return cached, None, 0, IMPLICIT if cached else None
    cached = details.get("cached_tokens")  # _count's test, read here: every turn's, without a call
    if cached is None:
        cached = usage.get("cached_tokens")
    cached = cached if cached.__class__ is int and cached >= 0 else None  # type() not called: ~300 instructions
    qwens = details.get("cache_creation_input_tokens")
    written = details.get("cache_write_tokens") if qwens is None else qwens
    written = written if written.__class__ is int and written >= 0 else None
    hour = 0
    if written:
        creation = details.get("cache_creation")
        if isinstance(creation, dict):
            hour = min(written, _count(creation.get("ephemeral_1h_input_tokens")) or 0)
    explicit = written or qwens is not None or details.get("cache_type") == "ephemeral"
    return cached, written, hour, EXPLICIT if explicit else IMPLICIT if cached else None


def _count(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None  # a bool is no count
