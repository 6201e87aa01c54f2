"""The emulator's DashScope rules behind issue 23's chat and embeddings items, driven directly over HTTP:
stream-only models, sampling ranges, images in tool messages, embedding sizes."""

from __future__ import annotations

import pytest

from emulation.test_emulator import API_KEY, emulator_fixtures, parse_sse
from emulation.test_emulator_rules import ALGO, refused

pytestmark = pytest.mark.e2e  # starts emulator processes

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)
STREAM_ONLY = "This model only support stream mode, please enable the stream parameter to access the model. "
IMAGE = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}


@pytest.mark.parametrize("model", ["qwen3-next-80b-a3b-thinking", "qwen3-235b-a22b-thinking-2507"])
def test_stream_only_models_refuse_a_whole_answer(emu, model):
    for extra in ({}, {"stream": False}):
        r = emu.chat(model=model, **extra)
        assert refused(r) == STREAM_ONLY
        assert r.json()["error"]["code"] == "invalid_parameter_error"
    events = emu.events(model=model, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]" and any(e["choices"] == [] and e["usage"] for e in events[:-1])


def test_more_stream_only_models_by_switch(emu):
    emu.switches(stream_only_models=["qwen3-coder-plus"])
    assert refused(emu.chat(model="qwen3-coder-plus")) == STREAM_ONLY
    assert emu.chat(model="qwen3-coder-plus", stream=True).status_code == 200


@pytest.mark.parametrize("field,value,message", [
    ("temperature", 2, "Range of temperature should be [0.0, 2.0)"),
    ("temperature", -0.1, "Range of temperature should be [0.0, 2.0)"),
    ("top_p", 0, "Range of top_p should be (0.0, 1.0]"),
    ("top_p", 1.5, "Range of top_p should be (0.0, 1.0]")])
def test_sampling_outside_dashscopes_ranges_is_refused(emu, field, value, message):
    assert refused(emu.chat(model="qwen3-coder-plus", **{field: value})) == ALGO + message


@pytest.mark.parametrize("field,value", [("temperature", 0), ("temperature", 1.99), ("top_p", 1), ("top_p", 0.0001)])
def test_sampling_inside_the_ranges_is_accepted(emu, field, value):
    assert emu.chat(model="qwen3-coder-plus", **{field: value}).status_code == 200


def test_images_in_a_tool_message_are_refused_even_on_a_vision_model(emu):
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]}
    msgs = [{"role": "user", "content": "look"}, call, {"role": "tool", "tool_call_id": "a", "content": [IMAGE]}]
    assert "Unexpected item type in content" in refused(emu.chat(model="qwen3.6-plus", messages=msgs))
    msgs[2] = {"role": "tool", "tool_call_id": "a", "content": "(image below)"}
    msgs.append({"role": "user", "content": [{"type": "text", "text": "the image:"}, IMAGE]})
    assert emu.chat(model="qwen3.6-plus", messages=msgs).status_code == 200


def embed(emu, model, **extra):
    return emu.http.post("/compatible-mode/v1/embeddings", json={"model": model, "input": ["a"], **extra},
                         headers={"Authorization": f"Bearer {API_KEY}"})


@pytest.mark.parametrize("model,default,sizes,bad", [
    ("text-embedding-v4", 1024, (2048, 1536, 768, 512, 256, 128, 64), (3072, 1000, 32)),
    ("text-embedding-v3", 1024, (768, 512, 256, 128, 64), (1536, 2048)),
    ("text-embedding-v2", 1536, (1536,), (1024, 512))])
def test_embedding_dimensions_per_model(emu, model, default, sizes, bad):
    assert len(embed(emu, model).json()["data"][0]["embedding"]) == default
    for size in sizes:
        r = embed(emu, model, dimensions=size)
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == size
    for size in bad:
        assert "parameters.dimension" in refused(embed(emu, model, dimensions=size))


def test_stream_only_answer_is_a_normal_stream(emu):
    events = parse_sse(emu.chat(model="qwen3-235b-a22b-thinking-2507", stream=True).text)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]) == \
        "Echo: hello there"
