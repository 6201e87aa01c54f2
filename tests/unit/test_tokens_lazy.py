"""tiktoken is loaded only when a count must be exact (issue #34: ~25 MB of the gateway's RSS, and the count of
every small prompt on the event loop): the request line, the ledger and mitmweb get a characters / 4 estimate
(method `estimate`); the context guard (a body longer than the model's limit in bytes), the endpoints whose
answer reports the prompt's tokens (Anthropic Messages), the count endpoints and token-id embeddings count
with tiktoken; `qwen_token_count_exact` counts every prompt with it, as before."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from qwen_gateway import tokens
from qwen_gateway.observe.estimator import TokenEstimator
from qwen_gateway.turn.context_guard import context_check
from qwen_gateway.tokens import ESTIMATE, count_request_tokens, encoding, estimate_request_tokens
from helpers.observe_testlib import chat_body, client_flow, config, exchange, parsed_config


@pytest.fixture
def unloaded():
    """No encoding loaded in this process (encoding() is cached per process)."""
    encoding.cache_clear()
    yield
    encoding.cache_clear()


@dataclasses.dataclass(frozen=True)
class CountedFirst:
    """An endpoint whose first event reports the prompt's tokens (the Messages API)."""

    name: str = "messages"
    counted_first: bool = True


def _sized(ex, body):
    ex.client = dataclasses.replace(ex.client, size=len(json.dumps(body)))
    return ex


async def _estimated(est: TokenEstimator, ex) -> None:
    est.client_request(ex, client_flow(ex.body))
    if ex.count.task is not None:
        await asyncio.wait_for(ex.count.task, 30)


@pytest.mark.parametrize("text", ["hello world", "word " * 2000])  # counted on the spot, and in the thread
async def test_a_chat_prompt_gets_a_characters_estimate_and_tiktoken_stays_unloaded(unloaded, text):
    est = TokenEstimator()
    est.configure(config())
    est.running()
    body = chat_body(text)
    ex = _sized(exchange(body=body, status=None, usage=None), body)
    await _estimated(est, ex)
    assert (ex.count.tokens, ex.count.method) == estimate_request_tokens(body, exact=False)
    assert ex.count.method == ESTIMATE and ex.count.tokens == (len(text) + 3) // 4 + tokens.MESSAGE_OVERHEAD
    assert encoding.cache_info().currsize == 0  # tiktoken never loaded
    est.done()


async def test_an_endpoint_that_reports_the_prompts_tokens_gets_tiktokens_count(unloaded, monkeypatch):
    """The Messages API's first event reports the prompt's tokens. The first such prompt of a process does not
    wait for tiktoken's encoding to load (~0.3 s, holding the GIL; issue #51: the first stream arrived in one
    burst): it gets characters / 4 at once (Qwen's own count follows in `message_delta`), and the encoding loads
    in the counting thread a moment later; the prompts after it get tiktoken's count."""
    monkeypatch.setattr(TokenEstimator, "WARM_AFTER_S", 0.3)
    est = TokenEstimator()
    est.configure(config())
    est.running()
    body = chat_body("The quick brown fox jumps over the lazy dog. " * 100)
    first = _sized(exchange(body=body, status=None, usage=None), body)
    first.endpoint = CountedFirst()  # type: ignore[assignment]
    await _estimated(est, first)
    assert (first.count.tokens, first.count.method) == estimate_request_tokens(body, exact=False)
    assert encoding.cache_info().currsize == 0  # not loaded while the first stream starts
    for _ in range(200):  # the warm-up, in the counting thread
        if encoding.cache_info().currsize:
            break
        await asyncio.sleep(0.05)
    assert encoding.cache_info().currsize == 1
    second = _sized(exchange(body=body, status=None, usage=None), body)
    second.endpoint = CountedFirst()  # type: ignore[assignment]
    await _estimated(est, second)
    assert second.count.tokens == count_request_tokens(body) and second.count.method.startswith("tiktoken:")
    est.done()


async def test_the_option_counts_every_prompt_with_tiktoken(unloaded):
    cfg = parsed_config(qwen_token_count_exact=True)
    assert cfg.token_count_exact and not parsed_config().token_count_exact
    est = TokenEstimator()
    est.configure(cfg)
    body = chat_body("hello world")
    ex = _sized(exchange(body=body, status=None, usage=None), body)
    await _estimated(est, ex)
    assert ex.count.tokens == count_request_tokens(body) and ex.count.method.startswith("tiktoken:")
    est.done()


async def test_the_context_guard_never_decides_on_the_characters_estimate(unloaded):
    """A prompt of short words: characters / 4 says it fits a limit tiktoken says it exceeds (and the
    other way round for long words); the guard counts exactly whenever the byte bound cannot decide."""
    est = TokenEstimator()
    est.configure(config())
    short = chat_body("a " * 600)  # ~600 tokens, 300 by characters / 4
    common = chat_body("hello " * 300)  # ~300 tokens, 450 by characters / 4
    cfg = config(context_limit_default=400)
    for body, refused in ((short, True), (common, False)):
        ex = _sized(exchange(body=body, status=None, usage=None), body)
        await _estimated(est, ex)
        assert ex.count.method == ESTIMATE and (ex.count.tokens > 400) is not refused
        error = await context_check(ex, cfg)
        assert (error is not None) is refused, (ex.count.tokens, ex.count.method)
        assert ex.count.method.startswith("tiktoken:") and ex.count.tokens == count_request_tokens(body)
    est.done()


async def test_token_id_embeddings_load_the_decoder_in_a_thread_before_translating(unloaded, monkeypatch):
    from qwen_gateway.api import embeddings

    embeddings._cl100k.cache_clear()
    threads: list[object] = []
    real = asyncio.to_thread

    async def noted(fn, *args):
        threads.append(fn)
        return await real(fn, *args)
    monkeypatch.setattr(embeddings.asyncio, "to_thread", noted)
    assert embeddings.EMBEDDINGS.prepare is not None
    await embeddings.EMBEDDINGS.prepare({"model": "m", "input": "hello"}, exchange())
    assert threads == [] and encoding.cache_info().currsize == 0  # strings: nothing to decode
    await embeddings.EMBEDDINGS.prepare({"model": "m", "input": [[15339, 1917]]}, exchange())
    assert threads == [embeddings._cl100k] and embeddings._cl100k.cache_info().currsize == 1
    assert embeddings.input_texts([[15339, 1917]]) == ["hello world"]
    embeddings._cl100k.cache_clear()


async def test_a_counted_stream_waits_for_its_count_once_the_encoding_is_loaded():
    """With the encoding loaded, a count still running is waited for (at most COUNT_WAIT_S): the first event
    then carries tiktoken's count."""
    from qwen_gateway.turn import runner

    encoding()
    loop = asyncio.get_running_loop()
    ex = exchange(status=None, usage=None)
    ex.endpoint = CountedFirst()  # type: ignore[assignment]
    ex.count.task = loop.create_future()
    loop.call_later(runner.COUNT_WAIT_S / 5, ex.count.task.set_result, (1, "tiktoken:x"))
    await runner.until_counted(ex)
    assert ex.count.task.done()
