"""Qwen's errors keep their words and their class in every SSE shape Qwen sends them in (issue 67, item 4), through a
real mitmdump and the emulator: the wrapped `event:error` / `data:data: {…}` shape qwen3.8-max answered
"'reasoning_effort' and 'thinking_budget' cannot be set simultaneously" in (dashscope-rules.md, "Learned since
2026-11-26"), as the stream's first event and after text. A refusal before any answer is the HTTP 400 a client
reads in its own format (never a 5xx it retries); after text, the dialect's error event with Qwen's words, not
continued."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from helpers import cuts
from helpers.home import CODING_PLAN, Home
from helpers.procs import until

pytestmark = pytest.mark.e2e

WORDS = "'reasoning_effort' and 'thinking_budget' cannot be set simultaneously"
# A refusal nothing can be learned from (the first's wording teaches the retry policy a thinking setting)
INSPECTED = {"code": "data_inspection_failed", "message": "Input data may contain inappropriate content."}


@pytest.fixture
def gw(tmp_path, emu, make_gateway):
    home = Home(tmp_path, emu)
    home.key("a", path=CODING_PLAN, key_env="KEY_A", default_model="qwen3-coder-plus")
    return make_gateway(env=home.env())


def test_the_emulator_sends_that_refusal_in_the_wrapped_shape(emu):
    """The emulator plays what was seen: the refusal inside a 200 stream, its data a second `data:` line."""
    key = emu.seed_token(kind="key")
    r = httpx.post(emu.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, trust_env=False,
                   json={"model": "qwen3.8-max", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                         "reasoning_effort": "high", "thinking_budget": 1000})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith("event:error\ndata:data: {") and WORDS in r.text


def test_a_wrapped_refusal_first_is_a_400_in_each_clients_words(gw, emu):
    emu.fault("nested_error", **INSPECTED)
    with pytest.raises(openai.BadRequestError) as e:
        list(openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert e.value.status_code == 400 and INSPECTED["message"] in str(e.value)
    assert e.value.code == "data_inspection_failed" and e.value.type == "invalid_request_error"
    emu.fault("nested_error", **INSPECTED)
    r = httpx.post(gw.url + "/v1/messages", trust_env=False, timeout=30, headers={"x-api-key": "k"},
                   json={"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["type"] == "error", r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and INSPECTED["message"] in r.json()["error"]["message"]
    emu.fault("nested_error", **INSPECTED)
    r = httpx.post(gw.url + "/v1/responses", trust_env=False, timeout=30,
                   json={"model": "gpt-4o", "input": "hi", "stream": True})
    assert r.status_code == 400 and INSPECTED["message"] in r.json()["error"]["message"], r.text
    line = until(lambda: [ln for ln in gw.log().splitlines() if "POST /v1/chat/completions" in ln], "the line")[-1]
    assert " 400 " in line and "error=data_inspection_failed" in line, line
    assert len(emu.chat_requests()) == 3  # a refusal: not sent again


def test_a_wrapped_refusal_qwen_words_teaches_as_an_http_one_does(gw, emu):
    """The policy reads an in-stream refusal as it reads the same words over HTTP: this one is Qwen's word on a
    thinking setting (upstream/dashscope/ranges.py), learned, and the request sent again."""
    emu.fault("nested_error")
    r = httpx.post(gw.url + "/v1/chat/completions", trust_env=False, timeout=30,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert cuts.chat(r.content, "Echo: hi") == cuts.WHOLE and len(emu.chat_requests()) == 2


def test_a_wrapped_refusal_after_text_keeps_its_words_and_class(gw, emu):
    emu.fault("nested_error", after=1)
    r = httpx.post(gw.url + "/v1/chat/completions", trust_env=False, timeout=30,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "say hello"}], "stream": True})
    assert r.status_code == 200
    assert cuts.chat(r.content, "Echo: say hello") == "error:invalid_parameter_error"
    error = json.loads(cuts.sse_events(r.content)[-2][1])["error"]
    assert error["type"] == "invalid_request_error" and error["message"] == WORDS
    assert len(emu.chat_requests()) == 1  # a refusal of the request is not continued


@pytest.mark.parametrize("stream", [True, False])
def test_a_wrapped_refusal_as_an_http_errors_body_says_the_inner_words(gw, emu, stream):
    """Issue 79, item 5: the wrapped shape as the body of an HTTP 400 (stream asked or not): the client reads the inner
    error's message and class, never the raw `data: {…}` text."""
    emu.fault("nested_error", status=400, **INSPECTED)
    with pytest.raises(openai.BadRequestError) as e:
        answer = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=stream)
        list(answer) if stream else None
    assert e.value.status_code == 400 and e.value.body["message"] == INSPECTED["message"], e.value.body
    assert e.value.code == "data_inspection_failed" and "data:" not in str(e.value)
    emu.fault("nested_error", status=400, **INSPECTED)
    r = httpx.post(gw.url + "/v1/messages", trust_env=False, timeout=30, headers={"x-api-key": "k"},
                   json={"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": stream,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"]["message"] == INSPECTED["message"], r.text
