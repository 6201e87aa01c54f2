"""The chat form as a self-hosted server takes it (upstream/selfhosted/request.py): documented fields only, thinking
through the chat template, what has no knob said, continuation through continue_final_message."""

from __future__ import annotations

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.upstream.selfhosted import request

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 50}


def test_only_documented_fields_go_and_model_studios_switches_become_the_templates():
    notes: list[str] = []
    body = request.chat_body({**CHAT, "enable_thinking": False, "thinking_budget": 900, "enable_search": True,
                              "vl_high_resolution_images": True, "x_unknown": 1, "temperature": 0.2},
                             model="Qwen/Qwen3-8B", notes=notes)
    assert body == {"model": "Qwen/Qwen3-8B", "messages": CHAT["messages"], "max_completion_tokens": 50,
                    "temperature": 0.2, "chat_template_kwargs": {"enable_thinking": False}}
    assert any(n.startswith("thinking_budget not sent") for n in notes)
    assert any(n.startswith("enable_search not sent") for n in notes)


def test_thinking_from_an_effort_and_nothing_when_nothing_is_asked():
    notes: list[str] = []
    assert request.chat_body({**CHAT, "reasoning_effort": "none"}, model="m", notes=notes)[
        "chat_template_kwargs"] == {"enable_thinking": False}
    assert request.chat_body({**CHAT, "reasoning_effort": "high"}, model="m", notes=notes)[
        "chat_template_kwargs"] == {"enable_thinking": True}
    assert "chat_template_kwargs" not in request.chat_body(CHAT, model="m", notes=notes)  # the model's default


def test_a_stream_asks_for_its_usage():
    body = request.chat_body({**CHAT, "stream": True, "stream_options": {"continuous_usage_stats": False}},
                             model="m", notes=[])
    assert body["stream_options"] == {"continuous_usage_stats": False, "include_usage": True}
    whole = request.chat_body({**CHAT, "stream_options": {"include_usage": True}}, model="m", notes=[])
    assert "stream_options" not in whole  # refused by vLLM without a stream


def test_continued_only_with_thinking_off_or_a_model_that_never_thinks():
    off = request.chat_body({**CHAT, "enable_thinking": False}, model="Qwen/Qwen3-8B", notes=[])
    going = request.continued(off, "Echo: hel")
    assert going is not None and going["messages"][-1] == {"role": "assistant", "content": "Echo: hel"}
    assert going["continue_final_message"] is True and going["add_generation_prompt"] is False
    on = request.chat_body({**CHAT, "enable_thinking": True}, model="Qwen/Qwen3-8B", notes=[])
    assert request.continued(on, "x") is None
    assert request.continued(request.chat_body(CHAT, model="Qwen/Qwen3-8B", notes=[]), "x") is None  # thinks
    assert request.continued({**off, "n": 2}, "x") is None


def test_the_wire_carries_the_key_and_the_clients_own_agent_only():
    cred = Credential("gpu", KEY, "http://10.0.0.5:8000/v1", "sk-local", provider="selfhosted")
    wire = request.wire(cred, "chat/completions", {}, stream=True, client_agent="", gateway_agent="qwen-gateway")
    assert wire.url == "http://10.0.0.5:8000/v1/chat/completions"
    headers = dict(wire.headers)
    assert headers["Authorization"] == "Bearer sk-local" and headers["User-Agent"] == "qwen-gateway"
    assert headers["Accept"] == "text/event-stream" and headers["Host"] == "10.0.0.5:8000"
    keyless = Credential("gpu", KEY, "http://h:8000/v1", "", provider="selfhosted")
    assert "Authorization" not in dict(request.wire(keyless, "chat/completions", {}, stream=False,
                                                    client_agent="codex/1", gateway_agent="g").headers)
