"""The client dialects: whose API a client speaks (`Exchange.dialect`, the endpoint's), and what the shared code
answers it in — its model list's shape, its rate-limit headers, its refusal of a spent budget, the variable its
SDK takes the API's base from. One record each: the shared code (api/models.py, ingress/mistakes.py,
models/routes.py, tenancy/rate_headers.py, tenancy/refusals.py) asks the record, never the dialect's name, so a
new dialect that reads these as one of the two does is its record and its package under api/ (docs/architecture.md,
"Seven changes")."""

from __future__ import annotations

from dataclasses import dataclass

# the shapes a record names, each built where it is used
OPENAI_SHAPE, ANTHROPIC_SHAPE = "openai", "anthropic"


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # as Endpoint.dialect and qwen_routes' `dialect:` scope say it
    base_url_env: str  # the variable its SDKs and agents take the API's base from
    base_path: str  # what that base ends in ("/v1" for OpenAI's SDKs; Anthropic's add /v1 themselves)
    models_shape: str  # GET /v1/models: OpenAI's object list, or Anthropic's page with display names
    limits_shape: str  # a key's rate limits: OpenAI's x-ratelimit-* headers, or Anthropic's anthropic-ratelimit-*
    budget_shape: str  # a spent budget: OpenAI's 429 insufficient_quota, or Anthropic's spend-limit refusal
    tier_ids: bool  # a model id of Claude's tiers answered by GET /v1/models/ID when the model map answers it


OPENAI = Dialect("openai", "OPENAI_BASE_URL", "/v1", OPENAI_SHAPE, OPENAI_SHAPE, OPENAI_SHAPE, False)
ANTHROPIC = Dialect("anthropic", "ANTHROPIC_BASE_URL", "", ANTHROPIC_SHAPE, ANTHROPIC_SHAPE, ANTHROPIC_SHAPE, True)
DIALECTS = {d.name: d for d in (OPENAI, ANTHROPIC)}


def of(name: str) -> Dialect:
    """The record of dialect `name` (OpenAI's for a name no record has: the gateway's default)."""
    return DIALECTS.get(name, OPENAI)
