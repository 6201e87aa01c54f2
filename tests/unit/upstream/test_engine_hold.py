"""The engine tells the pool how long a conversation stays on its account (upstream/engine.py): as long as the
body Qwen gets asks its cache to last — an hour when a Qwen4 model was asked for `ttl: "1h"`, five minutes
otherwise — once the body is built on the account chosen, before anything goes upstream."""

from __future__ import annotations

import pytest

from qwen_gateway import components
from qwen_gateway.accounts import KEY, Conversation, Credential
from qwen_gateway.api.chat import CHAT
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.settings import config
from qwen_gateway.upstream.engine import UpstreamEngine
from qwen_gateway.upstream.retry import RetryPolicy

CRED = Credential("emu", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-1")
HOUR = {"type": "ephemeral", "ttl": "1h"}


class Pool:
    def __init__(self) -> None:
        self.held: list[tuple[str, float, str]] = []

    async def acquire(self, exclude=(), *, capability=None, conversation=None):
        return CRED

    def hold(self, conversation: Conversation, account: str) -> None:
        self.held.append((conversation.key, conversation.lifetime_s, account))


class Client:
    async def send(self, url, headers, body, **kw):
        raise AssertionError("stop at the wire")


def exchange(model: str) -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.endpoint, ex.requested_model = CHAT, model
    ex.chat_body = {"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a document", "cache_control": HOUR}]}]}
    ex.conversation = Conversation("conv", "opening")
    return ex


@pytest.mark.parametrize(("model", "lifetime"), [("qwen4-max", 3600), ("qwen3.6-plus", 300)])
async def test_the_conversation_is_held_as_long_as_its_body_asks(model, lifetime):
    pool = Pool()
    cfg = config.Config()
    eng = UpstreamEngine(RetryPolicy(pool), cfg, components.pairing(cfg), client=Client())  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="stop at the wire"):
        await eng.open(exchange(model))
    assert pool.held == [("conv", lifetime, "emu")]
