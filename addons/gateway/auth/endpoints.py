"""Where an OAuth token's API lives: qwen-code's getCurrentEndpoint(resource_url)."""

from __future__ import annotations

from ..settings.auth import DEFAULT_DASHSCOPE_BASE_URL


def api_base_from_resource_url(resource_url: str | None, default: str = DEFAULT_DASHSCOPE_BASE_URL) -> str:
    """`portal.qwen.ai` -> `https://portal.qwen.ai/v1`; a scheme given is kept (http://127.0.0.1:9/v1 for tests)."""
    base = (resource_url or "").strip() or default
    if "://" not in base:
        base = "https://" + base
    base = base.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base
