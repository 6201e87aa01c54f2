"""DashScope as a provider (providers.py): Qwen Code OAuth logins and every keyed plan's accounts. Besides its
`Upstream`, the pairs that skip the chat form — embeddings always (its endpoint takes OpenAI's body), Messages with
`qwen_messages_passthrough` (a key account's Anthropic-compatible base), Responses with `qwen_responses_native` (a
pay-as-you-go key account's own Responses API, on the models it serves with its session cache) —, its Files and
Batch APIs (batch_calls.py over batch_wire.py) and each key account's own model list (key_models.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ...accounts import KEY, OAUTH, Credential, Pool
from ...exchange import Exchange
from ...models import catalogue
from ...auth.credfile import atomic_write
from ...models.listed_kept import kept_lists
from ...providers import Leg, Provider
from ...settings.config import Config
from . import batch_wire, drift, plans
from .batch_calls import BatchCalls
from .key_models import KeyCatalogue
from .upstream import DASHSCOPE, NAME


def legs(config: Config) -> dict[str, Leg]:
    out = {"embeddings": Leg("embeddings", passthrough=True)}
    if config.messages_passthrough:
        out["messages"] = Leg("v1/messages", passthrough=True, base=anthropic_base)
    if config.responses_native:
        out["responses"] = Leg("responses", passthrough=True, base=responses_base, models=serves_responses)
    return out


def anthropic_base(cred: Credential) -> str | None:
    return plans.anthropic_base(cred.base_url) if cred.kind == KEY else None


def responses_base(cred: Credential) -> str | None:
    """A pay-as-you-go key account's own base, whose `/responses` is Model Studio's Responses API
    (plans.responses_base): None for every other account."""
    return plans.responses_base(cred.base_url) if cred.kind == KEY else None


def serves_responses(model: str) -> bool:
    """A model Model Studio's Responses API serves with its session cache (the catalogue's `responses` and
    `session_cache`): without the session cache, the translation's explicit cache markers cost less."""
    row = catalogue.find(model)
    return row is not None and row.responses and row.session_cache


def batch_calls(pool: Callable[[], Pool | None], priced_only: Callable[[Exchange], None]) -> BatchCalls:
    """The Files and Batch APIs' calls through the retry policy and the pool (batch_calls.py)."""
    return BatchCalls(pool, batch_send, priced_only)


async def batch_send(cred: Credential, method: str, suffix: str, body: bytes, content_type: str, query: str,
                     client_agent: str, config: Config) -> tuple[int, str, bytes]:
    reply = await batch_wire.send(cred, method, suffix, body, content_type=content_type, query=query,
                                  client_agent=client_agent, network=config.network)
    return reply.status, reply.content_type, reply.body


def account_models(config: Config, pool: Pool, rows: list[dict]) -> None:
    """Each usable key account's own model list joins /v1/models (key_models.py): registered once per model map
    (a new configuration starts anew), fetched when due, the key read at each fetch."""
    live = config.models.accounts
    account = getattr(pool, "get", None)
    for row in rows:
        name = row.get("name")
        if row.get("kind") != KEY or row.get("provider", NAME) != NAME or row.get("state") != "ok" or not name \
                or account is None:
            continue
        if not live.registered(name):
            kept = kept_lists(getattr(config, "state_dir", None), getattr(config, "state_url", None), atomic_write)
            live.register(name, (), KeyCatalogue(live, name, functools.partial(_ready, account, name),
                                                 config.network, kept, config.models.named).refresh_soon, provider=NAME)
            if (last := kept.last(name)) is not None:
                live.restore(name, last)  # the last run's, until Qwen's list (or the team's) is read again
    live.wanted()


def _ready(account: Callable[[str], Any], name: str) -> Credential | None:
    return account(name).ready()


# Qwen Code logins and keys that name no provider are its own; the catalogue describes its models (plans.py: its keys')
PROVIDER = Provider(NAME, lambda config: DASHSCOPE, legs, batch_calls=batch_calls, account_models=account_models,
                    drift=drift.check, kinds=frozenset({OAUTH, KEY}), catalogued=True, plans=plans.PLANS)
