"""The models the emulator plays come from the gateway's catalogue (addons/gateway/models/catalogue.toml, read by
scripts/emulator/catalogue.py): output caps (R4) and the switches over them, reasoning sharing the cap from
qwen4-max on, thinking knobs per model, models the catalogue does not name. Driven directly over HTTP."""

from __future__ import annotations

import pytest

from emulation.test_emulator import API_KEY, emulator_fixtures, parse_sse
from emulation.test_emulator_rules import ALGO, reasoning_of, refused

pytestmark = pytest.mark.e2e  # starts emulator processes

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)
RANGE = ALGO + "Range of max_completion_tokens should be [1, {}]"  # the parameter sent is named
FUTURE = "qwen5-max"  # a model id the catalogue does not name


def ok(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def test_a_model_without_an_output_cap_in_the_catalogue_takes_any_until_model_caps_sets_one(emu):
    for model in ("qwen3.7-max", "qwen3.6-flash", "qwen3.5-flash", "qwen4-max"):
        assert emu.chat(model=model, enable_thinking=False, max_completion_tokens=10 ** 6).status_code == 200, model
    emu.switches(model_caps={"qwen3.7-max": 32768, "coder-model": 1000})
    assert refused(emu.chat(model="qwen3.7-max", max_completion_tokens=32769)) == RANGE.format(32768)
    assert emu.chat(model="qwen3.7-max", max_completion_tokens=32768).status_code == 200
    assert refused(emu.chat(max_completion_tokens=1001)) == RANGE.format(1000)  # over the catalogue's 65,536


def test_extra_models_are_answered_as_plain_hybrid_models_without_a_cap(emu):
    r = emu.chat(model=FUTURE)
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_found"
    emu.switches(extra_models=[FUTURE])
    assert reasoning_of(emu.chat(model=FUTURE)) == (None, 0)  # hybrid, off by default
    assert reasoning_of(emu.chat(model=FUTURE, enable_thinking=True, thinking_budget=10 ** 7))[1] > 0  # no budget
    assert emu.chat(model=FUTURE, max_completion_tokens=10 ** 7).status_code == 200
    assert FUTURE in [m["id"] for m in ok(emu.http.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}))[
        "data"]]
    emu.switches(model_caps={FUTURE: 65536})  # the cap a future model's 400 names
    assert refused(emu.chat(model=FUTURE, max_completion_tokens=65537)) == RANGE.format(65536)


def test_switches_over_the_catalogue_are_checked(emu):
    for bad in ({"model_caps": ["qwen4-max"]}, {"model_caps": {"qwen4-max": 0}}, {"extra_models": "qwen5-max"},
                {"reasoning_tokens": -1}):
        assert emu.http.post("/_emulator/switches", json=bad).status_code == 400, bad


def test_reasoning_shares_the_output_cap_from_qwen4_max_on(emu):
    """Model Studio, "API compatibility upgrades" (2026-11-02): from qwen4-max-preview on, max_completion_tokens
    limits reasoning and answer together; a cap the reasoning uses up ends in HTTP 200, an empty answer and
    finish_reason "length"."""
    emu.switches(reasoning_tokens=100, today="2026-11-20")  # qwen4-max-preview served until 2026-11-25
    for model in ("qwen4-max", "qwen4-max-preview"):
        body = ok(emu.chat(model=model, max_completion_tokens=40))
        choice = body["choices"][0]
        assert choice["finish_reason"] == "length" and choice["message"]["content"] == ""
        assert 0 < len(choice["message"]["reasoning_content"]) < 400  # cut to the cap
        assert body["usage"]["completion_tokens"] == 40
        assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}
    events = parse_sse(emu.chat(model="qwen4-max", max_completion_tokens=40, stream=True,
                                stream_options={"include_usage": True}).text)[:-1]
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert not any(d.get("content") for d in deltas) and any(d.get("reasoning_content") for d in deltas)
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "length"
    assert events[-1]["usage"]["completion_tokens"] == 40
    # room left for the answer, or no thinking: answered in full
    for knobs in ({"max_completion_tokens": 1000}, {"max_completion_tokens": 40, "reasoning_effort": "none"}):
        choice = ok(emu.chat(model="qwen4-max", **knobs))["choices"][0]
        assert (choice["finish_reason"], choice["message"]["content"]) == ("stop", "Echo: hello there"), knobs
    # older models: the cap is the answer's alone
    body = ok(emu.chat(model="qwen3.8-max", max_completion_tokens=40))
    assert body["choices"][0]["finish_reason"] == "stop" and body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 100}
    emu.switches(reasoning_tokens=None)  # the usual reasoning, "Thinking about it.", is 5 tokens
    assert ok(emu.chat(model="qwen4-max", max_completion_tokens=3))["choices"][0]["finish_reason"] == "length"


def test_qwen4_max_is_an_effort_model_from_none_to_max(emu):
    assert refused(emu.chat(model="qwen4-max", reasoning_effort="high", thinking_budget=1024)) == (
        "'reasoning_effort' and 'thinking_budget' cannot be set simultaneously")
    assert refused(emu.chat(model="qwen4-max", reasoning_effort="ultra")) == (
        "'reasoning_effort' must be one of: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max'")
    assert reasoning_of(emu.chat(model="qwen4-max", reasoning_effort="max"))[1] > 0
    assert reasoning_of(emu.chat(model="qwen4-max", reasoning_effort="none")) == (None, 0)
    assert reasoning_of(emu.chat(model="qwen4-max"))[1] > 0  # the catalogue: thinks when told nothing


def test_vision_and_stream_only_models_are_the_catalogues(emu):
    image = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    assert emu.chat(image, model="qwen4-max").status_code == 200
    assert "Unexpected item type" in refused(emu.chat(image, model="qwen3.7-max"))
    assert "only support stream mode" in refused(emu.chat(model="qwen3-235b-a22b-thinking-2507"))
    assert emu.chat(model="qwen3-235b-a22b-thinking-2507", stream=True).status_code == 200
    assert "Unexpected item type" in refused(emu.chat(image, model="qwen3-235b-a22b-thinking-2507", stream=True))
    assert emu.chat(image, model="qwen3.6-plus", stream=True).status_code == 200  # vision, thinking by default
