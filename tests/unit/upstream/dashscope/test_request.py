"""The chat request as DashScope takes it (upstream/dashscope/request.py): OpenAI-only fields dropped, the current
name of the output cap, usage always asked of a stream, embeddings on a model that has the size asked, and the
client's body never altered."""

from __future__ import annotations

import copy

import pytest

from qwen_gateway.accounts import Capability
from qwen_gateway.errors import GatewayError
from qwen_gateway.upstream.dashscope.request import chat_to_qwen, embedding_body, own_body

USER = {"role": "user", "content": "hi"}


def qwen(body: dict, **kw) -> dict:
    return chat_to_qwen({"model": "gpt-4o", "messages": [USER], **body}, model="qwen3-coder-plus", oauth=False, **kw)


def test_openai_only_fields_are_not_sent():
    out = qwen({"store": True, "metadata": {"a": "b"}, "service_tier": "flex", "prompt_cache_key": "k",
                "safety_identifier": "u", "prediction": None, "modalities": ["text"], "prompt_cache_retention": "24h"})
    assert not {"store", "service_tier", "prompt_cache_key", "safety_identifier", "prediction",
                "modalities", "prompt_cache_retention"} & set(out)
    assert set(out["metadata"]) == {"sessionId", "promptId"}  # qwen-code's own metadata, not the client's
    assert out["model"] == "qwen3-coder-plus"


def test_max_tokens_goes_as_max_completion_tokens():
    assert qwen({"max_tokens": 100})["max_completion_tokens"] == 100 and "max_tokens" not in qwen({"max_tokens": 1})
    assert qwen({"max_tokens": 100, "max_completion_tokens": 50})["max_completion_tokens"] == 50  # the current name wins


def test_a_stream_always_asks_for_usage_and_a_whole_answer_sends_no_stream_options():
    assert qwen({"stream": True, "stream_options": {"include_obfuscation": False}})["stream_options"] == {
        "include_obfuscation": False, "include_usage": True}
    assert "stream_options" not in qwen({"stream": False, "stream_options": {"include_usage": True}})


def test_no_tools_means_no_tool_choice():
    out = qwen({"tools": [], "tool_choice": "auto", "parallel_tool_calls": True})
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(out)


def test_the_clients_body_is_never_altered():
    body = {"model": "gpt-4o", "stream": True, "max_tokens": 9, "messages": [
        {"role": "developer", "content": "be brief"}, USER,
        {"role": "tool", "tool_call_id": "t", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]}
    before = copy.deepcopy(body)
    chat_to_qwen(body, model="qwen3-coder-plus", oauth=False, notes=[])
    assert body == before


@pytest.mark.parametrize("model,dims,sent", [
    ("text-embedding-v4", 512, {"model": "text-embedding-v4", "dimensions": 512}),
    ("text-embedding-v3", 2048, {"model": "text-embedding-v4", "dimensions": 2048}),  # v3 has no 2048
    ("text-embedding-v2", 1536, {"model": "text-embedding-v2"}),  # one fixed size: no dimensions sent
    ("text-embedding-v4", None, {"model": "text-embedding-v4", "dimensions": None}),
])
def test_embeddings_go_to_a_model_with_the_size_asked(model, dims, sent):
    assert embedding_body({"input": "x", "dimensions": dims}, model) == {"input": "x", **sent}


def test_a_size_no_model_has_is_a_400():
    with pytest.raises(GatewayError) as e:
        embedding_body({"input": "x", "dimensions": 3072}, "text-embedding-v4")
    assert (e.value.status, e.value.param, e.value.code) == (400, "dimensions", "unsupported_value")
    assert e.value.message == ("text-embedding-v4 cannot answer 3072 dimensions: it offers 2048, 1536, 1024, 768, "
                               "512, 256, 128, 64.")


def test_a_pass_through_body_gets_a_qwen_model_and_a_capped_output():
    out = own_body({"model": "claude-sonnet-4", "max_tokens": 10**6, "messages": [USER],
                    "vl_high_resolution_images": True}, model="qwen3-coder-plus", capability=Capability.CHAT)
    assert out["model"] == "qwen3-coder-plus" and "vl_high_resolution_images" not in out
    assert 0 < out["max_tokens"] < 10**6  # within the model's cap, in Anthropic's own field
    emb = own_body({"model": "text-embedding-3-small", "input": "x"}, model="qwen-plus",
                   capability=Capability.EMBEDDINGS)
    assert emb == {"model": "text-embedding-v4", "input": "x"}  # not an embedding model: v4
