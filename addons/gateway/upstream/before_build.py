"""What an attempt waits for before its body is built, for an upstream that needs it (the engine asks, upstream/
engine.py): a self-hosted account's own model list, read once after a start (the client's aliases go to what the server
serves), and the prompt counted when the prompt and the answer share one window (providers.Upstream.fits_window)."""

from __future__ import annotations

from ..accounts import Credential
from ..errors import NO_RETRY, GatewayError
from ..exchange import Exchange
from ..models import catalogue
from ..models.live import LiveModels
from ..provider_registry import catalogued
from ..providers import Prompt, Upstream
from ..tokens import ESTIMATE, SKIPPED
from ..turn.context_overflow import prompt_tokens

# How long the first requests after a start wait for a self-hosted account's own list (read at start: a fraction of a
# second); never again once it answered (or failed)
FIRST_LIST_WAIT_S = 5.0


async def ready(ex: Exchange, cred: Credential, upstream: Upstream, lists: LiveModels) -> None:
    if not catalogued(cred.provider):  # its own list is all it serves
        await lists.first_read(cred.account, FIRST_LIST_WAIT_S)
    if upstream.fits_window and _capped(ex.chat_body):
        await prompt_tokens(ex)  # counted off the loop (the estimator's, or a thread's)


def _capped(chat: object) -> bool:
    return isinstance(chat, dict) and any(isinstance(chat.get(k), int) for k in ("max_tokens", "max_completion_tokens"))


def prompt(ex: Exchange) -> Prompt | None:
    """The prompt's size for a body that must fit one window: the server's own count when its refusal said it, else
    the gateway's (tiktoken; a characters / 4 guess is no count)."""
    if ex.attempt.counted is not None:
        return Prompt(ex.attempt.counted[0], exact=True, window=ex.attempt.counted[1])
    if ex.count.tokens is not None and ex.count.method not in (None, ESTIMATE, SKIPPED):
        return Prompt(ex.count.tokens)
    return None


def still_served(model: str) -> None:
    """A model Model Studio no longer serves (the catalogue's retirement past) is answered here, never sent (engine.build:
    a live request's and a batch line's alike)."""
    if (gone := catalogue.retired(model)) is not None:
        raise GatewayError(404, catalogue.retirement_message(model, gone), code="model_not_found", param="model",
                           headers=NO_RETRY)
