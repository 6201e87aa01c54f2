"""The context guard: a prompt over its model's token limit gets `context_length_exceeded` (turn/context_overflow.py: in
the client's own words) at once, instead of a slow 400 (or a 504 after minutes) from Qwen. A step the
gateway awaits before forwarding:

    error = await context_check(ex, config)   # None: go on

Cheap for ordinary requests: a body no longer than the limit in bytes cannot exceed it (a cl100k token is
at least one UTF-8 byte, and JSON spells text in at least as many bytes; images, which count a fixed
amount, are added to the bound), so only bodies longer than the limit are counted — with tiktoken, never
on the estimator's characters / 4. Bounded for huge ones: the count is tokens.py's (pieces of at most 64 K
characters, sampled above 1 Mi characters) — the estimator's, already running for this exchange, when it
counts with tiktoken, else one in a thread (overflow.prompt_tokens).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..models.routes import LONG
from ..observer import endpoint_name
from .context_overflow import PROMPT_PARAMS, ContextOverflow, prompt_tokens
from ..tokens import ESTIMATE, IMAGE_TOKENS, SAMPLED, truncate_chat

if TYPE_CHECKING:
    from ..settings.config import Config
    from ..exchange import Exchange

_IMAGE_TYPES = ("image_url", "input_image", "image")
# A sampled estimate is off by a few percent: within this margin above the limit, Qwen (which has its
# own limit) decides rather than the guard refusing a prompt that may fit.
SAMPLED_MARGIN = 0.05


def byte_bound(size: int, images: int = 0) -> int:
    """An upper bound of the tokens a body of `size` bytes with `images` image parts can count."""
    return size + images * IMAGE_TOKENS


def count_images(node, depth: int = 0) -> int:
    """Image parts anywhere in a body (cheap: no text is copied). Deeper than JSON allows: not counted."""
    if depth > 200:
        return 0
    if isinstance(node, dict):
        if node.get("type") in _IMAGE_TYPES:
            return 1
        return sum(count_images(v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
    if isinstance(node, list):
        return sum(count_images(v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return 0


async def context_check(ex: Exchange, config: Config) -> ContextOverflow | None:
    """The error to answer when the prompt is over its model's limit, else None. The limit is looked up
    by the model name the client sent. Sets `ex.count.tokens` / `ex.count.method` when it counted."""
    param = PROMPT_PARAMS.get(endpoint_name(ex) or "")
    body = ex.body
    if param is None or not isinstance(body, dict):
        return None
    routed = ex.routed  # a long prompt's route (turn/model_route.py): judged by the model that takes it
    limit = config.context_limit(routed.model if routed is not None and routed.reason == LONG else body.get("model"))
    if not limit:
        return None
    if ex.count.tokens is None or ex.count.method == ESTIMATE:  # not counted yet, or by characters / 4
        size = ex.client.size
        if size and size <= limit and byte_bound(size, count_images(body)) <= limit:
            return None  # cannot exceed the limit: not counted
        await prompt_tokens(ex)
    tokens = ex.count.tokens
    if tokens is None:
        return None  # could not count: Qwen has its own limit
    over = tokens > limit
    if over and (ex.count.method or "").startswith(SAMPLED):
        over = tokens > limit * (1 + SAMPLED_MARGIN)
    if not over:
        return None
    ex.notes.append(f"context guard: {tokens} tokens > {limit}")
    if ex.truncate_oldest and isinstance(ex.chat_body, dict):  # Responses: drop the oldest items
        fitted = await asyncio.to_thread(truncate_chat, ex.chat_body, limit)
        if fitted is not None:
            ex.chat_body, dropped, ex.count.tokens = fitted
            ex.notes.append(f"truncation auto: the {dropped} oldest messages dropped to fit {limit} tokens")
            return None  # (none dropped: the translated request, counted alone, fits)
    return ContextOverflow(tokens, limit, param)
