"""The engine's seam for a USD budget (upstream/engine.py): a key with one has its check run on each attempt
once the model is known as it will be sent — after the model map and the routes (an image moved to the vision
model) — and before anything goes upstream (a web account's chats/new included); a refusal ends the request
there. A request without a USD budget pays nothing for it: the check is not called."""

from __future__ import annotations

import pytest

from qwen_gateway.settings import config
from qwen_gateway import components
from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.api.chat import CHAT
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.models.routes import IMAGES, Routed
from qwen_gateway.upstream.engine import UpstreamEngine
from qwen_gateway.upstream.retry import RetryPolicy

CRED = Credential("emu", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-1")
REFUSED = GatewayError(400, "no price", code="model_unpriced", param="model")


class Pool:
    async def acquire(self, exclude=(), *, capability=None, conversation=None):
        return CRED


class Client:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, url, headers, body, **kw):
        self.sent.append(url)
        raise AssertionError("nothing may go upstream")


def engine(check) -> tuple[UpstreamEngine, Client]:
    client = Client()
    cfg = config.Config()
    return UpstreamEngine(RetryPolicy(Pool()), cfg, components.pairing(cfg), client=client,  # type: ignore[arg-type]
                          usd_budget_check=check), client


def image_exchange(usd_budget: bool) -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.endpoint, ex.requested_model, ex.key.usd_budget = CHAT, "qwen3-coder-plus", usd_budget
    ex.chat_body = {"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}
    ex.routed = Routed(IMAGES, "", "images=vision")
    return ex


async def test_a_key_with_a_usd_budget_is_checked_on_the_routed_model_before_the_wire():
    asked: list[tuple[str, str]] = []

    def check(ex: Exchange) -> None:
        asked.append((ex.attempt.model, ex.attempt.cred.account))
        raise REFUSED

    eng, client = engine(check)
    with pytest.raises(GatewayError) as e:
        await eng.open(image_exchange(usd_budget=True))
    assert e.value is REFUSED and asked == [("qwen3.6-plus", "emu")]  # the image route moved it: checked as sent
    assert client.sent == []


async def test_a_request_without_a_usd_budget_is_not_checked():
    called: list[Exchange] = []
    eng, client = engine(called.append)
    with pytest.raises(AssertionError, match="nothing may go upstream"):  # it went on to the wire
        await eng.open(image_exchange(usd_budget=False))
    assert called == [] and len(client.sent) == 1
