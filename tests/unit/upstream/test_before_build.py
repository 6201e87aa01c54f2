"""What an attempt waits for before its body is built (upstream/before_build.py)."""

from __future__ import annotations

import asyncio

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.models.live import LiveModels
from qwen_gateway.providers import Prompt
from qwen_gateway.tokens import ESTIMATE
from qwen_gateway.upstream import before_build
from qwen_gateway.upstream.dashscope.upstream import DASHSCOPE


def test_the_prompt_a_window_is_fitted_with_the_servers_count_first():
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "x"))
    assert before_build.prompt(ex) is None  # not counted: unknown
    ex.count.tokens, ex.count.method = 900, ESTIMATE
    assert before_build.prompt(ex) is None  # characters / 4 is no count
    ex.count.method = "tiktoken:cl100k_base"
    assert before_build.prompt(ex) == Prompt(900)
    ex.attempt.counted = (1021, 40960)
    assert before_build.prompt(ex) == Prompt(1021, exact=True, window=40960)


async def test_a_self_hosted_accounts_first_request_waits_for_its_list_once():
    lists = LiveModels()
    lists.register("gpu", (), lambda: None)
    gpu = Credential("gpu", KEY, "http://h/v1", "k", provider="selfhosted")
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "x"))
    waiting = asyncio.ensure_future(before_build.ready(ex, gpu, DASHSCOPE, lists))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    lists.put("gpu", ["Qwen/Qwen3-8B"])
    await asyncio.wait_for(waiting, 1)
    ds = Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "k")
    lists.register("ds", (), lambda: None)
    await asyncio.wait_for(before_build.ready(ex, ds, DASHSCOPE, lists), 0.5)  # the catalogue's: no wait
