"""The chat form as a self-hosted server takes it (upstream/selfhosted/request.py): documented fields only, thinking
through the chat template, what has no knob said, continuation through continue_final_message."""

from __future__ import annotations

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.models.listed import ListedModel
from qwen_gateway.providers import Prompt
from qwen_gateway.upstream.selfhosted import request

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 50}


def test_only_documented_fields_go_and_model_studios_switches_become_the_templates():
    notes: list[str] = []
    body = request.chat_body({**CHAT, "enable_thinking": False, "thinking_budget": 900, "enable_search": True,
                              "vl_high_resolution_images": True, "x_unknown": 1, "temperature": 0.2},
                             model="Qwen/Qwen3-8B", notes=notes)
    assert body == {"model": "Qwen/Qwen3-8B", "messages": CHAT["messages"], "max_completion_tokens": 50,
                    "temperature": 0.2, "chat_template_kwargs": {"enable_thinking": False}}
    assert "thinking_budget 900 not sent: thinking is off" in notes
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


TOOLS = [{"type": "function", "function": {"name": "ls", "parameters": {"type": "object"}}}]


def test_system_text_as_one_leading_message_where_the_template_demands_it():
    notes: list[str] = []
    messages = [{"role": "system", "content": "You are Codex."}, {"role": "developer", "content": [
        {"type": "text", "text": "Sandbox: "}, {"type": "text", "text": "read-only"}]},
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"},
        {"role": "system", "content": "late"}, {"role": "user", "content": "go"}]
    body = request.chat_body({**CHAT, "messages": messages}, model="Qwen/Qwen3.6-27B", notes=notes,
                             system_first=True)
    assert body["messages"] == [{"role": "system", "content": "You are Codex.\n\nSandbox: read-only\n\nlate"},
                                messages[2], messages[3], messages[5]]
    assert any("3 system/developer message(s) sent as one leading system message" in n for n in notes)
    kept = request.chat_body({**CHAT, "messages": messages}, model="Qwen/Qwen3-8B", notes=[])
    assert kept["messages"] == [messages[0], {**messages[1], "role": "system"}, *messages[2:]]  # where they are,
    # developer as system: no Qwen template has that role
    alone = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert request.chat_body({**CHAT, "messages": alone}, model="m", notes=[], system_first=True)["messages"] is alone


def test_preserve_thinking_for_an_agent_on_a_model_whose_card_asks_it():
    notes: list[str] = []
    agent = request.chat_body({**CHAT, "tools": TOOLS}, model="Qwen/Qwen3.6-35B-A3B", notes=notes)
    assert agent["chat_template_kwargs"] == {"preserve_thinking": True}
    assert any(n.startswith("preserve_thinking sent") for n in notes)
    assert "chat_template_kwargs" not in request.chat_body(CHAT, model="Qwen/Qwen3.6-27B", notes=[])  # no agent
    assert "chat_template_kwargs" not in request.chat_body({**CHAT, "tools": TOOLS}, model="Qwen/Qwen3-8B", notes=[])
    off = request.chat_body({**CHAT, "tools": TOOLS, "enable_thinking": False}, model="Qwen/Qwen3.6-27B", notes=[])
    assert off["chat_template_kwargs"] == {"enable_thinking": False}
    own = request.chat_body({**CHAT, "tools": TOOLS, "chat_template_kwargs": {"preserve_thinking": False}},
                            model="Qwen/Qwen3.6-27B", notes=[])
    assert own["chat_template_kwargs"] == {"preserve_thinking": False}  # the client's word


def test_a_thinking_budget_in_each_servers_own_form_below_the_cap():
    ask = {**CHAT, "max_completion_tokens": 4000, "thinking_budget": 2000}
    vllm = request.chat_body(ask, model="m", notes=[], listed=ListedModel("m", context=40960, served_by="vllm",
                                                                          server_version="0.20.0"))
    assert vllm["thinking_token_budget"] == 2000 and "chat_template_kwargs" not in vllm
    sglang = request.chat_body(ask, model="m", notes=[], listed=ListedModel("m", context=40960, served_by="sglang"))
    assert sglang["chat_template_kwargs"] == {"thinking_budget": 2000} and "thinking_token_budget" not in sglang
    notes: list[str] = []
    unknown = request.chat_body(ask, model="m", notes=notes)
    assert "thinking_token_budget" not in unknown and any("server's kind" in n for n in notes)
    over = request.chat_body({**ask, "thinking_budget": 9000}, model="m", notes=[],
                             listed=ListedModel("m", served_by="vllm", server_version="0.30.1"))
    assert over["thinking_token_budget"] == 3999
    notes = []
    old = request.chat_body(ask, model="m", notes=notes, listed=ListedModel("m", served_by="vllm",
                                                                          server_version="0.11.0"))
    assert "thinking_token_budget" not in old and any("vLLM 0.11.0 takes none before 0.15" in n for n in notes)


def test_the_cap_fits_the_window_the_servers_list_gives():
    notes: list[str] = []
    body = request.chat_body({**CHAT, "max_completion_tokens": 128000}, model="Qwen/Qwen3-8B", notes=notes,
                             listed=ListedModel("Qwen/Qwen3-8B", context=40960, served_by="vllm"),
                             prompt=Prompt(9000))
    assert 0 < body["max_completion_tokens"] < 40960 - 9000
    assert any("the server's model list" in n for n in notes)


def test_each_client_key_keeps_a_prefix_cache_of_its_own_on_vllm():
    vllm = ListedModel("m", context=40960, served_by="vllm")
    ci, dev = (request.chat_body(CHAT, model="m", notes=[], listed=vllm, tenant=t)["cache_salt"] for t in ("ci", "dev"))
    assert ci != dev and ci == request.chat_body(CHAT, model="m", notes=[], listed=vllm, tenant="ci")["cache_salt"]
    assert "ci" not in ci and len(ci) == 32  # the key's name never reaches the server
    assert "cache_salt" not in request.chat_body(CHAT, model="m", notes=[], listed=vllm)  # no named key: one tenant
    sglang = ListedModel("m", served_by="sglang")
    assert "cache_salt" not in request.chat_body(CHAT, model="m", notes=[], listed=sglang, tenant="ci")  # no such knob
