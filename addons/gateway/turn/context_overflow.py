"""A prompt over its model's limit, with both numbers, so that each client reads it in its own API's words:
OpenAI's `context_length_exceeded` ("This model's maximum context length is M tokens. However, your messages
resulted in N tokens…"), Anthropic's `prompt is too long: N tokens > M maximum` (api/messages/errors.py;
Claude Code compacts by the gap between the two). The context guard (turn/context_guard.py) knows both numbers;
Qwen's own refusal names M ("Range of input length should be [1, M]") and the gateway counts N.

N is always the gateway's count of the client's prompt (tokens.py, tiktoken): the count a Messages stream
reports as `input_tokens`, and what the client can compare with what it sent.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

from ..errors import GatewayError
from ..tokens import ESTIMATE, SKIPPED, estimate_request_tokens

if TYPE_CHECKING:
    from ..exchange import Exchange

log = logging.getLogger("qwen")

# The request parameter a context error names, per endpoint (embeddings have no context limit).
PROMPT_PARAMS = {"chat.completions": "messages", "responses": "input", "completions": "prompt", "messages": "messages"}
WAIT_S = 2.0  # how long a count waits for the estimator's before counting itself
# Qwen's "Range of input length should be [1, 983616]"; an OpenAI-compatible upstream's own wording
_LIMIT = re.compile(r"input length should be \[1, (\d+)\]|maximum context length is (\d+)", re.I)


class ContextOverflow(GatewayError):
    """400 `context_length_exceeded` in OpenAI's words; `tokens` and `limit` for the dialects that word it
    otherwise."""

    def __init__(self, tokens: int, limit: int, param: str | None = "messages") -> None:
        super().__init__(400, f"This model's maximum context length is {limit} tokens. However, your messages "
                              f"resulted in {tokens} tokens. Please reduce the length of the messages.",
                         type="invalid_request_error", code="context_length_exceeded", param=param)
        self.tokens = tokens
        self.limit = limit


def upstream_limit(message: str) -> int | None:
    """The limit an upstream's context refusal names, if it names one."""
    found = _LIMIT.search(message)
    return int(found.group(1) or found.group(2)) if found else None


async def over_upstream_limit(ex: Exchange, message: str, fallback: GatewayError) -> GatewayError:
    """The upstream refused the prompt as too long (`message`, its words): the same error as the guard's,
    its limit from the message and the prompt counted by the gateway — at least one token over the limit,
    since the upstream, whose tokenizer differs, found it over. `fallback` when the message names no limit."""
    limit = upstream_limit(message)
    if limit is None:
        return fallback
    tokens = await prompt_tokens(ex)
    return ContextOverflow(max(tokens or 0, limit + 1), limit, param_of(ex))


def param_of(ex: Exchange) -> str | None:
    return PROMPT_PARAMS.get(ex.endpoint.name if ex.endpoint is not None else "", "messages")


async def prompt_tokens(ex: Exchange) -> int | None:
    """The client's prompt counted with tiktoken (`ex.count.tokens`, `ex.count.method` set): the
    estimator's count when one is running (bounded wait) and it counts with tiktoken, else one in a thread.
    None when it cannot be counted."""
    if ex.count.tokens is not None and ex.count.method not in (ESTIMATE, SKIPPED):
        return ex.count.tokens
    if ex.count.task is not None:
        try:
            await asyncio.wait_for(asyncio.shield(ex.count.task), WAIT_S)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the request itself was cancelled, not the count
        except Exception:  # timed out or failed: count here
            pass
        if ex.count.tokens is not None and ex.count.method not in (ESTIMATE, SKIPPED):
            return ex.count.tokens
    if not isinstance(ex.body, dict):
        return None
    try:
        tokens, method = await asyncio.to_thread(estimate_request_tokens, ex.body)
    except Exception:  # never let a count break a request: the upstream has its own limit
        log.debug("qwen: could not count a prompt", exc_info=True)
        return None
    ex.count.tokens, ex.count.method = tokens, method
    return tokens
