"""A batch's chat lines translated as the chat path translates a request, and its results read back as the chat
path reads a whole answer. The composition (components.py) joins these to the engine's body builder and to the
batch provider's upstream: it translates nothing itself."""

from __future__ import annotations

from collections.abc import Callable

from ...accounts import Credential
from ...errors import GatewayError
from ...exchange import Exchange
from ...providers import Upstream
from ...settings.config import Config
from ..chat import CHAT

Build = Callable[[Exchange, Credential], object]  # the engine's body builder (UpstreamEngine.build), for an account


def chat_line(ex: Exchange, body: dict, cred: Credential, config: Config, *, build: Build) -> dict:
    """A batch's chat line as the chat path translates a request: the chat dialect's checks and translation, then
    the engine's own body builder (`UpstreamEngine.build`: the model map, a retired model answered, the provider's
    rules with what its refusals taught) for the account that runs the batch (never streamed: a batch's answers are
    whole)."""
    line = ex.fork(endpoint=CHAT, body=body, requested_model=str(body.get("model") or ""), stream=False, notes=[])
    line.chat_body = CHAT.to_chat({k: v for k, v in body.items() if k not in ("stream", "stream_options")}, line)
    build(line, cred)
    assert line.attempt.body is not None
    return line.attempt.body


def unbuilt(ex: Exchange, cred: Credential) -> object:
    """The builder where the gateway has no engine (no accounts yet): a batch's line is refused, not sent."""
    raise GatewayError(503, "The gateway has no upstream engine to build a batch's lines with.", code="no_accounts")


def chat_answer(ex: Exchange, answer: dict, model: str, *, upstream: Callable[[], Upstream]) -> dict:
    """A batch's chat result as the chat path reads a whole answer: the provider's quirks repaired (`upstream`:
    the batch provider's, made when first needed), named as asked."""
    line = ex.fork(endpoint=CHAT, body={}, requested_model=model)
    return CHAT.from_chat(upstream().answer(answer, model=model or str(answer.get("model") or "")), line)
