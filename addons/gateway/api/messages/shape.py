"""Anthropic's request shape as its SDK types it (`MessageCreateParams`, anthropic-python 2.10, the beta fields
included): the fields a Messages body may have, and the small objects whose every key and literal the API
checks — `metadata`, `output_config`, `cache_control`. Anything else is Anthropic's 400 `invalid_request_error`
in its pydantic words, naming the field (`metadata.session: Extra inputs are not permitted`,
`output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'`), before anything goes
upstream. Pure functions.
"""

from __future__ import annotations

from collections.abc import Collection

from ...errors import GatewayError

# MessageCreateParams' body fields, beta ones included (Claude Code sends `context_management`, `diagnostics`),
# and Claude Code's `safeguards` (not typed by the SDK; sent on interactive turns). `betas`, `workspace_id` and
# `user_profile_id` are headers the SDK sends, never body fields.
FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "thinking", "output_config", "cache_control", "container", "diagnostics",
    "inference_geo", "service_tier", "speed", "context_management", "mcp_servers", "billing_policy", "compaction",
    "fallback_credit_token", "fallbacks", "thread", "safeguards"})
EFFORTS = ("low", "medium", "high", "xhigh", "max")  # OutputConfigParam.effort
_TTLS = ("5m", "1h")  # CacheControlEphemeralParam.ttl
_METADATA = ("user_id",)
_OUTPUT_CONFIG = ("effort", "format", "task_budget")  # task_budget: the beta's
# `scope` is not typed by the SDK, but Claude Code marks a system block `{"type": "ephemeral", "scope": "global"}`
# when it talks to api.anthropic.com: a gateway in its path (transparent mode) gets it
_CACHE_CONTROL = ("type", "ttl", "scope")


def bad(message: str, param: str | None = None) -> GatewayError:
    """Anthropic's 400 for a request it would refuse."""
    return GatewayError(400, message, type="invalid_request_error", param=param, code="invalid_request_error")


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _either(values: Collection[str]) -> str:
    """pydantic's list of literals: `'a', 'b' or 'c'`."""
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def only(value: dict, known: Collection[str], where: str = "") -> None:
    """Refuse the first key `known` does not name, as pydantic refuses an extra input."""
    extra = next((k for k in value if k not in known), None)
    if extra is not None:
        raise bad(f"{_at(where, str(extra))}: Extra inputs are not permitted", _at(where, str(extra)))


def dictionary(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise bad(f"{where}: Input should be a valid dictionary", where)
    return value


def literal(value: object, allowed: Collection[str], where: str) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise bad(f"{where}: Input should be {_either(allowed)}", where)


def fields(body: dict) -> None:
    """The body's own fields: those of MessageCreateParams only."""
    only(body, FIELDS)


def metadata(value: object) -> dict:
    """`metadata`: at most a `user_id`, a string or null ({} when absent)."""
    if value is None:
        return {}
    meta = dictionary(value, "metadata")
    only(meta, _METADATA, "metadata")
    if meta.get("user_id") is not None and not isinstance(meta["user_id"], str):
        raise bad("metadata.user_id: Input should be a valid string", "metadata.user_id")
    return meta


def output_config(value: object) -> dict:
    """`output_config`: an effort of Anthropic's levels, a format object, a task budget ({} when absent)."""
    if value is None:
        return {}
    config = dictionary(value, "output_config")
    only(config, _OUTPUT_CONFIG, "output_config")
    if config.get("effort") is not None:
        literal(config["effort"], EFFORTS, "output_config.effort")
    if config.get("format") is not None:
        dictionary(config["format"], "output_config.format")
    return config


def cache_control(value: object, where: str) -> dict:
    """A `cache_control` (`where`: the field's own path) as Anthropic takes it: `{"type": "ephemeral"}`, with an
    optional ttl of 5 minutes or an hour."""
    marker = dictionary(value, where)
    only(marker, _CACHE_CONTROL, where)
    if "type" not in marker:
        raise bad(f"{where}.type: Field required", f"{where}.type")
    literal(marker["type"], ("ephemeral",), f"{where}.type")
    if marker.get("ttl") is not None:
        literal(marker["ttl"], _TTLS, f"{where}.ttl")
    return marker
