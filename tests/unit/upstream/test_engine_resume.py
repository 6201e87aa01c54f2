"""The engine's continuation of a broken stream (upstream/engine.py `resume`): the request as it was sent, going on
from the text the client already has (partial mode), on its account — or on another when the turn leaves that one
out — the credential injected as for any request; an account that would send another model cannot go on."""

from __future__ import annotations

import json

import pytest

from qwen_gateway import components
from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.api.chat import CHAT
from qwen_gateway.errors import GatewayError
from qwen_gateway.exchange import ClientRequest, Exchange, Retry, RetryReason
from qwen_gateway.settings import config
from qwen_gateway.upstream.engine import UpstreamEngine
from qwen_gateway.upstream.retry import RetryPolicy

FIRST = Credential("first", KEY, "https://first.example/compatible-mode/v1", "sk-first")
OTHER = Credential("other", KEY, "https://other.example/compatible-mode/v1", "sk-other", default_model="qwen-plus")


class Pool:
    def __init__(self) -> None:
        self.excluded: list[tuple] = []

    async def acquire(self, exclude=(), *, capability=None, conversation=None):
        self.excluded.append(tuple(exclude))
        return OTHER if "first" in exclude else FIRST

    def report(self, *a, **kw) -> None:
        pass


class Answer:
    status_code, headers = 200, {"content-type": "text/event-stream"}

    async def aiter_raw(self):  # the first event, which the engine reads before handing the stream on
        yield b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'

    async def aclose(self) -> None:
        pass


class Client:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, dict]] = []

    async def send(self, url, headers, body, **kw):
        self.sent.append((url, dict(headers), json.loads(body)))
        return Answer()


def setup() -> tuple[UpstreamEngine, Pool, Client, Exchange]:
    pool, client, cfg = Pool(), Client(), config.Config()
    eng = UpstreamEngine(RetryPolicy(pool), cfg, components.pairing(cfg), client=client)  # type: ignore[arg-type]
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.endpoint, ex.requested_model, ex.stream = CHAT, "qwen3-coder-plus", True
    ex.chat_body = {"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": "say hello"}],
                    "stream": True}
    return eng, pool, client, ex


async def test_the_same_account_goes_on_from_the_prefix():
    eng, pool, client, ex = setup()
    await eng.open(ex)
    first = client.sent[0][2]
    await eng.resume(ex, "Echo: ")
    url, headers, body = client.sent[1]
    assert pool.excluded == [()] and url.startswith("https://first.example") and headers["Authorization"] == \
        "Bearer sk-first"
    assert body["messages"] == [*first["messages"], {"role": "assistant", "content": "Echo: ", "partial": True}]
    assert ex.attempt.body == body and "sk-first" not in json.dumps(ex.to_meta())


async def test_another_account_goes_on_when_the_first_is_left_out():
    eng, pool, client, ex = setup()
    await eng.open(ex)
    await eng.resume(ex, "Echo: ", ("first",))
    url, headers, body = client.sent[1]
    assert pool.excluded[-1] == ("first",) and url.startswith("https://other.example")
    assert headers["Authorization"] == "Bearer sk-other" and body["messages"][-1]["partial"] is True
    assert ex.attempt.tried == ["first", "other"]


async def test_an_account_that_would_send_another_model_cannot_go_on():
    eng, pool, client, ex = setup()
    ex.requested_model = ex.chat_body["model"] = "gpt-4o"  # each account's default model answers it
    await eng.open(ex)
    assert client.sent[0][2]["model"] == "qwen3-coder-plus"
    with pytest.raises(GatewayError) as e:
        await eng.resume(ex, "Echo: ", ("first",))  # the other account's default is qwen-plus
    assert e.value.code == "not_continued" and len(client.sent) == 1


async def test_each_continuation_is_a_retry_of_the_account_whose_stream_broke():
    """The engine notes it (it owns the attempt): the turn only asks for the continuation."""
    eng, pool, client, ex = setup()
    await eng.open(ex)
    await eng.resume(ex, "Echo: ")
    await eng.resume(ex, "Echo: Echo: ", ("first",))
    assert ex.attempt.retries == [Retry(RetryReason.CONTINUED, "first")] * 2 and ex.account == "other"
