"""Embeddings for DashScope: batches of ten strings, token ids decoded, answers merged, base64 (embeddings.py)."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_gateway.api import embeddings as emb
from qwen_gateway.errors import GatewayError
from qwen_gateway.tokens import encoding


def answer(vectors: list[list[float]], tokens: int, shuffle: bool = False) -> dict:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {"object": "list", "model": "text-embedding-v4", "id": "x",
            "data": list(reversed(data)) if shuffle else data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def test_split_into_batches_of_ten_in_order():
    notes: list[str] = []
    body = {"model": "text-embedding-v4", "input": [f"t{i}" for i in range(25)], "encoding_format": "base64",
            "dimensions": 8, "user": "u"}
    batches = emb.split_batches(body, notes=notes)
    assert [len(b["input"]) for b in batches] == [10, 10, 5]
    assert sum((b["input"] for b in batches), []) == body["input"]
    assert all(b["encoding_format"] == "float" and b["dimensions"] == 8 and b["model"] == "text-embedding-v4"
               for b in batches)
    assert notes == ["25 inputs sent as 3 requests of at most 10 (Qwen's limit)"]
    assert emb.split_batches({"input": "one"}) == [{"input": ["one"], "encoding_format": "float"}]
    assert len(emb.split_batches({"input": ["a"] * 10})) == 1


@pytest.mark.skipif(not encoding().method.startswith("tiktoken:"), reason="no offline cl100k")
def test_token_ids_are_decoded_with_cl100k():
    enc = encoding()
    texts = ["hello world", "qwen gateway ünïcode"]
    ids = [enc.encode(t) for t in texts]
    notes: list[str] = []
    (batch,) = emb.split_batches({"input": ids}, notes=notes)
    assert batch["input"] == texts and notes == ["token-id inputs decoded to text with cl100k_base (Qwen takes "
                                                 "strings only)"]
    assert emb.split_batches({"input": ids[0]})[0]["input"] == [texts[0]]  # one token array
    with pytest.raises(GatewayError) as e:
        emb.split_batches({"input": [[10 ** 9]]})
    assert e.value.status == 400 and e.value.param == "input"


@pytest.mark.parametrize("bad", [None, "", [], [""], [1.5], [[1], "a", None], {"a": 1}, [[]], [True]])
def test_bad_inputs_are_400s(bad):
    with pytest.raises(GatewayError) as e:
        emb.split_batches({"input": bad})
    assert e.value.status == 400 and e.value.param == "input"


def test_merge_answers_reindexes_in_order_and_sums_usage():
    merged = emb.merge_answers([answer([[1.0], [2.0]], 3, shuffle=True), answer([[3.0]], 4)], model="client-name")
    assert [(d["index"], d["embedding"]) for d in merged["data"]] == [(0, [1.0]), (1, [2.0]), (2, [3.0])]
    assert merged["usage"] == {"prompt_tokens": 7, "total_tokens": 7} and merged["model"] == "client-name"
    assert merged["object"] == "list"


def test_base64_is_little_endian_float32():
    vec = [0.5, -1.25, 3.0]
    out = emb.encode_base64(answer([vec], 1))
    raw = base64.b64decode(out["data"][0]["embedding"])
    assert raw == struct.pack("<3f", *vec) and list(struct.unpack("<3f", raw)) == vec
    assert emb.merge_answers([answer([vec], 1)], encoding_format="base64")["data"][0]["embedding"] == \
        out["data"][0]["embedding"]
    assert emb.to_client(answer([vec], 1), {"encoding_format": "float"}, "m")["data"][0]["embedding"] == vec


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=40), st.integers(1, 12))
def test_split_then_merge_keeps_every_input_in_place(texts, size):
    batches = emb.split_batches({"input": texts}, size=size)
    assert all(1 <= len(b["input"]) <= size for b in batches)
    answers = [answer([[float(texts.index(t))] for t in b["input"]], len(b["input"])) for b in batches]
    merged = emb.merge_answers(answers)
    assert [d["index"] for d in merged["data"]] == list(range(len(texts)))
    assert [d["embedding"][0] for d in merged["data"]] == [float(texts.index(t)) for t in texts]
    assert merged["usage"]["prompt_tokens"] == len(texts)


@pytest.mark.parametrize("body, param", [  # issue 51 item 2: each was answered (floats for "bogus")
    ({"input": "hi"}, "model"), ({"model": {"a": 1}, "input": "hi"}, "model"),
    ({"model": "text-embedding-3-small", "input": "hi", "encoding_format": "bogus"}, "encoding_format"),
    ({"model": "text-embedding-3-small", "input": "hi", "user": 1.5}, "user"),
    ({"model": "text-embedding-3-small", "input": "hi", "bogus": 1}, "bogus"),
])
def test_the_endpoint_refuses_a_body_openai_refuses_before_building_a_request(body, param):
    from types import SimpleNamespace
    ex = SimpleNamespace(notes=[], stream=False)
    with pytest.raises(GatewayError) as e:
        emb.EMBEDDINGS.to_chat(body, ex)  # type: ignore[arg-type]
    assert (e.value.status, e.value.type, e.value.param) == (400, "invalid_request_error", param)
    assert f"'{param}'" in e.value.message


def test_the_endpoint_takes_what_the_sdk_sends():
    from types import SimpleNamespace
    ex = SimpleNamespace(notes=[], stream=False)
    out = emb.EMBEDDINGS.to_chat({"model": "text-embedding-3-small", "input": ["a"], "encoding_format": "base64",
                                  "user": None}, ex)  # type: ignore[arg-type]
    assert out == {"model": "text-embedding-3-small", "input": ["a"], "encoding_format": "float", "dimensions": 1536}
