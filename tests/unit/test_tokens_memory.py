"""The token counter's memory: tiktoken keeps a Python copy of cl100k's 100,256 ranks beside its Rust core
(about 14 MB of the gateway's RSS) that nothing the gateway calls reads; the gateway lets it go once the
encoding is loaded. Counting, and decoding token ids (embeddings' inputs), go on through the core."""

from __future__ import annotations

import pytest

from qwen_gateway import tokens
from qwen_gateway.api.embeddings import decode_tokens


def test_the_loaded_encoding_keeps_no_python_copy_of_its_ranks():
    enc = tokens.encoding()
    if not enc.method.startswith("tiktoken:"):
        pytest.skip(f"no tiktoken encoding offline here ({enc.method})")
    import tiktoken

    registered = tiktoken.get_encoding(enc.method.split(":", 1)[1])
    assert registered._mergeable_ranks == {}
    assert enc.count("hello world") == 2 and enc.count("The quick brown fox jumps over the lazy dog.") == 10
    ids = registered.encode_ordinary("naïve café, 東京")
    assert decode_tokens(ids) == "naïve café, 東京"
