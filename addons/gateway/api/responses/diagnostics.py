"""OpenAI's prompt cache diagnostics on Qwen (docs/compatibility.md): a request's
`prompt_cache_options.comparison_response_id` is compared by the cache doctor's memory (cache/diagnosis.py) with
the request of that response, within the client's key, and the Response carries `prompt_cache_diagnostics` in
OpenAI's shape (`cache_miss` with its `reason`, `cache_hit`, `comparison_response_not_found`, `unavailable`) —
whole, and on every stream event that carries the Response (HTTP's SSE, the WebSocket, background runs).

Any recent response can be named (OpenAI keeps them all): every Responses request is kept under its id.
`cache_hit` says the structure let the cache reuse the compared prefix; where Qwen's usage says it read none of it
(a whole answer, or the stream's `response.completed`), the field is `unavailable` (no change to name; never
`cache_hit`, which a typed client reads as served from the cache) and `qwen_cache_miss` beside it says what Qwen
did: `evicted`, `expired` or `other_account` — or `lookback`, the request's markers past Qwen's 20-block lookback.
`cache_missed_tokens` is the cache doctor's own figure of the tokens lost once Qwen's usage is known (a whole
answer, `response.completed`), its estimate before."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...cache.diagnosis import CHANGED, NOT_FOUND, SAME, Diagnoser
from ...cache_turn import Asked
from ...errors import GatewayError
from ...observer import cache_write_tokens, cached_tokens, usage_int

if TYPE_CHECKING:
    from ...exchange import Exchange

# The doctor's causes (cache/compare.CAUSES) as OpenAI's reasons: the system text is part of the input there
REASONS = {"model": "model_changed", "route": "model_changed", "tool": "tools_changed",
           "tool_order": "tools_changed", "system": "input_changed", "edited": "input_changed",
           "mid_system": "input_changed", "image": "input_changed"}
Diagnose = Callable[[dict | None], dict | None]  # Qwen's usage in chat terms, when known -> the field


def asked(body: dict) -> Asked:
    """What a Responses body asks: a comparison when it names a response; kept under its id either way."""
    options = body.get("prompt_cache_options")
    compare_to = options.get("comparison_response_id") if isinstance(options, dict) else None
    if compare_to is not None and not isinstance(compare_to, str):
        raise GatewayError(400, "Invalid type for 'prompt_cache_options.comparison_response_id': expected a string.",
                           param="prompt_cache_options.comparison_response_id", code="invalid_type")
    return Asked(compare=compare_to is not None, compare_to=compare_to)


def diagnose(diagnoser: Diagnoser, ex: Exchange, response_id: str) -> Field:
    """The Response's `prompt_cache_diagnostics`, compared once when first asked (None: no comparison asked)."""
    return Field(diagnoser, ex, response_id)


class Field:
    """`prompt_cache_diagnostics` for one exchange's Response, given Qwen's usage when known (a Diagnose)."""

    def __init__(self, diagnoser: Diagnoser, ex: Exchange, response_id: str) -> None:
        self.diagnoser, self.ex, self.response_id = diagnoser, ex, response_id

    def forked(self, ex: Exchange) -> Field:
        """The same question for the exchange that goes upstream in this one's place (a background run's)."""
        return Field(self.diagnoser, ex, self.response_id)

    def __call__(self, usage: dict | None) -> dict | None:
        diagnoser, ex = self.diagnoser, self.ex
        diagnoser.answered(ex, self.response_id)
        comparison = diagnoser.compare(ex)
        if comparison is None:
            return None
        prompt = usage_int(usage, "prompt_tokens")
        known = (prompt, cached_tokens(usage) or 0, cache_write_tokens(usage) or 0) if prompt is not None else None
        if comparison.outcome == CHANGED:  # the doctor's own figure once Qwen's usage is known
            out: dict[str, Any] = {"type": "cache_miss", "reason": REASONS.get(comparison.cause or "", "input_changed"),
                                   "cache_missed_tokens": diagnoser.missed(ex, known),
                                   "comparison_reusable_tokens": comparison.reusable}
            return out
        if comparison.outcome == NOT_FOUND:
            return {"type": "comparison_response_not_found"}
        if comparison.outcome != SAME:
            return {"type": "unavailable"}
        did = None if known is None else diagnoser.qwen_did(ex, *known)
        if did is None:
            return {"type": "cache_hit"}
        return {"type": "unavailable", "qwen_cache_miss": {"type": did.kind, "cache_missed_tokens": did.missed,
                                                           "cache_lifetime_seconds": int(did.lifetime)}}


def encoder(encode: Callable[[Any], bytes], field: Diagnose | None) -> Callable[[Any], bytes]:
    """A stream's event encoder that sets the field on each Response an event carries (its first as the stream
    begins; `response.completed`'s again, with Qwen's usage)."""
    if field is None:
        return encode
    said: list[dict | None] = []

    def with_field(event: Any) -> bytes:
        response = event.get("response") if isinstance(event, dict) else None
        if isinstance(response, dict):
            if not said or event.get("type") == "response.completed":
                said[:] = [field(chat_usage(response.get("usage")))]
            if said[0] is not None:
                response["prompt_cache_diagnostics"] = said[0]
        return encode(event)

    return with_field


def chat_usage(usage: object) -> dict | None:
    """A Response's usage in chat terms (what the doctor reads), None when it has none yet."""
    if not isinstance(usage, dict) or not isinstance(usage.get("input_tokens"), int):
        return None
    details = usage.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return {"prompt_tokens": usage["input_tokens"], "prompt_tokens_details": {"cached_tokens": cached or 0}}
