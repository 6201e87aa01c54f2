"""Small helpers shared by the observability addons (no state of their own)."""

from __future__ import annotations

import os
from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.proxy import mode_specs

# Client paths (after /v1) whose prompts are counted and guarded, and the gateway's endpoint names.
PROMPT_ENDPOINTS = {"/chat/completions": "chat.completions", "/responses": "responses", "/completions": "completions"}


def option(name: str, default=None):
    """An option's value, or `default` when no loaded addon registered it (e.g. a test without the gateway)."""
    try:
        return getattr(ctx.options, name)
    except (AttributeError, KeyError):
        return default


def state_dir() -> Path:
    """The gateway's state folder: option qwen_state_dir, else $QWEN_GATEWAY_HOME, else ~/.qwen-gateway."""
    value = option("qwen_state_dir", "") or os.environ.get("QWEN_GATEWAY_HOME") or "~/.qwen-gateway"
    return Path(value).expanduser()


def claims(flow: http.HTTPFlow, gateway=None) -> bool:
    """Whether the gateway answers this flow: the gateway's own rule when we have it, else its documented
    rule (reverse mode: everything; other modes: hosts in qwen_intercept_hosts)."""
    if gateway is not None and hasattr(gateway, "claims"):
        return gateway.claims(flow)
    if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
        return True
    hosts = {h.strip().lower() for h in option("qwen_intercept_hosts", ["api.openai.com"]) or []}
    return flow.request.pretty_host.lower() in hosts


def prompt_endpoint(flow: http.HTTPFlow) -> str | None:
    """The endpoint name of a POST that carries a prompt (chat/completions, responses, completions)."""
    if flow.request.method.upper() != "POST":
        return None
    path = flow.request.path.split("?", 1)[0].rstrip("/")
    sub = path[3:] if path.startswith("/v1/") else path
    return PROMPT_ENDPOINTS.get(sub)


def gateway_record(flow: http.HTTPFlow) -> dict | None:
    """The gateway's record of a finished (or finishing) exchange, or None for flows it did not handle."""
    meta = flow.metadata.get("qwen")
    return meta if isinstance(meta, dict) and meta.get("endpoint") else None


def status_of(meta: dict) -> int | None:
    status = meta.get("status") or (meta.get("error") or {}).get("status")
    return status if isinstance(status, int) else None


def cached_tokens(usage: dict) -> int | None:
    """Cached prompt tokens: OpenAI's prompt_tokens_details.cached_tokens (or a top-level cached_tokens)."""
    details = usage.get("prompt_tokens_details")
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    if value is None:
        value = usage.get("cached_tokens")
    return value if isinstance(value, int) else None
